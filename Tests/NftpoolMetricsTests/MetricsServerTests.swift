import Daemon
import Foundation
import NIOConcurrencyHelpers
@testable import NftpoolMetrics
@testable import Probes
import Testing

/// The metrics server on loopback (127.0.0.1, a port the kernel picks) against clients that misbehave:
/// whatever they do, the daemon's loop keeps telling the observers what it does without waiting, and
/// /healthz keeps answering.
@Suite(.serialized) struct MetricsServerTests {
    /// A blocking TCP client of 127.0.0.1, with a receive timeout.
    final class Client: Sendable {
        let fd: Int32

        /// `receiveBuffer` shrinks the socket's receive buffer (and so the window the server may fill).
        init(port: Int, receiveBuffer: Int32? = nil, timeout: Int = 5) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
            if var size = receiveBuffer {
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
            var tv = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard r == 0 else {
                let why = String(cString: strerror(errno))
                close(fd)
                throw Failure("connect to 127.0.0.1:\(port): \(why)")
            }
        }

        deinit { close(fd) }

        func get(_ path: String) {
            let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        /// Up to `max` bytes: empty at the end of the stream, nil on a timeout or an error (a reset).
        func read(max: Int = 65536) -> [UInt8]? {
            var buffer = [UInt8](repeating: 0, count: max)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, max, 0) }
            return n < 0 ? nil : Array(buffer.prefix(n))
        }

        /// Everything until the server closes; `closed` false when it stopped on a timeout or an error.
        func readToEnd() -> (bytes: [UInt8], closed: Bool) {
            var all: [UInt8] = []
            while let chunk = read() {
                if chunk.isEmpty { return (all, true) }
                all += chunk
            }
            return (all, false)
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Status code, Content-Length and the body received, from a response's bytes.
    static func response(_ bytes: [UInt8]) -> (code: Int, length: Int?, body: [UInt8]) {
        let end = Array("\r\n\r\n".utf8)
        guard let split = (0..<max(0, bytes.count - 3)).first(where: { Array(bytes[$0..<$0 + 4]) == end }) else { return (0, nil, []) }
        let head = String(decoding: bytes[..<split], as: UTF8.self).split(separator: "\r\n")
        let code = head.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        let length = head.first { $0.lowercased().hasPrefix("content-length:") }.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
        return (code, length, Array(bytes[(split + 4)...]))
    }

    /// GET /healthz on a fresh connection: its status, body and how long the answer took.
    static func healthz(_ port: Int) -> (code: Int, body: String, took: Duration) {
        let start = ContinuousClock.now
        guard let c = try? Client(port: port, timeout: 3) else { return (0, "no connection", start.duration(to: .now)) }
        c.get("/healthz")
        let r = response(c.readToEnd().bytes)
        return (r.code, String(decoding: r.body, as: UTF8.self), start.duration(to: .now))
    }

    /// The daemon's loop, played by a thread: every millisecond it makes the calls a loop makes (alive,
    /// a status, a probe result, a transition, a transaction) and keeps the slowest.
    final class Loop: Sendable {
        private let state = NIOLockedValueBox((stop: false, calls: 0, slowest: Duration.zero))
        private let done = DispatchSemaphore(value: 0)

        init(_ m: DaemonMetrics, _ doc: StatusFile.Document, id: String) {
            let thread = Thread { [state, done] in
                while !state.withLockedValue({ $0.stop }) {
                    let start = ContinuousClock.now
                    m.loopAlive(at: start)
                    m.published(doc)
                    m.probed(id, .success("tcp: connected"), took: .milliseconds(1))
                    m.transition(id, HealthTracker.Transition(from: .down, to: .up, reason: "ok", after: .seconds(1)))
                    m.applied(took: .milliseconds(1), messages: 3)
                    let took = start.duration(to: .now)
                    state.withLockedValue { s in
                        s.calls += 1
                        s.slowest = max(s.slowest, took)
                    }
                    usleep(1000)
                }
                done.signal()
            }
            thread.start()
        }

        func stop() -> (calls: Int, slowest: Duration) {
            state.withLockedValue { $0.stop = true }
            done.wait()
            return state.withLockedValue { ($0.calls, $0.slowest) }
        }
    }

    /// Slow scrapers and a stuck metrics queue cannot hold up the daemon: with one client that asks for
    /// /metrics and never reads, one that reads a byte a second, the metrics queue held for 1 s (a render
    /// that takes that long) and six more scrapes meanwhile, the loop's observer calls stay quick and
    /// /healthz answers on another connection every time, at once. At most four scrapes are in flight
    /// (waiting or being sent), and the two stalled ones count: of the six, two are answered and four get
    /// 503 at once. The stalled connections are closed after the idle timeout (2 s here, 10 s in the
    /// daemon), so they hold no connection and no response buffer longer than that.
    @Test func aSlowScrapeClientCannotHoldUpTheDaemon() throws {
        let m = DaemonMetrics(version: "1", readKernel: false)
        // 3,000 backends: a 6.2 MB scrape, more than loopback's socket buffers take in while nobody reads.
        let doc = try DaemonMetricsTests.status(pools: 300, backends: 10)
        m.loopAlive(at: .now)
        m.published(doc)
        m.started()
        let server = MetricsServer(address: MetricsAddress(host: "127.0.0.1", port: 0), metrics: m, idleTimeout: .seconds(2))
        try server.prepare()
        defer { server.stopping() }
        let port = try #require(server.boundPort)
        #expect(Self.healthz(port).code == 200)

        let loop = Loop(m, doc, id: "pool0/10.0.0.1:80")
        var health: [(code: Int, body: String, took: Duration)] = []
        let start = ContinuousClock.now

        let stalled = try Client(port: port, receiveBuffer: 4096)
        stalled.get("/metrics")
        let trickle = try Client(port: port, receiveBuffer: 4096, timeout: 1)
        trickle.get("/metrics")
        // (bytes read, stop): it reads a byte a second until told to stop.
        let trickled = NIOLockedValueBox((bytes: 0, stop: false))
        let trickleDone = DispatchSemaphore(value: 0)
        Thread { [trickle] in
            while !trickled.withLockedValue({ $0.stop }), let byte = trickle.read(max: 1), !byte.isEmpty {
                trickled.withLockedValue { $0.bytes += 1 }
                sleep(1)
            }
            trickleDone.signal()
        }.start()
        // Both rendered (the trickle's first byte came), then the queue is held 1 s (less than the idle
        // timeout, which closes a connection whose scrape waits longer).
        #expect(Self.wait(5) { trickled.withLockedValue { $0.bytes } > 0 })
        m.queue.async { usleep(1_000_000) }
        let held = ContinuousClock.now
        let waiting = try (0..<6).map { _ in
            let c = try Client(port: port, timeout: 10)
            c.get("/metrics")
            return c
        }
        // Threads, not Dispatch's pool: on 2 cores its workers may all be taken by the held queue.
        let answered = DispatchSemaphore(value: 0)
        let answers = NIOLockedValueBox<[(code: Int, length: Int?, count: Int, after: Duration)]>([])
        for c in waiting {
            Thread {
                let r = Self.response(c.readToEnd().bytes)
                answers.withLockedValue { $0.append((r.code, r.length, r.body.count, held.duration(to: .now))) }
                answered.signal()
            }.start()
        }
        while start.duration(to: .now) < .seconds(4) {
            health.append(Self.healthz(port))
            usleep(100_000)
        }
        for _ in waiting { answered.wait() }
        let (calls, slowest) = loop.stop()

        // Every connection is closed: the stalled two by the idle timeout, the others after their answer.
        #expect(Self.wait(5) { server.open.withLockedValue { $0 } == 0 }, "\(server.open.withLockedValue { $0 }) connections still open")
        trickled.withLockedValue { $0.stop = true }
        #expect(trickleDone.wait(timeout: .now() + 3) == .success)
        let rest = stalled.readToEnd()
        let first = Self.response(rest.bytes)
        let length = try #require(first.length)
        #expect(first.code == 200 && first.body.count < length, "the server gave up on the stalled client: \(first.body.count) of \(length) bytes")

        let slowestHealth = health.map(\.took).max() ?? .zero
        let a = answers.withLockedValue { $0 }
        print("figure: slow scrapers: \(calls) loop rounds, slowest \(slowest); /healthz \(health.count) times, slowest \(slowestHealth); scrapes while the queue was held: \(a.map { "\($0.code) after \($0.after)" }.joined(separator: ", ")); the stalled client got \(first.body.count) of \(length) bytes before the close")
        #expect(calls > 1000)
        #expect(slowest < .milliseconds(100), "the loop's observer calls never wait on the queue or a client")
        #expect(health.count >= 20 && health.allSatisfy { $0.code == 200 && $0.body == "ok\n" }, "\(health.filter { $0.code != 200 })")
        #expect(slowestHealth < .milliseconds(500))
        #expect(a.filter { $0.code == 503 }.count == 4 && a.filter { $0.code == 503 }.allSatisfy { $0.after < .milliseconds(500) }, "\(a)")
        #expect(a.filter { $0.code == 200 }.count == 2 && a.filter { $0.code == 200 }.allSatisfy { $0.length == $0.count }, "\(a)")
        // Their slots are free again: a scrape now is answered.
        #expect(server.queuedScrapes.withLockedValue { $0 } == 0)
    }

    /// At most 64 connections: the 65th is closed at once, and connections that send no request are closed
    /// after the request timeout, after which /healthz answers again. (So 64 idle clients can keep /healthz
    /// from getting a connection for up to 2 s.)
    @Test func connectionsAreBoundedAndIdleOnesClosed() throws {
        let m = DaemonMetrics(version: "1", readKernel: false)
        m.loopAlive(at: .now)
        m.published(try DaemonMetricsTests.status())
        let server = MetricsServer(address: MetricsAddress(host: "127.0.0.1", port: 0), metrics: m, idleTimeout: .seconds(2))
        try server.prepare()
        defer { server.stopping() }
        let port = try #require(server.boundPort)
        let idle = try (0..<MetricsServer.maxConnections).map { _ in try Client(port: port) }
        #expect(Self.wait(2) { server.open.withLockedValue { $0 } == MetricsServer.maxConnections })
        let refused = Self.healthz(port)
        #expect(refused.code == 0 && refused.took < .milliseconds(500), "the 65th connection is closed at once: \(refused)")
        #expect(Self.wait(5) { server.open.withLockedValue { $0 } == 0 })
        #expect(Self.healthz(port).code == 200)
        #expect(idle.allSatisfy { $0.readToEnd() == ([], true) })
    }

    static func wait(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
