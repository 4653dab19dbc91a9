import Foundation
import NIOConcurrencyHelpers

/// systemd's notify protocol, spoken without libsystemd: datagrams to $NOTIFY_SOCKET (a path, or
/// `@name` for an abstract socket). READY=1 once the table is programmed; RELOADING=1 with
/// MONOTONIC_USEC, then READY=1, around a SIGHUP reload; STOPPING=1; a STATUS= line with the pools'
/// summary whenever it changes; WATCHDOG=1 every half $WATCHDOG_USEC from the daemon's loop itself, so
/// a loop that stops turning stops the pings and systemd restarts the daemon.
public final class ServiceNotifier: DaemonObserver {
    struct State {
        var status = ""
        var lastPing: ContinuousClock.Instant?
    }

    private let fd: Int32
    private let address: [UInt8]
    /// Half of WATCHDOG_USEC; nil without a watchdog (or one meant for another process).
    let pingEvery: Duration?
    private let state = NIOLockedValueBox(State())

    /// nil when $NOTIFY_SOCKET is unset, empty, or cannot be used (then systemd is not listening).
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let socketPath = environment["NOTIFY_SOCKET"], socketPath.count > 1,
            socketPath.hasPrefix("/") || socketPath.hasPrefix("@"),
            socketPath.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        self.fd = fd
        var bytes = Array(socketPath.utf8)
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract: a leading NUL, no terminator
        address = bytes
        if let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0,
            environment["WATCHDOG_PID"].map({ Int32($0) == getpid() }) ?? true {
            pingEvery = .microseconds(usec / 2)
        } else {
            pingEvery = nil
        }
    }

    deinit { close(fd) }

    /// One datagram; never blocks (a full socket loses the message, as sd_notify's would).
    @discardableResult
    func send(_ message: String) -> Bool {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { path in
            for (i, b) in address.enumerated() { path[i] = b }
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + address.count + (address[0] == 0 ? 0 : 1))
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), $0, length) }
        }
        return sent == bytes.count
    }

    /// `STATUS=` text: one line, the pools' summary and the kernel's state.
    static func statusLine(_ doc: StatusFile.Document) -> String {
        let backends = doc.pools.reduce(0) { $0 + $1.backends.count }
        let serving = doc.pools.reduce(0) { n, p in n + p.backends.filter { $0.state == "enabled" && $0.health != "down" }.count }
        let empty = doc.pools.filter { p in !p.backends.contains { $0.state == "enabled" && $0.health != "down" } }.map(\.name)
        var s = "\(doc.pools.count) pool\(doc.pools.count == 1 ? "" : "s"), \(serving) of \(backends) backends serving"
        if !empty.isEmpty { s += "; no serving backend in \(empty.joined(separator: ", "))" }
        s += doc.kernel.inSync ? "; kernel in sync" : "; kernel OUT OF SYNC"
        return s
    }

    public func started() {
        send("READY=1\nSTATUS=\(state.withLockedValue { $0.status })")
    }

    public func published(_ status: StatusFile.Document) {
        let line = Self.statusLine(status)
        let changed = state.withLockedValue { s -> Bool in
            defer { s.status = line }
            return s.status != line
        }
        if changed { send("STATUS=\(line)") }
    }

    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        send("RELOADING=1\nMONOTONIC_USEC=\(UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000)")
    }

    public func reloaded(ok: Bool) {
        send("READY=1\nSTATUS=\(state.withLockedValue { $0.status })")
    }

    public func stopping() {
        send("STOPPING=1")
    }

    public func loopAlive(at now: ContinuousClock.Instant) {
        guard let pingEvery else { return }
        let due = state.withLockedValue { s -> Bool in
            guard s.lastPing.map({ $0.duration(to: now) >= pingEvery }) ?? true else { return false }
            s.lastPing = now
            return true
        }
        if due { send("WATCHDOG=1") }
    }
}
