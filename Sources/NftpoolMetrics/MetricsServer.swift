import Daemon
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The HTTP side of `--metrics-address`: `/metrics`, `/healthz`, `/readyz` on one event loop thread of
/// its own. Bounded: at most `maxConnections` open connections (more are closed at once), a connection
/// that sends no request within `requestTimeout` or is idle for `idleTimeout` is closed (a client that
/// stops reading cannot hold one), and at most `maxQueuedScrapes` scrapes are in flight, waiting on the
/// metrics queue or being sent (more get 503): a response is megabytes at thousands of backends, and
/// clients that do not read would otherwise each hold one until the idle timeout (measured before the
/// bound: 63 of them at 3,000 backends took the daemon from 70 MB to 466 MB).
public final class MetricsServer: DaemonObserver {
    public struct BindError: Error, CustomStringConvertible {
        public var address: MetricsAddress
        public var reason: String
        public var description: String {
            "cannot serve metrics on \(address): \(reason) (choose another with --metrics-address ADDR:PORT, or --metrics-address off)"
        }
    }

    static let maxConnections = 64
    static let maxQueuedScrapes = 4
    static let idleTimeout = TimeAmount.seconds(10)
    /// A connection must send its request head this soon: idle connections cannot keep /healthz (the
    /// liveness probe) from getting a connection for long.
    static let requestTimeout = TimeAmount.seconds(2)

    public let address: MetricsAddress
    let metrics: DaemonMetrics
    let idleTimeout: TimeAmount
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel = NIOLockedValueBox<Channel?>(nil)
    let open = NIOLockedValueBox(0)
    let queuedScrapes = NIOLockedValueBox(0)

    public convenience init(address: MetricsAddress, metrics: DaemonMetrics) {
        self.init(address: address, metrics: metrics, idleTimeout: Self.idleTimeout)
    }

    /// Tests shorten the idle timeout.
    init(address: MetricsAddress, metrics: DaemonMetrics, idleTimeout: TimeAmount) {
        self.address = address
        self.metrics = metrics
        self.idleTimeout = idleTimeout
    }

    /// The port bound (the address's, or the one the kernel chose for port 0); nil before `prepare`.
    var boundPort: Int? {
        channel.withLockedValue { $0?.localAddress?.port }
    }

    /// Binds after the daemon took its table's lock (DaemonObserver.prepare).
    public func prepare() throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 32)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // The address need not be up yet: a VIP keepalived brings later, or a namespace whose
            // loopback is still down.
            .serverChannelOption(ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(IPPROTO_IP)), name: .init(rawValue: CInt(IP_FREEBIND))), value: 1)
            .childChannelInitializer { channel in
                let admitted = self.open.withLockedValue { n -> Bool in
                    guard n < Self.maxConnections else { return false }
                    n += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in self.open.withLockedValue { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: self.idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(server: self))
                }
            }
        do {
            let bound = try bootstrap.bind(host: address.host, port: address.port).wait()
            channel.withLockedValue { $0 = bound }
        } catch {
            try? group.syncShutdownGracefully()
            throw BindError(address: address, reason: Self.describe(error))
        }
    }

    public func stopping() {
        let c = channel.withLockedValue { c in defer { c = nil }; return c }
        try? c?.close().wait()
    }

    var requestTimeout: TimeAmount { min(idleTimeout, Self.requestTimeout) }

    /// A scrape's response was sent (or its connection ended): it no longer counts as in flight.
    func scrapeFinished() {
        queuedScrapes.withLockedValue { $0 -= 1 }
    }

    /// Renders on the metrics queue and completes `promise` with the text, or fails it when too many
    /// scrapes are already in flight. A completed scrape stays in flight until `scrapeFinished`.
    func scrape(_ promise: EventLoopPromise<[UInt8]>) {
        let admitted = queuedScrapes.withLockedValue { n -> Bool in
            guard n < Self.maxQueuedScrapes else { return false }
            n += 1
            return true
        }
        guard admitted else {
            promise.fail(Busy())
            return
        }
        metrics.queue.async {
            promise.succeed(self.metrics.render())
        }
    }

    struct Busy: Error {}

    static func describe(_ error: Error) -> String {
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        return "\(error)"
    }
}
