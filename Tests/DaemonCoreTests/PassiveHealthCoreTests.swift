import Foundation
import Kernel
import PoolSpec
import Ruleset
import Testing

@testable import Daemon
@testable import Probes

/// Passive health as the core decides it, against FakeKernel.
struct PassiveHealthCoreTests {
    let t0 = ContinuousClock.now

    static func spec(errorLimit: Int, onDown: String = "keep-connections") throws -> Spec {
        try SpecDecoder.decode("""
            table: t
            pools:
              - name: web
                frontends: [{address: 10.0.0.1, port: 80}]
                onBackendDown: \(onDown)
                healthCheck: {type: tcp, passive: {errorLimit: \(errorLimit), within: 1s}}
                backends: [{address: 10.1.0.1}, {address: 10.1.0.2}, {address: 10.1.0.3}]
              - name: plain
                frontends: [{address: 10.0.0.2, port: 80}]
                healthCheck: {type: tcp}
                backends: [{address: 10.1.0.1}, {address: 10.1.0.9}]
            """)
    }

    func reset(_ last: Int) -> PassiveSignal { PassiveSignal(address: IPAddress("10.1.0.\(last)")!, port: 80, kind: .reset) }

    func started(_ spec: Spec, _ kernel: FakeKernel) throws -> DaemonCore {
        let core = DaemonCore(spec: spec, kernel: kernel)
        _ = try core.start()
        let ups = spec.pools.flatMap { p in p.backends.map { (BackendRef(p, $0), HealthTracker.Transition(from: .down, to: .up, reason: "t", after: .seconds(1))) } }
        _ = core.healthChanged(ups, now: t0)
        return core
    }

    @Test func errorLimitFailuresWithinTheWindowTakeTheBackendDownInOneTransaction() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(errorLimit: 2), kernel)
        let commits = kernel.commits
        #expect(core.passiveSignals([reset(1)], now: t0).down.isEmpty, "one of two")
        // The window is 1 s: a failure 1.5 s later starts over.
        #expect(core.passiveSignals([reset(1)], now: t0 + .milliseconds(1500)).down.isEmpty)
        #expect(kernel.commits == commits)
        let (lines, down) = core.passiveSignals([reset(1)], now: t0 + .milliseconds(1800)) { _ in .seconds(9) }
        #expect(down.map(\.0) == [BackendRef(pool: "web", endpoint: "10.1.0.1:80")], "only the passive pool's backend, not plain's")
        #expect(kernel.commits == commits + 1, "one transaction")
        #expect(core.health.down == [BackendRef(pool: "web", endpoint: "10.1.0.1:80")])
        #expect(SlotMembership.held(core.spec.pools[0], in: core.applied!)["10.1.0.1:80", default: 0] == 0)
        #expect(SlotMembership.held(core.spec.pools[1], in: core.applied!)["10.1.0.1:80", default: 0] > 0, "the other pool keeps it")
        #expect(lines.first?.text.hasPrefix("pool web backend 10.1.0.1:80: up → down (passive: connection reset by the backend, 2 failures within 1s) after 9.0s up; one transaction of") == true, "\(lines)")
        #expect(lines.first?.metadata["to"] == "down")
        // Down already: more resets change nothing.
        #expect(core.passiveSignals([reset(1), reset(1)], now: t0 + .seconds(2)).down.isEmpty && kernel.commits == commits + 1)
    }

    @Test func aBurstTakesEveryFailingBackendInOneTransactionAndClosesAfterIt() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(errorLimit: 1, onDown: "close-connections"), kernel)
        let commits = kernel.commits
        let unknown = PassiveSignal(address: IPAddress("10.7.7.7")!, port: 80, kind: .reset)
        let otherPort = PassiveSignal(address: IPAddress("10.1.0.2")!, port: 81, kind: .reset)
        let (lines, down) = core.passiveSignals([reset(2), unknown, otherPort, reset(3), reset(9)], now: t0)
        #expect(Set(down.map(\.0.endpoint)) == ["10.1.0.2:80", "10.1.0.3:80"], "\(down)")
        #expect(kernel.commits == commits + 1)
        #expect(kernel.closed == [["10.1.0.2:80", "10.1.0.3:80"]], "close-connections after the commit")
        #expect(lines.contains { $0.text.contains("(with 1 other change)") })
    }

    @Test func disabledBackendsAndPoolsWithoutPassiveAreNotCounted() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(errorLimit: 1), kernel)
        _ = core.change(pool: "web", backend: "10.1.0.3:80", to: .state(.disabled, closeConnections: false), force: false, now: t0, wall: 1)
        let commits = kernel.commits
        #expect(core.passiveSignals([reset(3), reset(9)], now: t0).down.isEmpty)
        #expect(kernel.commits == commits)
    }
}
