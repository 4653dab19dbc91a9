import Foundation
import Kernel
import PoolSpec
import Ruleset
import Testing

@testable import Daemon
@testable import Probes

/// The daemon's decisions against FakeKernel: no root, no clock but the one the test moves.
struct DaemonCoreTests {
    static func spec(backends: Int = 3, onDown: String = "keep-connections", whenAllDown: String = "reject", extraPool: Bool = false) throws -> Spec {
        var text = """
            table: t
            pools:
              - name: web
                frontends: [{address: 10.0.0.1, port: 80}]
                whenAllDown: \(whenAllDown)
                onBackendDown: \(onDown)
                healthCheck: {type: tcp}
                backends:

            """
        for i in 0..<backends { text += "      - address: 10.1.0.\(i + 1)\n" }
        if extraPool {
            text += """
                  - name: api
                    frontends: [{address: 10.0.0.2, port: 443}]
                    healthCheck: {type: tcp}
                    backends: [{address: 10.2.0.1}, {address: 10.2.0.2}]

                """
        }
        return try SpecDecoder.decode(text)
    }

    static func ref(_ i: Int, pool: String = "web", port: Int = 80) -> BackendRef {
        BackendRef(pool: pool, endpoint: "10.1.0.\(i + 1):\(port)")
    }

    static func flip(_ i: Int, _ to: HealthTracker.State) -> (ref: BackendRef, transition: HealthTracker.Transition) {
        (ref(i), HealthTracker.Transition(from: to == .up ? .down : .up, to: to, reason: "test", after: .seconds(1)))
    }

    let t0 = ContinuousClock.now

    func started(_ spec: Spec, kernel: FakeKernel, up: [Int] = [0, 1, 2]) throws -> DaemonCore {
        let core = DaemonCore(spec: spec, kernel: kernel)
        _ = try core.start()
        _ = core.healthChanged(up.map { Self.flip($0, .up) }, now: t0)
        return core
    }

    @Test func aFirstStartCreatesTheTableWithCheckedBackendsDown() throws {
        let kernel = FakeKernel()
        let core = DaemonCore(spec: try Self.spec(), kernel: kernel)
        let lines = try core.start()
        #expect(lines.first?.text.hasPrefix("started: 1 pool, 0 of 3 backends") == true, "\(lines)")
        #expect(core.health.down == Set((0..<3).map { Self.ref($0) }))
        #expect(kernel.tables["t"] == core.desired && core.inSync)
        let verdict = kernel.tables["t"]!.set(named: "frontends-v4")!.elements.first!.data
        #expect(verdict == .verdict(.goto(RulesetBuilder.rejectChain)))
    }

    // The HA beat's table digest is rendered again only when this revision moves: it must move with every
    // change of the wanted table (a health flip, a reload) and stay put otherwise.
    @Test func theDesiredRevisionMovesWithTheWantedTable() throws {
        let core = try started(try Self.spec(), kernel: FakeKernel())
        let r0 = core.desiredRevision, t = core.desired
        _ = core.tick(now: t0 + .seconds(1))
        #expect(core.desiredRevision == r0 && core.desired == t)
        _ = core.healthChanged([Self.flip(0, .down)], now: t0)
        #expect(core.desiredRevision != r0 && core.desired != t)
        let r1 = core.desiredRevision
        _ = core.reload(try Self.spec(extraPool: true), now: t0)
        #expect(core.desiredRevision != r1)
    }

    // Fault 5: slots of an all-down pool hold every backend; adoption must not wake them.
    @Test func adoptingAnAllDownPoolKeepsItDown() throws {
        let spec = try Self.spec()
        let kernel = FakeKernel()
        let allDown = Health(down: Set((0..<3).map { Self.ref($0) }))
        kernel.install(RulesetBuilder.table(for: spec, health: allDown))
        let before = kernel.currentGeneration
        let core = DaemonCore(spec: spec, kernel: kernel)
        let lines = try core.start()
        #expect(core.health == allDown, "\(lines)")
        #expect(kernel.currentGeneration == before, "nothing sent: the kernel already holds it")
        #expect(lines.first?.text.contains("adopted table inet t: 1 pool, 0 of 3 backends") == true, "\(lines)")
    }

    @Test func adoptionTakesSlotMembershipAndANewPoolStartsDown() throws {
        let old = try Self.spec()
        let kernel = FakeKernel()
        kernel.install(RulesetBuilder.table(for: old, health: Health(down: [Self.ref(1)])))
        let spec = try Self.spec(extraPool: true)
        let core = DaemonCore(spec: spec, kernel: kernel)
        _ = try core.start()
        #expect(core.health.down == [Self.ref(1), BackendRef(pool: "api", endpoint: "10.2.0.1:443"), BackendRef(pool: "api", endpoint: "10.2.0.2:443")])
        #expect(kernel.tables["t"] == RulesetBuilder.table(for: spec, health: core.health))
    }

    // A restart after a spec edit that resizes the slot map (a backend added) reads who was serving
    // from the old map: the pool stays up instead of starting all down.
    @Test func adoptionReadsASlotMapOfAnotherSize() throws {
        let old = try Self.spec(backends: 3)
        let kernel = FakeKernel()
        kernel.install(RulesetBuilder.table(for: old, health: Health(down: [Self.ref(2)])))
        let spec = try Self.spec(backends: 4)
        #expect(RulesetBuilder.slotCount(for: spec.pools[0]) != RulesetBuilder.slotCount(for: old.pools[0]))
        let core = DaemonCore(spec: spec, kernel: kernel)
        _ = try core.start()
        #expect(core.health.down == [Self.ref(2), Self.ref(3)], "b0, b1 served and still do; b3 is new")
    }

    @Test func aFailOpenPoolKeepsTheConnectionsOfBackendsItStillRoutesTo() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(backends: 2, onDown: "close-connections", whenAllDown: "fail-open"), kernel: kernel, up: [0, 1])
        _ = core.healthChanged([Self.flip(0, .down)], now: t0)
        #expect(kernel.closed == [["10.1.0.1:80"]])
        _ = core.healthChanged([Self.flip(1, .down)], now: t0)
        #expect(kernel.closed == [["10.1.0.1:80"]], "the last one down still takes every connection (fail-open): \(kernel.closed)")
    }

    @Test func aWriterThatFightsBackIsMetWithBackoff() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(), kernel: kernel)
        var lines: [DaemonCore.Line] = []
        for i in 0..<7 {
            kernel.flushRuleset()
            lines += core.kernelChanged(by: "fighter", now: t0 + .milliseconds(10 * i))
        }
        #expect(lines.last?.text.contains("another writer keeps changing the table") == true, "\(lines)")
        #expect(core.failure?.attempts == 1, "events while a retry is due do not push it further away")
        #expect(core.repairs == DaemonCore.repairsPerSecond && kernel.tables["t"] == nil && !core.inSync)
        _ = core.tick(now: t0 + .seconds(2))
        #expect(kernel.tables["t"] == core.desired && core.inSync)
    }

    @Test func aFastPathPlannedAgainstAWrongPreviousShows() throws {
        let kernel = FakeKernel()
        let spec = try Self.spec()
        _ = try kernel.apply(RulesetBuilder.table(for: spec, health: Health(down: [Self.ref(0)])), force: false)
        let wrong = RulesetBuilder.table(for: spec)  // what a confused caller believes the kernel holds
        let want = RulesetBuilder.table(for: spec, health: Health(down: [Self.ref(1)]))
        _ = try? kernel.apply(want, after: wrong)
        #expect(kernel.tables["t"] != want, "the fake applies only the previous ─► table change, as the kernel would")
    }

    @Test func aForeignTableIsNotTouched() throws {
        let kernel = FakeKernel()
        var foreign = RulesetBuilder.table(for: try Self.spec())
        foreign.comment = "someone else's"
        kernel.install(foreign)
        #expect(throws: KernelError.notOurs(table: "t")) { try DaemonCore(spec: try Self.spec(), kernel: kernel).start() }
        #expect(kernel.tables["t"] == foreign)
    }

    // Fault 4: a refused update is kept apart, retried with backoff, and connections close only after.
    @Test func aRefusedFlipIsRetriedUntilTheKernelTakesItAndOnlyThenClosesConnections() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(onDown: "close-connections"), kernel: kernel)
        let before = kernel.tables["t"]
        kernel.refuseNext(2)
        let lines = core.healthChanged([Self.flip(0, .down)], now: t0)
        #expect(lines.first?.text.contains("the kernel refused the change") == true, "\(lines)")
        #expect(core.health.down == [Self.ref(0)] && !core.inSync && kernel.tables["t"] == before)
        #expect(kernel.closed.isEmpty, "the kernel still routes to it: its connections stay")
        #expect(core.tick(now: t0 + .milliseconds(50)).isEmpty, "not before the backoff")
        let second = core.tick(now: t0 + .milliseconds(100))
        #expect(second.first?.text.contains("retry 1") == true && core.failure?.attempts == 2, "\(second)")
        #expect(core.failure!.next == t0 + .milliseconds(300), "backoff doubles")
        let third = core.tick(now: t0 + .milliseconds(300))
        #expect(core.inSync && kernel.tables["t"] == core.desired, "\(third)")
        #expect(third.first?.text.contains("after 2 refused attempts") == true, "\(third)")
        #expect(kernel.closed == [["10.1.0.1:80"]])
    }

    @Test func flipsWhileRefusedAllLandWithTheRetry() throws {
        let kernel = FakeKernel()
        let spec = try Self.spec()
        let core = try started(spec, kernel: kernel)
        kernel.refuseNext(2)
        _ = core.healthChanged([Self.flip(0, .down)], now: t0)
        _ = core.healthChanged([Self.flip(1, .down)], now: t0 + .milliseconds(10))
        _ = core.tick(now: t0 + .seconds(1))
        #expect(core.inSync)
        #expect(kernel.tables["t"] == RulesetBuilder.table(for: spec, health: Health(down: [Self.ref(0), Self.ref(1)])))
    }

    @Test func aBackendThatComesBackBeforeTheRetryIsNotClosed() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(onDown: "close-connections"), kernel: kernel)
        kernel.refuseNext(1)
        _ = core.healthChanged([Self.flip(0, .down)], now: t0)
        _ = core.healthChanged([Self.flip(0, .up)], now: t0 + .milliseconds(150))
        #expect(core.inSync && kernel.closed.isEmpty)
    }

    @Test func backoffIsCappedAtFiveSeconds() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(), kernel: kernel)
        kernel.refuseNext(20)
        _ = core.healthChanged([Self.flip(0, .down)], now: t0)
        var now = t0
        for _ in 0..<10 { now = core.failure!.next; _ = core.tick(now: now) }
        #expect(core.failure!.next - now == .seconds(5))
    }

    // Fault 1: foreign changes are found and undone.
    @Test(arguments: ["flush", "delete", "edit", "verdict"])
    func aForeignChangeIsRestored(change: String) throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(), kernel: kernel)
        switch change {
        case "flush": kernel.flushRuleset()
        case "delete": kernel.deleteTableForeign("t")
        case "edit":
            kernel.editElements(table: "t", set: "pool-web-slots") { $0[0].data = .values([.address(IPAddress("10.9.9.9")!), .port(80)]) }
        default:
            kernel.editElements(table: "t", set: "frontends-v4") { $0[0].data = .verdict(.drop) }
        }
        #expect(kernel.tables["t"] != core.desired)
        let lines = core.kernelChanged(by: "nft (pid 42)", now: t0)
        #expect(lines.first?.level == .warning && lines.first?.text.contains("was changed by nft (pid 42)") == true, "\(lines)")
        #expect(kernel.tables["t"] == core.desired && core.inSync && core.repairs == 1)
    }

    // Someone deletes our table and makes their own of the same name, unmarked, in one transaction.
    @Test func aTableReplacedUnderUsIsTakenBack() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(), kernel: kernel)
        var impostor = core.desired
        impostor.comment = ""
        impostor.sets = []
        kernel.deleteTableForeign("t")
        kernel.install(impostor)
        let lines = core.kernelChanged(by: "nft (pid 7)", now: t0)
        #expect(kernel.tables["t"] == core.desired && core.inSync, "\(lines)")
    }

    @Test func aCommitElsewhereChangesNothing() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(), kernel: kernel)
        let commits = kernel.commits
        kernel.foreignCommitElsewhere()
        #expect(core.kernelChanged(by: "kube-proxy", now: t0).isEmpty)
        #expect(kernel.commits == commits && core.repairs == 0)
        // The next flip plans against a read-back (the generation moved) and still lands whole.
        _ = core.healthChanged([Self.flip(2, .down)], now: t0)
        #expect(kernel.tables["t"] == core.desired)
    }

    @Test func aRestoreTheKernelRefusesIsRetried() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(), kernel: kernel)
        kernel.flushRuleset()
        kernel.refuseNext(1)
        _ = core.kernelChanged(by: "nft", now: t0)
        #expect(kernel.tables["t"] == nil && !core.inSync)
        _ = core.tick(now: t0 + .milliseconds(100))
        #expect(kernel.tables["t"] == core.desired && core.inSync)
    }

    @Test func reloadKeepsHealthOfKeptBackendsAndNewOnesStartDown() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(backends: 3), kernel: kernel)
        _ = core.healthChanged([Self.flip(1, .down)], now: t0)
        let lines = core.reload(try Self.spec(backends: 4), now: t0)
        #expect(lines.first?.text.hasPrefix("reloaded") == true, "\(lines)")
        #expect(core.health.down == [Self.ref(1), Self.ref(3)])
        #expect(kernel.tables["t"] == core.desired && core.inSync)
    }

    @Test func aReloadTheKernelRefusesKeepsTheRunningSpec() throws {
        let kernel = FakeKernel()
        let spec = try Self.spec(backends: 3)
        let core = try started(spec, kernel: kernel)
        kernel.refuseNext(1)
        let lines = core.reload(try Self.spec(backends: 4), now: t0)
        #expect(lines.first?.level == .error, "\(lines)")
        #expect(core.spec == spec && core.inSync)
        var renamed = try Self.spec()
        renamed.table = "other"
        #expect(core.reload(renamed, now: t0).first?.text.contains("table name changed") == true)
    }

    @Test func transitionsOfBackendsNoLongerInTheSpecAreIgnored() throws {
        let kernel = FakeKernel()
        let core = try started(try Self.spec(), kernel: kernel)
        let commits = kernel.commits
        #expect(core.healthChanged([(BackendRef(pool: "gone", endpoint: "1.2.3.4:80"), Self.flip(0, .down).transition)], now: t0).isEmpty)
        #expect(kernel.commits == commits)
        // A reload dropped the pool's health check; a transition queued before it changes nothing.
        var unchecked = try Self.spec()
        unchecked.pools[0].healthCheck = nil
        _ = core.reload(unchecked, now: t0)
        #expect(core.healthChanged([Self.flip(0, .down)], now: t0).isEmpty && core.health.down.isEmpty)
    }
}

/// Whose commits are whose, without a kernel.
struct GenerationLedgerTests {
    @Test func ourOwnCommitsAndCommitsElsewhereAskForNoCheck() {
        var ledger = GenerationLedger(generation: 10)
        #expect(ledger.event(.changed(generation: 11, pid: 5, process: "nftpool", ours: true), lastOwn: 11, current: { 11 }) == nil)
        #expect(ledger.event(.elsewhere(generation: 12), lastOwn: 11, current: { 12 }) == nil)
        // Another pid namespace: the thread is not recognised, but the generation is our last commit's.
        #expect(ledger.event(.changed(generation: 13, pid: 1, process: "nftpool", ours: false), lastOwn: 13, current: { 13 }) == nil)
        #expect(ledger.check(generation: 13, lastOwn: 13) == nil)
    }

    @Test func aForeignCommitToTheTableAsksForACheck() {
        var ledger = GenerationLedger(generation: 10)
        #expect(ledger.event(.changed(generation: 11, pid: 42, process: "nft", ours: false), lastOwn: 10, current: { 11 }) == "nft (pid 42)")
        #expect(ledger.event(.lost, lastOwn: 11, current: { 15 })?.contains("events were lost") == true)
        #expect(ledger.verified == 15)
    }

    @Test func aCommitNoEventExplainsIsCheckedOnTheNextPeriod() {
        var ledger = GenerationLedger(generation: 10)
        #expect(ledger.check(generation: 11, lastOwn: 9) == nil, "its event may still be queued")
        #expect(ledger.check(generation: 11, lastOwn: 9)?.contains("generation 11") == true)
        #expect(ledger.check(generation: 11, lastOwn: 9) == nil, "accounted for now")
        // Its event arrived in between: nothing to check.
        #expect(ledger.check(generation: 12, lastOwn: 9) == nil)
        _ = ledger.event(.elsewhere(generation: 12), lastOwn: 9, current: { 12 })
        #expect(ledger.check(generation: 12, lastOwn: 9) == nil)
    }

    @Test func withoutEventsEveryUnexplainedCommitIsCheckedAtOnceButOurOwnAreNot() {
        var ledger = GenerationLedger(generation: 10)
        ledger.eventsAlive = false
        #expect(ledger.check(generation: 11, lastOwn: 11) == nil)
        #expect(ledger.check(generation: 12, lastOwn: 11) != nil)
    }
}
