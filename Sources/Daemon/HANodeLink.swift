import Foundation
import HAConfig
import PoolSpec

/// The daemon's side of the LB-node HA contract with keepalived (files under the runtime directory,
/// named by `HAConfig.Paths`): it publishes its pid (keepalived's liveness check reads it) and whether
/// this node may hold the VIPs (the track file), and learns its role from keepalived's notify fifo.
public final class HANodeLink: Sendable {
    public enum Role: String, Sendable, Codable {
        case unknown = "UNKNOWN", master = "MASTER", backup = "BACKUP", fault = "FAULT", stop = "STOP"
    }

    public let node: HANode
    public let paths: HAConfig.Paths

    public init(node: HANode, paths: HAConfig.Paths) {
        self.node = node
        self.paths = paths
    }

    /// The node of `ha` named `name`, or (nil) the one whose address is on a local interface.
    public static func node(_ ha: HA, named name: String?) -> Result<HANode, NodeError> {
        let names = ha.nodes.map(\.name).joined(separator: ", ")
        if let name {
            guard let n = ha.nodes.first(where: { $0.name == name }) else { return .failure(.unknown(name, names)) }
            return .success(n)
        }
        let local = localAddresses()
        let mine = ha.nodes.filter { local.contains($0.address) }
        guard mine.count == 1 else { return .failure(.notLocal(names, found: mine.count)) }
        return .success(mine[0])
    }

    public enum NodeError: Error, CustomStringConvertible {
        case unknown(String, String)
        case notLocal(String, found: Int)

        public var description: String {
            switch self {
            case .unknown(let name, let names): return "--node: no node \"\(name)\" in ha.nodes (\(names))"
            case .notLocal(let names, 0): return "--node: no node of ha.nodes (\(names)) has its address on this machine; name it with --node"
            case .notLocal(let names, _): return "--node: several nodes of ha.nodes (\(names)) have their address here; name one with --node"
            }
        }
    }

    static func localAddresses() -> Set<IPAddress> {
        var out = Set<IPAddress>()
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return out }
        defer { freeifaddrs(list) }
        var p = list
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            if let sa = ifa.pointee.ifa_addr, let address = SocketAddress.address(sa) { out.insert(address) }
        }
        return out
    }

    /// The runtime directory, the pid file, and the track file at FAULT (table not loaded yet).
    func begin() throws {
        try FileManager.default.createDirectory(atPath: paths.runtimeDirectory, withIntermediateDirectories: true)
        try AtomicFile.write(Array("\(getpid())\n".utf8), to: paths.daemonPidFile, mode: 0o644)
        try publish(.fault)
        if access(paths.notifyFifo, F_OK) != 0 { mkfifo(paths.notifyFifo, 0o600) }
    }

    func publish(_ value: HAConfig.TrackValue) throws { try publish(value.rawValue) }

    /// The track file's value: keepalived adds it to the base priority (weight 1), -254 is FAULT.
    func publish(_ value: Int) throws {
        try AtomicFile.write(Array("\(value)\n".utf8), to: paths.trackFile, mode: 0o644)
    }

    /// Asks this node's conntrackd to request the peers' connection table (what `conntrackd -n` does: its
    /// control socket takes one native int, REQUEST_DUMP = 23, in conntrack-tools' local protocol). False
    /// when conntrackd is not there.
    @discardableResult
    func requestResync() -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array(paths.conntrackdSocket.utf8)
        guard path.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: path) }
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { return false }
        var request: Int32 = 23
        guard send(fd, &request, 4, Int32(MSG_NOSIGNAL)) == 4 else { return false }
        // conntrackd answers and closes; a bounded wait so a wedged conntrackd cannot hold the loop.
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 256)
        while recv(fd, &buffer, buffer.count, 0) > 0 {}
        return true
    }

    /// With `yieldWhenAllDown`, a node that sees a pool without a serving backend gives up the VIPs (a
    /// peer whose probes see one may serve).
    func yields(_ core: DaemonCore) -> Bool {
        guard core.spec.ha?.yieldWhenAllDown == true else { return false }
        return core.spec.pools.contains { pool in !pool.backends.contains { core.health.isEligible($0, in: pool) } }
    }

    /// Stopping: FAULT first (keepalived hands the VIPs over at once), then no pid.
    func end() {
        try? publish(.fault)
        unlink(paths.daemonPidFile)
    }

    /// Reads keepalived's notify fifo on a thread of its own, for the process's life; each line for our
    /// instance becomes a role. The fifo is reopened when keepalived restarts (EOF).
    func watchRoles(_ deliver: @escaping @Sendable (Role, Int) -> Void) {
        let path = paths.notifyFifo
        let instance = "\"nftpool_\(paths.table)\""
        Thread {
            while true {
                guard let file = fopen(path, "r") else {
                    sleep(1)
                    continue
                }
                var line: UnsafeMutablePointer<CChar>?
                var capacity = 0
                while getline(&line, &capacity, file) > 0 {
                    let words = String(cString: line!).split(separator: " ").map(String.init)
                    // INSTANCE "nftpool_<table>" MASTER 150
                    guard words.count >= 3, words[0] == "INSTANCE", words[1] == instance,
                        let role = Role(rawValue: words[2].trimmingCharacters(in: .whitespacesAndNewlines))
                    else { continue }
                    deliver(role, words.count > 3 ? Int(words[3].trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 : 0)
                }
                free(line)
                fclose(file)
            }
        }.start()
    }
}
