import Foundation
import Testing

@testable import PoolSpec
@testable import Probes

/// A backend taken down by passive health: probed at fastInterval until `rise` brings it back.
struct PassiveMarkDownTests {
    let check = HealthCheck(type: .tcp, interval: .milliseconds(500), fastInterval: .milliseconds(100), timeout: .milliseconds(200), rise: 2, fall: 3)
    let t0 = ContinuousClock.now

    @Test func markDownProbesFastUntilRiseBringsItBack() {
        var h = HealthTracker(check: check, initial: .up, now: t0, reason: "serving")
        let t = h.markDown(reason: "passive: connection reset by the backend", at: t0 + .seconds(4))
        #expect(t == HealthTracker.Transition(from: .up, to: .down, reason: "passive: connection reset by the backend", after: .seconds(4)))
        #expect(h.state == .down && h.nextDelay == .milliseconds(100), "fastInterval while down after a passive fall")
        #expect(h.markDown(reason: "again", at: t0 + .seconds(5)) == nil, "already down: nothing")
        #expect(h.record(.failure("tcp: connection refused"), at: t0 + .seconds(5)) == nil)
        #expect(h.nextDelay == .milliseconds(100), "still hurried")
        #expect(h.record(.success("tcp: connected"), at: t0 + .seconds(6)) == nil)
        let up = h.record(.success("tcp: connected"), at: t0 + .seconds(7))
        #expect(up?.to == .up && up?.after == .seconds(3))
        #expect(h.nextDelay == .milliseconds(500), "stable again: interval")
    }
}
