import Foundation
import Testing

@testable import PoolSpec
@testable import Probes

/// The rise/fall state machine against a clock the test moves by hand.
struct HealthTrackerTests {
    let check = HealthCheck(type: .tcp, interval: .milliseconds(500), fastInterval: .milliseconds(100), timeout: .milliseconds(200), rise: 2, fall: 3)
    let t0 = ContinuousClock.now

    @Test func fallNeedsFallFailuresInARowAndProbesFastMeanwhile() {
        var h = HealthTracker(check: check, initial: .up, now: t0, reason: "serving")
        #expect(h.nextDelay == .milliseconds(500))
        #expect(h.record(.failure("tcp: connection refused"), at: t0 + .seconds(1)) == nil)
        #expect(h.nextDelay == .milliseconds(100), "falling: fastInterval")
        #expect(h.record(.failure("tcp: connection refused"), at: t0 + .seconds(2)) == nil)
        let t = h.record(.failure("timeout after 200ms"), at: t0 + .seconds(3))
        #expect(t == HealthTracker.Transition(from: .up, to: .down, reason: "timeout after 200ms", after: .seconds(3)))
        #expect(h.state == .down && h.nextDelay == .milliseconds(500))
    }

    @Test func aSuccessInTheMiddleResetsTheFall() {
        var h = HealthTracker(check: check, initial: .up, now: t0, reason: "serving")
        _ = h.record(.failure("x"), at: t0)
        _ = h.record(.failure("x"), at: t0)
        #expect(h.record(.success("tcp: connected"), at: t0) == nil)
        #expect(h.nextDelay == .milliseconds(500), "stable again: interval")
        _ = h.record(.failure("x"), at: t0)
        #expect(h.record(.failure("x"), at: t0) == nil, "the count started over")
        #expect(h.state == .up)
    }

    @Test func riseNeedsRiseSuccessesAndSaysHowLongItWasDown() {
        var h = HealthTracker(check: check, initial: .down, now: t0, reason: "not yet checked")
        #expect(h.record(.success("http /healthz: status 200"), at: t0 + .milliseconds(100)) == nil)
        #expect(h.nextDelay == .milliseconds(100), "rising: fastInterval")
        let t = h.record(.success("http /healthz: status 200"), at: t0 + .milliseconds(200))
        #expect(t?.to == .up && t?.after == .milliseconds(200) && t?.reason == "http /healthz: status 200")
        #expect(h.lastReason == "http /healthz: status 200")
    }
}

/// Real probes on loopback: a listener, a closed port, and a listener that never answers.
@Suite(.serialized) struct ProberTests {
    @Test func tcpProbeSaysWhy() async throws {
        let prober = Prober()
        let open = try Listener(answer: nil)
        let up = await prober.probe(ProbeTarget(address: IPAddress("127.0.0.1")!, port: open.port, check: HealthCheck(type: .tcp)))
        #expect(up == .success("tcp: connected"))
        let closedPort = open.port
        open.close()
        let down = await prober.probe(ProbeTarget(address: IPAddress("127.0.0.1")!, port: closedPort, check: HealthCheck(type: .tcp)))
        #expect(down == .failure("tcp: connection refused", .refused))
        await prober.shutdown()
    }

    @Test func httpProbeChecksTheStatus() async throws {
        let prober = Prober()
        let ok = try Listener(answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        let unready = try Listener(answer: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        let check = HealthCheck(type: .http, path: "/readyz", expectStatus: [200])
        let a = await prober.probe(ProbeTarget(address: IPAddress("127.0.0.1")!, port: ok.port, check: check))
        let b = await prober.probe(ProbeTarget(address: IPAddress("127.0.0.1")!, port: unready.port, check: check))
        #expect(a == .success("http /readyz: status 200"))
        #expect(b == .failure("http /readyz: status 503", .status))
        await prober.shutdown()
    }

    /// A backend that accepts and never answers costs its own probe the timeout, and nobody else a thing.
    @Test func aHungBackendDoesNotDelayAnother() async throws {
        let prober = Prober()
        let hung = try Listener(answer: nil, silent: true)
        let ok = try Listener(answer: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        let check = HealthCheck(type: .http, path: "/", timeout: .seconds(2))
        // Completion times are taken on the event loop as each result is known: measured after an
        // await, they would include however long the test's own task waited for a thread while other
        // suites' synchronous tests held the cooperative pool (seen: 2.4 s in a full run).
        let clock = ContinuousClock()
        let done = Completions()
        let start = clock.now
        let slowFuture = prober.start(ProbeTarget(address: IPAddress("127.0.0.1")!, port: hung.port, check: check))
        slowFuture.whenComplete { _ in done.mark("slow", clock.now) }
        let fastFuture = prober.start(ProbeTarget(address: IPAddress("127.0.0.1")!, port: ok.port, check: check))
        fastFuture.whenComplete { _ in done.mark("fast", clock.now) }
        let fast = try await fastFuture.get()
        let slowResult = try await slowFuture.get()
        let fastTook = start.duration(to: done.at("fast")!)
        let slowTook = start.duration(to: done.at("slow")!)
        // Blocked behind the hung probe it would take its 2 s; a loaded CI machine may still be slow.
        #expect(fast.ok && fastTook < .seconds(1), "\(fastTook)")
        #expect(slowResult == .failure("timeout after 2s", .timeout))
        #expect(slowTook >= .milliseconds(1900))
        await prober.shutdown()
    }
}

/// A probe closes with a reset: no TIME_WAIT (or FIN_WAIT) socket and no 120 s conntrack entry per probe.
@Suite(.serialized) struct ProbeCloseTests {
    @Test func aTCPProbeLeavesNoSocketBehind() async throws {
        let open = try Listener(answer: nil, silent: true)  // never closes: only the probe ends connections
        try await expectNoTimeWait(port: open.port, check: HealthCheck(type: .tcp))
    }

    @Test func anHTTPProbeLeavesNoSocketBehind() async throws {
        let ok = try Listener(answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", keepOpen: true)
        try await expectNoTimeWait(port: ok.port, check: HealthCheck(type: .http, path: "/healthz"))
    }

    func expectNoTimeWait(port: UInt16, check: HealthCheck) async throws {
        let prober = Prober()
        for _ in 0..<5 {
            let r = await prober.probe(ProbeTarget(address: IPAddress("127.0.0.1")!, port: port, check: check))
            #expect(r.ok, "\(r)")
        }
        try await Task.sleep(for: .milliseconds(100))
        let ss = Process()
        ss.executableURL = URL(fileURLWithPath: "/usr/bin/ss")
        // Every socket of the probe's side, in any state: a reset leaves none behind.
        ss.arguments = ["-tanH", "dport", "= :\(port)"]
        let out = Pipe()
        ss.standardOutput = out
        try ss.run()
        ss.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.isEmpty, "sockets left after \(check.type) probes:\n\(text)")
        await prober.shutdown()
    }
}

/// When each future completed, recorded from the event loop's thread.
final class Completions: @unchecked Sendable {
    private let lock = NSLock()
    private var times: [String: ContinuousClock.Instant] = [:]

    func mark(_ name: String, _ at: ContinuousClock.Instant) {
        lock.lock()
        times[name] = at
        lock.unlock()
    }

    func at(_ name: String) -> ContinuousClock.Instant? {
        lock.lock()
        defer { lock.unlock() }
        return times[name]
    }
}
