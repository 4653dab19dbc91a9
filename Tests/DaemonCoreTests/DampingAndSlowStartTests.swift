import Foundation
import Kernel
import PoolSpec
import Ruleset
import Testing

@testable import Daemon
@testable import Probes

/// Flap damping and slowstart as the core decides them, against FakeKernel and a clock the test moves.
struct DampingAndSlowStartTests {
    let t0 = ContinuousClock.now

    static func spec(damping: String = "", slowstart: String = "") throws -> Spec {
        try SpecDecoder.decode("""
            table: t
            pools:
              - name: web
                frontends: [{address: 10.0.0.1, port: 80}]
                \(slowstart.isEmpty ? "" : "slowstart: \(slowstart)")
                healthCheck: {type: tcp\(damping.isEmpty ? "" : ", damping: \(damping)")}
                backends: [{address: 10.1.0.1}, {address: 10.1.0.2}, {address: 10.1.0.3}]
            """)
    }

    func flip(_ i: Int, _ to: HealthTracker.State) -> (ref: BackendRef, transition: HealthTracker.Transition) {
        DaemonCoreTests.flip(i, to)
    }

    func started(_ spec: Spec, _ kernel: FakeKernel) throws -> DaemonCore {
        let core = DaemonCore(spec: spec, kernel: kernel)
        _ = try core.start()
        _ = core.healthChanged((0..<3).map { flip($0, .up) }, now: t0)
        #expect(core.health.down.isEmpty)
        #expect(core.health.ramp.isEmpty, "no slowstart when nothing was serving (a first start)")
        return core
    }

    func held(_ core: DaemonCore) -> [String: Int] { SlotMembership.held(core.spec.pools[0], in: core.applied!) }

    @Test func aFlappingBackendIsHeldDownLongerEachTimeAndLoggedOnce() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(damping: "{falls: 2, within: 60s, hold: 5s, maxHold: 12s}"), kernel)
        var now = t0
        func fall() { now += .seconds(1); _ = core.healthChanged([flip(0, .down)], now: now) }
        func rise() -> [DaemonCore.Line] { now += .seconds(1); return core.healthChanged([flip(0, .up)], now: now) }
        fall()
        #expect(rise().first?.level == .notice && !core.health.down.contains(DaemonCoreTests.ref(0)), "one fall: serves at once")
        fall()
        let first = rise()
        #expect(first.first?.level == .warning && first.first?.text.contains("flapping (2+ falls within 1m): held down for 5s") == true, "\(first)")
        #expect(core.health.down.contains(DaemonCoreTests.ref(0)) && held(core)["10.1.0.1:80", default: 0] == 0)
        #expect(core.tick(now: now + .seconds(4)).isEmpty, "still held")
        let released = core.tick(now: now + .seconds(5))
        #expect(released.first?.text.hasPrefix("pool web backend 10.1.0.1:80: hold over (flap damping), taking new connections") == true, "\(released)")
        #expect(held(core)["10.1.0.1:80", default: 0] > 0)
        now += .seconds(5)
        // Flapping on: 10 s, then the cap (12 s), each logged quietly.
        fall()
        let second = rise()
        #expect(second.first?.level == .info && second.first?.text.contains("held down for 10s") == true, "\(second)")
        fall()  // a fall while held cancels the release
        #expect(core.tick(now: now + .seconds(11)).isEmpty && core.health.down.contains(DaemonCoreTests.ref(0)))
        #expect(rise().first?.text.contains("held down for 12s") == true)
        // A minute without a fall forgives it.
        _ = core.tick(now: now + .seconds(12))
        now += .seconds(80)
        fall()
        #expect(rise().first?.level == .notice, "forgiven")
    }

    @Test func aHoldIsForgottenWhenTheBackendIsDisabledAndItsProbesStartOver() throws {
        let core = try started(try Self.spec(damping: "{falls: 1, within: 60s, hold: 30s}"), FakeKernel())
        _ = core.healthChanged([flip(0, .down)], now: t0)
        _ = core.healthChanged([flip(0, .up)], now: t0 + .seconds(1))
        #expect(core.damper.heldUntil(DaemonCoreTests.ref(0)) != nil)
        _ = core.change(pool: "web", backend: "10.1.0.1:80", to: .state(.disabled, closeConnections: false), force: false, now: t0 + .seconds(2), wall: 1)
        _ = core.change(pool: "web", backend: "10.1.0.1:80", to: .state(.enabled, closeConnections: false), force: false, now: t0 + .seconds(3), wall: 2)
        #expect(core.damper.heldUntil(DaemonCoreTests.ref(0)) == nil)
        // The old hold's end does not put it back: only its restarted probes' rise does.
        _ = core.tick(now: t0 + .seconds(40))
        #expect(core.health.down.contains(DaemonCoreTests.ref(0)))
    }

    @Test func withoutDampingEveryRiseServes() throws {
        let core = try started(try Self.spec(), FakeKernel())
        for i in 0..<5 {
            _ = core.healthChanged([flip(0, .down)], now: t0 + .seconds(2 * i))
            _ = core.healthChanged([flip(0, .up)], now: t0 + .seconds(2 * i + 1))
            #expect(!core.health.down.contains(DaemonCoreTests.ref(0)))
        }
    }

    @Test func aReturningBackendTakesItsSlotsInStepsOneTransactionEach() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(slowstart: "5s"), kernel)
        let full = held(core)["10.1.0.2:80"]!
        _ = core.healthChanged([flip(1, .down)], now: t0)
        let commits = kernel.commits
        _ = core.healthChanged([flip(1, .up)], now: t0 + .seconds(1))
        var shares = [held(core)["10.1.0.2:80", default: 0]]
        for s in 1...6 {
            _ = core.tick(now: t0 + .seconds(1) + .milliseconds(1000 * s + 10))
            shares.append(held(core)["10.1.0.2:80", default: 0])
        }
        // 5 steps of 1 s: 20%, 40%, … 100% of its full share.
        #expect(shares == [0.2, 0.4, 0.6, 0.8, 1, 1, 1].map { Int((Double(full) * $0).rounded()) }, "\(shares) of \(full)")
        #expect(kernel.commits == commits + 5, "the rise and four steps, one transaction each")
        #expect(core.health.ramp.isEmpty)
        // Falling mid-ramp ends it.
        _ = core.healthChanged([flip(1, .down)], now: t0 + .seconds(20))
        _ = core.healthChanged([flip(1, .up)], now: t0 + .seconds(21))
        _ = core.healthChanged([flip(1, .down)], now: t0 + .seconds(22))
        #expect(core.health.ramp.isEmpty && held(core)["10.1.0.2:80", default: 0] == 0)
    }

    @Test func anEnabledDrainedBackendRampsUpToo() throws {
        let core = try started(try Self.spec(slowstart: "10s"), FakeKernel())
        let full = held(core)["10.1.0.3:80"]!
        _ = core.change(pool: "web", backend: "10.1.0.3:80", to: .state(.drain, closeConnections: false), force: false, now: t0, wall: 1)
        _ = core.change(pool: "web", backend: "10.1.0.3:80", to: .state(.enabled, closeConnections: false), force: false, now: t0, wall: 2)
        #expect(held(core)["10.1.0.3:80", default: 0] == Int((Double(full) / 10).rounded()))
        _ = core.tick(now: t0 + .seconds(10))
        #expect(held(core)["10.1.0.3:80", default: 0] == full)
    }
}
