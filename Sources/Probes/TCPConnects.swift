#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import PoolSpec

/// tcp probes on one event loop, each a plain non-blocking socket: `socket`, `SO_LINGER` 0, `connect`,
/// a `poll` shared by every connect in flight on the loop, `close`. No NIO channel, pipeline or bootstrap:
/// those cost a tcp probe about 30 µs of user CPU and six system calls more (epoll registration and
/// three changes of interest, TCP_NODELAY, getsockname, getpeername) for a connection that sends nothing.
///
/// NIO cannot watch a descriptor it does not own, so the loop looks instead: once right after the
/// connects it was asked for (between two veths on one machine the handshake is over when `connect`
/// returns), then each connect again after a quarter of its age (at least 100 µs, at most 10 ms later),
/// and at its deadline. A result is known at most a quarter of its time plus 100 µs late.
/// Used on `loop` only.
final class TCPConnects: @unchecked Sendable {
    let loop: EventLoop

    private struct Pending {
        var fd: CInt
        var started: NIODeadline
        var deadline: NIODeadline
        var nextLook: NIODeadline
        var timeout: Duration
        var done: EventLoopPromise<ProbeResult>
    }

    private var pending: [Pending] = []
    private var looks: [pollfd] = []
    /// When a look is scheduled for (nil: none); a look that finds nothing due costs one comparison each.
    private var nextLook: NIODeadline?
    private var lookQueued = false

    static let minGap: Int64 = 100_000  // ns
    static let maxGap: Int64 = 10_000_000

    init(loop: EventLoop) { self.loop = loop }

    /// Connects to `address`; the future says `tcp: connected` or why not. Call on the loop.
    func connect(to address: SocketAddress, timeout: Duration) -> EventLoopFuture<ProbeResult> {
        let done = loop.makePromise(of: ProbeResult.self)
        let fd = Self.nonBlockingSocket(CInt(address.protocol.rawValue))
        guard fd >= 0 else {
            done.succeed(Self.failure(errno: errno))
            return done.futureResult
        }
        // Closed with a reset, as every probe (see Prober.connect): no TIME_WAIT socket, and a conntrack
        // entry that expires in 10 s. Set before connecting.
        var reset = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
        let (rc, code) = address.withSockAddr { (Self.systemConnect(fd, $0, socklen_t($1)), errno) }
        if rc == 0 || code != EINPROGRESS {
            let result = rc == 0 ? Self.connected : Self.failure(errno: code)
            close(fd)
            done.succeed(result)
            return done.futureResult
        }
        let now = NIODeadline.now()
        pending.append(
            Pending(fd: fd, started: now, deadline: now + .nanoseconds(timeout.nanoseconds), nextLook: now, timeout: timeout, done: done))
        if !lookQueued {
            lookQueued = true
            loop.execute { self.look() }
        }
        return done.futureResult
    }

    /// Fails every connect in flight (the prober is shutting down) and closes its socket.
    func abandonAll() {
        let gone = pending
        pending = []
        for p in gone {
            close(p.fd)
            p.done.succeed(.failure("tcp: prober stopped", .error))
        }
    }

    private func look() {
        lookQueued = false
        nextLook = nil
        guard !pending.isEmpty else { return }
        // Poll the connects whose look is due (a connect's last look is at its deadline).
        let due = NIODeadline.now()
        looks.removeAll(keepingCapacity: true)
        for p in pending where p.nextLook <= due {
            looks.append(pollfd(fd: p.fd, events: Int16(POLLOUT), revents: 0))
        }
        if !looks.isEmpty {
            _ = looks.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), 0) }
        }
        let now = NIODeadline.now()
        var finished: [(EventLoopPromise<ProbeResult>, ProbeResult)] = []
        var polled = 0
        var kept = 0
        var soonest: NIODeadline?
        for i in pending.indices {
            var p = pending[i]
            if p.nextLook <= due {
                let events = looks[polled].revents
                polled += 1
                if events != 0 {
                    let ok = events & Int16(POLLERR | POLLHUP) == 0
                    finished.append((p.done, ok ? Self.connected : Self.failure(errno: Self.socketError(p.fd))))
                    close(p.fd)
                    continue
                }
                if p.deadline <= due {
                    finished.append((p.done, .failure("tcp: timeout after \(DurationText.format(p.timeout))", .timeout)))
                    close(p.fd)
                    continue
                }
                let gap = min(Self.maxGap, max(Self.minGap, (now - p.started).nanoseconds / 4))
                p.nextLook = min(p.deadline, now + .nanoseconds(gap))
            }
            soonest = soonest.map { min($0, p.nextLook) } ?? p.nextLook
            pending[kept] = p
            kept += 1
        }
        pending.removeLast(pending.count - kept)
        if let soonest { schedule(at: soonest) }
        // Results last: their callbacks may ask for the next connects.
        for (done, result) in finished { done.succeed(result) }
    }

    private func schedule(at when: NIODeadline) {
        if let nextLook, nextLook <= when { return }
        nextLook = when
        loop.scheduleTask(deadline: when) {
            // A later look was made earlier by a new one; one that finds nothing due is cheap.
            if self.nextLook == when || self.nextLook == nil { self.look() }
        }
    }

    static let connected = ProbeResult.success("tcp: connected")

    static func failure(errno code: CInt) -> ProbeResult {
        let (text, outcome) = Prober.describe(IOError(errnoCode: code, reason: "connect"), timeout: .zero)
        return .failure("tcp: \(text)", outcome)
    }

    static func socketError(_ fd: CInt) -> CInt {
        var code: CInt = 0
        var size = socklen_t(MemoryLayout<CInt>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &size) == 0 && code != 0 ? code : ECONNRESET
    }

    #if canImport(Glibc)
    static func nonBlockingSocket(_ family: CInt) -> CInt {
        socket(family, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
    }
    static func systemConnect(_ fd: CInt, _ address: UnsafePointer<sockaddr>, _ size: socklen_t) -> CInt {
        Glibc.connect(fd, address, size)
    }
    #else
    static func nonBlockingSocket(_ family: CInt) -> CInt {
        let fd = socket(family, SOCK_STREAM, 0)
        guard fd >= 0 else { return fd }
        guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
            let code = errno
            close(fd)
            errno = code
            return -1
        }
        return fd
    }
    static func systemConnect(_ fd: CInt, _ address: UnsafePointer<sockaddr>, _ size: socklen_t) -> CInt {
        Darwin.connect(fd, address, size)
    }
    #endif
}
