import Foundation
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

    public init(address: IPAddress, port: UInt16, check: HealthCheck) {
        self.address = address
        self.port = port
        self.check = check
    }
}

/// Runs probes over SwiftNIO (and NIOSSL for https). Each probe is its own connection with its own
/// deadline, so a backend that never answers holds up nothing but its own probe.
public final class Prober: Sendable {
    let group: MultiThreadedEventLoopGroup
    private let contexts = TLSContexts()

    /// One event loop per core by default: at 10,000 probes a second one loop alone is busy enough that
    /// its probes start late and time out.
    public init(threads: Int = System.coreCount) {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    }

    public func shutdown() async {
        try? await group.shutdownGracefully()
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

    func start(_ target: ProbeTarget, at address: SocketAddress, on loop: EventLoop) -> EventLoopFuture<ProbeResult> {
        let check = target.check
        let timeout = TimeAmount.milliseconds(check.timeout.milliseconds)
        let label = Self.label(check)
        let tls: NIOSSLContext?
        if check.type == .https {
            do {
                tls = try contexts.context(caFile: check.caFile, insecure: check.insecureSkipVerify)
            } catch {
                return loop.makeSucceededFuture(.failure("\(label): cannot load caFile \(check.caFile ?? ""): \(error)"))
            }
        } else {
            tls = nil
        }
        let done = loop.makePromise(of: ProbeResult.self)
        // A tcp probe is over when connect is: its connect timeout is the deadline.
        let deadline = check.type == .tcp ? nil : loop.scheduleTask(in: timeout) {
            done.succeed(.failure("timeout after \(DurationText.format(check.timeout))"))
        }
        let hostHeader = check.type == .tcp || !check.host.isEmpty ? check.host : target.address.description
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
                guard check.type != .tcp else { return linger }
                return linger.flatMapThrowing {
                    if let tls {
                        let sni = check.host.isEmpty || IPAddress(check.host) != nil ? nil : check.host
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: sni))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(
                        StatusHandler(path: check.path, host: hostHeader, expect: check.expectStatus, label: label, done: done))
                }
            }
        bootstrap.connect(to: address).whenComplete { result in
            switch result {
            case .success(let channel):
                if check.type == .tcp { done.succeed(.success("tcp: connected")) }
                done.futureResult.whenComplete { _ in channel.close(promise: nil) }
            case .failure(let error):
                done.succeed(.failure("\(label): \(Self.describe(error, timeout: check.timeout))"))
            }
        }
        if let deadline { done.futureResult.whenComplete { _ in deadline.cancel() } }
        return done.futureResult
    }

    static func describe(_ error: Error, timeout: Duration) -> String {
        if let e = error as? ChannelError, case .connectTimeout = e { return "timeout after \(DurationText.format(timeout))" }
        if let e = error as? NIOConnectionError {
            if let first = e.connectionErrors.first { return describe(first.error, timeout: timeout) }
            return "cannot connect"
        }
        if let e = error as? IOError {
            switch e.errnoCode {
            case ECONNREFUSED: return "connection refused"
            case EHOSTUNREACH: return "host unreachable"
            case ENETUNREACH: return "network unreachable"
            case ECONNRESET: return "connection reset"
            default: return String(cString: strerror(e.errnoCode))
            }
        }
        if let e = error as? NIOSSLError { return "TLS: \(e)" }
        return "\(error)"
    }
}

/// Sends one GET and fulfils the probe with the response status, or with why there was none.
private final class StatusHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let path: String
    let host: String
    let expect: [Int]
    let label: String
    let done: EventLoopPromise<ProbeResult>

    init(path: String, host: String, expect: [Int], label: String, done: EventLoopPromise<ProbeResult>) {
        self.path = path
        self.host = host
        self.expect = expect
        self.label = label
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Host", value: host)
        head.headers.add(name: "User-Agent", value: "nftpool")
        head.headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            let code = Int(head.status.code)
            done.succeed(expect.contains(code) ? .success("\(label): status \(code)") : .failure("\(label): status \(code)"))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        done.succeed(.failure("\(label): \(Prober.describe(error, timeout: .zero))"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.succeed(.failure("\(label): connection closed before a response"))
        context.fireChannelInactive()
    }
}

/// One NIOSSLContext per trust setting: building one reads and parses the CA file.
private final class TLSContexts: @unchecked Sendable {
    private let lock = NSLock()
    private var cache: [String: NIOSSLContext] = [:]

    func context(caFile: String?, insecure: Bool) throws -> NIOSSLContext {
        let key = insecure ? "insecure" : "ca:" + (caFile ?? "")
        lock.lock()
        defer { lock.unlock() }
        if let c = cache[key] { return c }
        var config = TLSConfiguration.makeClientConfiguration()
        if insecure {
            config.certificateVerification = .none
        } else if let caFile {
            config.trustRoots = .file(caFile)
        }
        let c = try NIOSSLContext(configuration: config)
        cache[key] = c
        return c
    }
}
