import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import PoolSpec
@testable import Probes

/// The monitor on real loopback probes: transitions reach the handler, and a stopped backend is left alone.
@Suite(.serialized) struct HealthMonitorTests {
    let check = HealthCheck(
        type: .tcp, interval: .milliseconds(100), fastInterval: .milliseconds(20), timeout: .milliseconds(200), rise: 2, fall: 2)

    final class Seen: Sendable {
        let box = NIOLockedValueBox<[(String, HealthTracker.Transition)]>([])
        func add(_ id: String, _ t: HealthTracker.Transition) { box.withLockedValue { $0.append((id, t)) } }
        var all: [(String, HealthTracker.Transition)] { box.withLockedValue { $0 } }

        /// Waits up to `limit` for `count` transitions.
        func wait(for count: Int, limit: Duration = .seconds(3)) async -> [(String, HealthTracker.Transition)] {
            let end = ContinuousClock.now + limit
            while all.count < count && ContinuousClock.now < end { try? await Task.sleep(for: .milliseconds(10)) }
            return all
        }
    }

    @Test func aBackendRisesThenFallsWhenItStopsListening() async throws {
        let prober = Prober(threads: 1)
        let seen = Seen()
        let monitor = HealthMonitor(prober: prober) { seen.add($0, $1) }
        let listener = try Listener(answer: nil)
        monitor.watch("b0", target: ProbeTarget(address: IPAddress("127.0.0.1")!, port: listener.port, check: check), initial: .down, reason: "not yet checked")

        let rose = await seen.wait(for: 1)
        #expect(rose.map(\.0) == ["b0"] && rose.first?.1.from == .down && rose.first?.1.to == .up)
        #expect(rose.first?.1.reason == "tcp: connected")
        #expect(monitor.status()["b0"]?.state == .up)

        listener.close()
        let fell = await seen.wait(for: 2)
        #expect(fell.count == 2 && fell.last?.1.to == .down)
        #expect(fell.last?.1.reason == "tcp: connection refused")
        #expect(monitor.status()["b0"]?.reason == "tcp: connection refused")
        monitor.stopAll()
        await prober.shutdown()
    }

    @Test func aBackendNoLongerWatchedIsNoLongerProbed() async throws {
        let prober = Prober(threads: 1)
        let seen = Seen()
        let monitor = HealthMonitor(prober: prober) { seen.add($0, $1) }
        let a = try Listener(answer: nil)
        let b = try Listener(answer: nil)
        monitor.watch("a", target: ProbeTarget(address: IPAddress("127.0.0.1")!, port: a.port, check: check), initial: .up, reason: "serving")
        monitor.watch("b", target: ProbeTarget(address: IPAddress("127.0.0.1")!, port: b.port, check: check), initial: .up, reason: "serving")
        try await Task.sleep(for: .milliseconds(150))
        monitor.retain(only: ["b"])
        #expect(Set(monitor.status().keys) == ["b"])
        a.close()
        b.close()
        // b falls within an interval and a fastInterval; a, no longer watched, must stay silent.
        try await Task.sleep(for: .milliseconds(600))
        #expect(seen.all.map(\.0) == ["b"], "\(seen.all)")
        monitor.stopAll()
        await prober.shutdown()
    }
}

/// The wheel runs work in due order and never early.
struct ProbeWheelTests {
    @Test func workRunsInDueOrderAndNotBeforeItsDelay() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let wheel = ProbeWheel(loop: loop)
        let ran = NIOLockedValueBox<[(Int, Duration)]>([])
        let start = ContinuousClock.now
        try await loop.submit {
            for ms in [60, 20, 40, 20] {
                wheel.schedule(after: .milliseconds(ms)) { ran.withLockedValue { $0.append((ms, start.duration(to: .now))) } }
            }
        }.get()
        try await Task.sleep(for: .milliseconds(300))
        let order = ran.withLockedValue { $0 }
        #expect(order.map(\.0) == [20, 20, 40, 60])
        for (ms, at) in order { #expect(at >= .milliseconds(ms), "\(ms) ms ran after \(at)") }
        try await group.shutdownGracefully()
    }
}
