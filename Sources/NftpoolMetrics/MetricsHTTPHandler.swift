import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// One connection of the metrics server: GET (or HEAD) /metrics, /healthz, /readyz; one response per
/// request, then the connection closes. Runs on the server's event loop and never blocks it: /metrics
/// waits for the metrics queue through a promise.
final class MetricsHTTPHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let server: MetricsServer

    init(server: MetricsServer) {
        self.server = server
    }

    /// Closes a connection that has not sent its request head in time.
    private let requestDeadline = NIOLockedValueBox<Scheduled<Void>?>(nil)

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        let deadline = context.eventLoop.scheduleTask(in: server.requestTimeout) { channel.close(promise: nil) }
        requestDeadline.withLockedValue { $0 = deadline }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        requestDeadline.withLockedValue { $0?.cancel(); $0 = nil }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard head.method == .GET || head.method == .HEAD else {
            respond(context, .methodNotAllowed, "only GET and HEAD\n", head: head)
            return
        }
        switch path {
        case "/metrics":
            let promise = context.eventLoop.makePromise(of: [UInt8].self)
            server.scrape(promise)
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            let server = self.server
            promise.futureResult.whenComplete { result in
                let context = loopBound.value
                switch result {
                case .success(let text):
                    // In flight until sent, or until the connection ends (a client that stops reading).
                    self.respond(context, .ok, text, type: "text/plain; version=0.0.4; charset=utf-8", head: head, sent: server.scrapeFinished)
                case .failure:
                    self.respond(context, .serviceUnavailable, Array("too many scrapes at once\n".utf8), head: head)
                }
            }
        case "/healthz":
            let v = server.metrics.liveness()
            respond(context, v.ok ? .ok : .serviceUnavailable, v.text + "\n", head: head)
        case "/readyz":
            let v = server.metrics.readiness()
            respond(context, v.ok ? .ok : .serviceUnavailable, v.text + "\n", head: head)
        default:
            respond(context, .notFound, "not found: /metrics, /healthz and /readyz are served\n", head: head)
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ text: String, head: HTTPRequestHead) {
        respond(context, status, Array(text.utf8), type: "text/plain; charset=utf-8", head: head)
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: [UInt8], type: String = "text/plain; charset=utf-8", head: HTTPRequestHead,
                         sent: (@Sendable () -> Void)? = nil) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            sent?()
            channel.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
