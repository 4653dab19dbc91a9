import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import PoolSpec

/// What to probe: one backend's address and its pool's health check.
public struct ProbeTarget: Sendable, Equatable {
    public var address: IPAddress
    public var port: UInt16
    public var check: HealthCheck

    /// `check` as far as probing goes: passive health and damping are the daemon's, and changing them
    /// must not restart a backend's probes (a target that differs starts over, down until `rise`).
    public init(address: IPAddress, port: UInt16, check: HealthCheck) {
        self.address = address
        self.port = port
        var probing = check
        probing.passive = nil
        probing.damping = nil
        self.check = probing
    }
}

/// Runs probes over SwiftNIO (and NIOSSL for https). Each probe is its own connection with its own
/// deadline, so a backend that never answers holds up nothing but its own probe.
public final class Prober: Sendable {
    let group: MultiThreadedEventLoopGroup
    private let contexts = TLSContexts()
    /// tcp probes, per event loop of `group`.
    private let connects: [ObjectIdentifier: TCPConnects]
    /// tcp probes on loops not of `group` (tests).
    private let otherConnects = NIOLockedValueBox<[ObjectIdentifier: TCPConnects]>([:])

    /// One event loop per core by default: at 10,000 probes a second one loop alone is busy enough that
    /// its probes start late and time out.
    public init(threads: Int = System.coreCount) {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        connects = Dictionary(uniqueKeysWithValues: group.makeIterator().map { (ObjectIdentifier($0), TCPConnects(loop: $0)) })
    }

    public func shutdown() async {
        // tcp connects in flight end now, their sockets closed, rather than with the loops.
        for c in connects.values { try? await c.loop.submit { c.abandonAll() }.get() }
        try? await group.shutdownGracefully()
    }

    private func tcpConnects(on loop: EventLoop) -> TCPConnects {
        let id = ObjectIdentifier(loop)
        if let c = connects[id] { return c }
        return otherConnects.withLockedValue { others in
            if let c = others[id] { return c }
            let c = TCPConnects(loop: loop)
            others[id] = c
            return c
        }
    }

    /// Forgets every TLS context, so that the next https probe reads its caFile again (a rotated CA
    /// takes effect), and makes each kept https connection close before its next probe: a connection
    /// kept from before was verified against the old CA, and a request on it does no handshake.
    /// For SIGHUP. Safe from any thread; probes in flight finish under the trust they started with.
    public func reloadTrust() {
        contexts.drop()
    }

    public func probe(_ target: ProbeTarget) async -> ProbeResult {
        (try? await start(target).get()) ?? .failure("probe failed")
    }

    /// The probe as a future that completes on `loop` (by default one of the prober's), when the result
    /// is known.
    func start(_ target: ProbeTarget, on loop: EventLoop? = nil) -> EventLoopFuture<ProbeResult> {
        let loop = loop ?? group.next()
        switch Self.socketAddress(of: target) {
        case .success(let address): return start(target, at: address, on: loop)
        case .failure(let error): return loop.makeSucceededFuture(.failure("\(Self.label(target.check)): \(error)"))
        }
    }

    /// Resolved once per backend by a repeating probe rather than once per probe.
    static func socketAddress(of target: ProbeTarget) -> Result<SocketAddress, Error> {
        Result { try SocketAddress(ipAddress: target.address.description, port: Int(target.port)) }
    }

    static func label(_ check: HealthCheck) -> String {
        check.type == .tcp ? "tcp" : "\(check.type.rawValue) \(check.path)"
    }

    /// One probe of `target`. An http(s) probe given `kept` asks over the connection an earlier probe of
    /// the same backend left open, and leaves its own open for the next; without, it closes at once.
    func start(_ target: ProbeTarget, at address: SocketAddress, on loop: EventLoop, keeping kept: KeptConnection? = nil)
        -> EventLoopFuture<ProbeResult>
    {
        let check = target.check
        guard check.type != .tcp, let kept else { return connect(target, at: address, on: loop, kept: nil) }
        if check.type == .https, kept.trust != contexts.generation { kept.close() }  // trust reloaded since
        let result: EventLoopFuture<ProbeResult>
        if let handler = kept.ready() {
            let done = loop.makePromise(of: ProbeResult.self)
            expire(done, after: check.timeout, on: loop) { kept.close() }
            handler.ask(done)
            // A kept connection the backend closed while it was idle ends before answering: that says
            // nothing of the backend's health, so the probe asks again on a new connection.
            result = done.futureResult.flatMapError { _ in self.connect(target, at: address, on: loop, kept: kept) }
        } else {
            result = connect(target, at: address, on: loop, kept: kept)
        }
        // A failing backend is asked on a new connection each time, as on the first.
        result.whenSuccess { if !$0.ok { kept.close() } }
        return result
    }

    /// Fulfils `done` with a timeout failure unless something else does first.
    private func expire(_ done: EventLoopPromise<ProbeResult>, after timeout: Duration, on loop: EventLoop, then: @escaping () -> Void = {}) {
        let deadline = loop.scheduleTask(in: .milliseconds(timeout.milliseconds)) {
            done.succeed(.failure("timeout after \(DurationText.format(timeout))", .timeout))
            then()
        }
        done.futureResult.whenComplete { _ in deadline.cancel() }
    }

    /// A probe on a new connection; an http(s) one hands its connection to `kept` when it may be reused.
    private func connect(_ target: ProbeTarget, at address: SocketAddress, on loop: EventLoop, kept: KeptConnection?)
        -> EventLoopFuture<ProbeResult>
    {
        let check = target.check
        // A tcp probe sends nothing: a plain socket, no channel (TCPConnects).
        if check.type == .tcp { return tcpConnects(on: loop).connect(to: address, timeout: check.timeout) }
        let timeout = TimeAmount.milliseconds(check.timeout.milliseconds)
        let label = Self.label(check)
        let tls: NIOSSLContext?, trust: Int
        if check.type == .https {
            do {
                (tls, trust) = try contexts.context(caFile: check.caFile, insecure: check.insecureSkipVerify)
            } catch {
                return loop.makeSucceededFuture(.failure("\(label): cannot load caFile \(check.caFile ?? ""): \(error)", .tls))
            }
        } else {
            (tls, trust) = (nil, 0)
        }
        let done = loop.makePromise(of: ProbeResult.self)
        expire(done, after: check.timeout, on: loop)
        let hostHeader = !check.host.isEmpty ? check.host : target.address.description
        let status = StatusHandler(path: check.path, host: hostHeader, expect: check.expectStatus, label: label, keepAlive: kept != nil, first: done)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                // Closed with a reset (SO_LINGER 0), as HAProxy closes its checks: no TIME_WAIT socket,
                // and the conntrack entry that nftpool's own nat table makes for every probe expires in
                // 10 s (CLOSE) instead of 120 s (TIME_WAIT). At 10,000 probes a second the TIME_WAIT
                // entries filled the LB's conntrack table and the kernel dropped packets. Set before
                // connecting: set once connected, 4 in 10 probes at that rate still closed with a FIN.
                let linger = (channel as? SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0))
                    ?? channel.eventLoop.makeSucceededVoidFuture()
                return linger.flatMapThrowing {
                    if let tls {
                        let sni = check.host.isEmpty || IPAddress(check.host) != nil ? nil : check.host
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: sni))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(status)
                }
            }
        bootstrap.connect(to: address).whenComplete { result in
            switch result {
            case .success(let channel):
                if let kept {
                    kept.hold(channel, status, trust: trust)
                } else {
                    done.futureResult.whenComplete { _ in channel.close(promise: nil) }
                }
            case .failure(let error):
                let (text, outcome) = Self.describe(error, timeout: check.timeout)
                done.succeed(.failure("\(label): \(text)", outcome))
            }
        }
        return done.futureResult
    }

    static func describe(_ error: Error, timeout: Duration) -> (String, ProbeResult.Outcome) {
        if let e = error as? ChannelError, case .connectTimeout = e { return ("timeout after \(DurationText.format(timeout))", .timeout) }
        if let e = error as? NIOConnectionError {
            if let first = e.connectionErrors.first { return describe(first.error, timeout: timeout) }
            return ("cannot connect", .error)
        }
        if let e = error as? IOError {
            switch e.errnoCode {
            case ECONNREFUSED: return ("connection refused", .refused)
            case EHOSTUNREACH: return ("host unreachable", .unreachable)
            case ENETUNREACH: return ("network unreachable", .unreachable)
            case ECONNRESET: return ("connection reset", .reset)
            default: return (String(cString: strerror(e.errnoCode)), .error)
            }
        }
        if error is NIOSSLError || error is BoringSSLError { return ("TLS: \(error)", .tls) }
        return ("\(error)", .error)
    }
}

/// Sends a GET per probe and fulfils it with the response status once the whole response is read (a
/// failing status at once), or with why there was none. With `keepAlive` the connection stays open
/// between probes while the backend agrees (HTTP/1.1 keep-alive).
final class StatusHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    /// The probe asked on a kept connection got no response before the connection ended.
    struct Stale: Error {}

    let path: String
    let host: String
    let expect: [Int]
    let label: String
    let keepAlive: Bool
    // Touched only on the channel's event loop.
    private var context: ChannelHandlerContext?
    private var pending: EventLoopPromise<ProbeResult>?
    /// Whether the pending probe went out on a connection that had answered an earlier one.
    private var reused = false
    /// Ready for another request: the last response ended and the backend keeps the connection.
    private(set) var idle = false
    /// The response being read: its (expected) status, whether the backend keeps the connection, and
    /// the body bytes read so far.
    private var answer: (code: Int, keepAlive: Bool, bodyBytes: Int)?

    init(path: String, host: String, expect: [Int], label: String, keepAlive: Bool, first: EventLoopPromise<ProbeResult>) {
        self.path = path
        self.host = host
        self.expect = expect
        self.label = label
        self.keepAlive = keepAlive
        pending = first
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Sends the next probe's request on this (idle) connection.
    func ask(_ done: EventLoopPromise<ProbeResult>) {
        pending = done
        answer = nil
        reused = true
        idle = false
        send()
    }

    private func send() {
        guard let context else { return }
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Host", value: host)
        head.headers.add(name: "User-Agent", value: "nftpool")
        if !keepAlive { head.headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelActive(context: ChannelHandlerContext) {
        send()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            let code = Int(head.status.code)
            guard expect.contains(code) else {
                // A failing status is the answer already; the connection is not kept after it.
                finish(.failure("\(label): status \(code)", .status), context: context, reusable: false)
                return
            }
            answer = (code, head.isKeepAlive, 0)
        case .body(let chunk):
            guard var a = answer else { return }
            a.bodyBytes += chunk.readableBytes
            answer = a
            // A backend streaming this much is alive and answering; the rest is not worth reading, so the
            // result is decided here and the connection, mid-response, is not reused.
            if a.bodyBytes > Self.bodyLimit {
                finish(.success("\(label): status \(a.code)"), context: context, reusable: false)
            }
        case .end:
            // Decided on the whole response: a backend that sends a 200 head and then stalls is what
            // clients see time out, so it must time out here too (the probe's deadline runs until now).
            guard let a = answer else { return }
            finish(.success("\(label): status \(a.code)"), context: context, reusable: keepAlive && a.keepAlive)
        }
    }

    /// Bodies are read and discarded up to this size.
    static let bodyLimit = 64 * 1024

    private func finish(_ result: ProbeResult, context: ChannelHandlerContext, reusable: Bool) {
        answer = nil
        // Reusable only once the whole response is read, so the next response is the next probe's. Set
        // before the result goes out: its callbacks may ask again at once.
        idle = reusable && context.channel.isActive
        let done = pending
        pending = nil
        if !reusable { context.close(promise: nil) }
        done?.succeed(result)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let (text, outcome) = Prober.describe(error, timeout: .zero)
        end(failure: text, outcome)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(failure: "connection closed before a response", .reset)
        context.fireChannelInactive()
    }

    private func end(failure: String, _ outcome: ProbeResult.Outcome) {
        idle = false
        answer = nil
        guard let pending else { return }
        self.pending = nil
        if reused {
            pending.fail(Stale())
        } else {
            pending.succeed(.failure("\(label): \(failure)", outcome))
        }
    }
}

/// One backend's http(s) probe connection, kept from one probe to the next, as Envoy's health checker
/// keeps its: a probe is then a request and a response instead of a TCP (and TLS) handshake, which at
/// thousands of backends is most of a probe's cost, here and at the backend. Used on one event loop only.
final class KeptConnection: @unchecked Sendable {
    private var channel: Channel?
    private var handler: StatusHandler?
    /// The trust generation (Prober.reloadTrust) the connection's TLS handshake was verified under.
    private(set) var trust = 0

    init() {}

    /// The connection's handler when it can carry a request now; otherwise any connection is closed.
    func ready() -> StatusHandler? {
        if let channel, let handler, channel.isActive, handler.idle { return handler }
        close()
        return nil
    }

    func hold(_ channel: Channel, _ handler: StatusHandler, trust: Int = 0) {
        close()
        self.channel = channel
        self.handler = handler
        self.trust = trust
    }

    /// Closes (with a reset, as every probe connection) and forgets the connection.
    func close() {
        channel?.close(promise: nil)
        channel = nil
        handler = nil
    }
}

/// One NIOSSLContext per trust setting: building one reads and parses the CA file, so a CA file
/// rewritten on disk is not seen until `drop`, which also starts a new trust generation.
private final class TLSContexts: @unchecked Sendable {  // every field under `lock`
    private let lock = NSLock()
    private var cache: [String: NIOSSLContext] = [:]
    private var current = 0

    var generation: Int { lock.withLock { current } }

    func drop() {
        lock.withLock {
            cache = [:]
            current += 1
        }
    }

    /// The context for a trust setting, and the generation it belongs to.
    func context(caFile: String?, insecure: Bool) throws -> (NIOSSLContext, Int) {
        let key = insecure ? "insecure" : "ca:" + (caFile ?? "")
        lock.lock()
        defer { lock.unlock() }
        if let c = cache[key] { return (c, current) }
        var config = TLSConfiguration.makeClientConfiguration()
        if insecure {
            config.certificateVerification = .none
        } else if let caFile {
            config.trustRoots = .file(caFile)
        }
        let c = try NIOSSLContext(configuration: config)
        cache[key] = c
        return (c, current)
    }
}
