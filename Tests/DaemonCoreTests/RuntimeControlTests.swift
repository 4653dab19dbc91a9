import Foundation
import Kernel
import PoolSpec
import Ruleset
import Testing

@testable import Daemon
@testable import Probes

/// `nftpool backend drain|disable|enable|weight` as the core decides it, against FakeKernel.
struct RuntimeControlTests {
    let t0 = ContinuousClock.now

    func started(_ spec: Spec, kernel: FakeKernel, overrides: RuntimeOverrides = .init()) throws -> DaemonCore {
        let core = DaemonCore(spec: spec, kernel: kernel, overrides: overrides)
        _ = try core.start()
        _ = core.healthChanged((0..<3).map { DaemonCoreTests.flip($0, .up) }, now: t0)
        return core
    }

    func held(_ core: DaemonCore, pool: String = "web") -> [String: Int] {
        SlotMembership.held(core.spec.pools.first { $0.name == pool }!, in: core.applied!)
    }

    @Test func drainTakesTheSlotsInOneTransactionAndEnableGivesThemBack() throws {
        let kernel = FakeKernel()
        let core = try started(try DaemonCoreTests.spec(), kernel: kernel)
        let before = held(core)
        let commits = kernel.commits
        let (reply, lines) = core.change(pool: "web", backend: "10.1.0.2:80", to: .state(.drain, closeConnections: false), force: false, now: t0, wall: 100)
        #expect(reply.exit == 0 && reply.backend == "10.1.0.2:80", "\(reply.message)")
        #expect(reply.message.contains("enabled → drain (runtime override)"), "\(reply.message)")
        #expect(kernel.commits == commits + 1, "one transaction")
        #expect(held(core)["10.1.0.2:80", default: 0] == 0)
        #expect(held(core).values.reduce(0, +) == before.values.reduce(0, +))
        #expect(core.spec.pools[0].backends[1].state == .drain && core.fileSpec.pools[0].backends[1].state == .enabled)
        #expect(core.overrides.entry(DaemonCoreTests.ref(1)) == .init(state: "drain", changed: 100))
        #expect(kernel.tables["t"] == core.desired && core.inSync)
        #expect(lines.first?.level == .notice)
        // The probes go on (drain), so health is not touched.
        #expect(core.health.down.isEmpty)

        let (back, _) = core.change(pool: "web", backend: "10.1.0.2", to: .state(.enabled, closeConnections: false), force: false, now: t0, wall: 101)
        #expect(back.exit == 0 && back.message.contains("drain → enabled (as the spec says)"), "\(back.message)")
        #expect(core.overrides.isEmpty, "enable of a backend the spec enables leaves no override")
        #expect(held(core) == before, "the same slots as before the drain")
    }

    @Test func theLastServingBackendIsKeptUnlessForced() throws {
        let kernel = FakeKernel()
        let core = try started(try DaemonCoreTests.spec(backends: 2), kernel: kernel)
        _ = core.change(pool: "web", backend: "10.1.0.1:80", to: .state(.drain, closeConnections: false), force: false, now: t0, wall: 1)
        let commits = kernel.commits
        let refused = core.change(pool: "web", backend: "10.1.0.2:80", to: .state(.disabled, closeConnections: false), force: false, now: t0, wall: 2).reply
        #expect(refused.exit == 1 && refused.message.contains("last serving backend of pool web") && refused.message.contains("--force"), "\(refused.message)")
        #expect(kernel.commits == commits && core.spec.pools[0].backends[1].state == .enabled, "nothing changed")
        let forced = core.change(pool: "web", backend: "10.1.0.2:80", to: .state(.disabled, closeConnections: false), force: true, now: t0, wall: 3).reply
        #expect(forced.exit == 0, "\(forced.message)")
        #expect(held(core).values.allSatisfy { $0 == 0 })
        // A backend already failing its checks is not "serving": taking it out needs no force.
        let core2 = try started(try DaemonCoreTests.spec(backends: 2), kernel: FakeKernel())
        _ = core2.healthChanged([DaemonCoreTests.flip(0, .down)], now: t0)
        #expect(core2.change(pool: "web", backend: "10.1.0.1:80", to: .state(.drain, closeConnections: false), force: false, now: t0, wall: 1).reply.exit == 0)
    }

    @Test func unknownNamesAndBadWeightsAreRefusedWithExit2() throws {
        let kernel = FakeKernel()
        let core = try started(try DaemonCoreTests.spec(extraPool: true), kernel: kernel)
        let commits = kernel.commits
        let noPool = core.change(pool: "nope", backend: "10.1.0.1:80", to: .weight(2), force: false, now: t0, wall: 1).reply
        #expect(noPool.exit == 2 && noPool.message == "no pool \"nope\" in table inet t (pools: web, api)", "\(noPool.message)")
        let noBackend = core.change(pool: "web", backend: "10.9.9.9:80", to: .weight(2), force: false, now: t0, wall: 1).reply
        #expect(noBackend.exit == 2 && noBackend.message.hasPrefix("pool web has no backend \"10.9.9.9:80\" (backends: 10.1.0.1:80"), "\(noBackend.message)")
        let control = core.change(pool: "web\n\u{1b}[31m", backend: "x", to: .weight(2), force: false, now: t0, wall: 1).reply
        #expect(!control.message.contains("\n") && !control.message.contains("\u{1b}"), "control characters are not echoed")
        for w in [0, -1, 1001] {
            let bad = core.change(pool: "web", backend: "10.1.0.1:80", to: .weight(w), force: false, now: t0, wall: 1).reply
            #expect(bad.exit == 2 && bad.message.contains("1 to 1000"), "\(bad.message)")
        }
        #expect(kernel.commits == commits && core.overrides.isEmpty)
    }

    @Test func anAddressSeveralBackendsShareMustBeNamedWithItsPort() throws {
        let spec = try SpecDecoder.decode("""
            table: t
            pools:
              - name: web
                frontends: [{address: 10.0.0.1, port: 80}]
                backends: [{address: 10.1.0.1, port: 80}, {address: 10.1.0.1, port: 81}]
            """)
        let core = DaemonCore(spec: spec, kernel: FakeKernel())
        _ = try core.start()
        let reply = core.change(pool: "web", backend: "10.1.0.1", to: .weight(3), force: false, now: t0, wall: 1).reply
        #expect(reply.exit == 2 && reply.message.contains("name one as ADDRESS:PORT"), "\(reply.message)")
        #expect(core.change(pool: "web", backend: "10.1.0.1:81", to: .weight(3), force: false, now: t0, wall: 1).reply.exit == 0)
    }

    @Test func aWeightMovesTheSharesAndCanResizeTheTable() throws {
        let kernel = FakeKernel()
        let core = try started(try DaemonCoreTests.spec(), kernel: kernel)
        let reply = core.change(pool: "web", backend: "10.1.0.1:80", to: .weight(2), force: false, now: t0, wall: 5).reply
        #expect(reply.exit == 0 && reply.message.contains("weight 1 → 2 (runtime override)"), "\(reply.message)")
        let slots = held(core)
        let total = slots.values.reduce(0, +)
        #expect(total == RulesetBuilder.slotCount(for: core.spec.pools[0]))
        // Half the table for weight 2 of 4, to within one slot.
        #expect(abs(slots["10.1.0.1:80"]! * 2 - total) <= 2, "\(slots)")
        #expect(kernel.tables["t"] == core.desired, "the kernel holds the resized table")
        let same = core.change(pool: "web", backend: "10.1.0.1:80", to: .weight(2), force: false, now: t0, wall: 6).reply
        #expect(same.exit == 0 && same.message.hasSuffix("nothing to do"), "\(same.message)")
    }

    @Test func disableWithCloseConnectionsEndsThemAfterTheCommitAndCountsWhatIsLeft() throws {
        let kernel = FakeKernel()
        let core = try started(try DaemonCoreTests.spec(), kernel: kernel)
        kernel.openConnections = ["10.1.0.1:80": 4, "10.1.0.2:80": 7]
        #expect(core.openConnections(pool: "web", backend: "10.1.0.2:80").connections == 7)
        _ = core.change(pool: "web", backend: "10.1.0.2:80", to: .state(.drain, closeConnections: false), force: false, now: t0, wall: 1)
        #expect(kernel.closed.isEmpty, "drain keeps established connections")
        let (reply, lines) = core.change(pool: "web", backend: "10.1.0.1:80", to: .state(.disabled, closeConnections: true), force: false, now: t0, wall: 2)
        #expect(reply.exit == 0)
        #expect(kernel.closed == [["10.1.0.1:80"]])
        #expect(lines.contains { $0.text == "pool web backend 10.1.0.1:80: closed 4 connections (onBackendDown: close-connections)" } || lines.contains { $0.text.contains("closed 4 connections") }, "\(lines)")
        #expect(core.openConnections(pool: "web", backend: "10.1.0.1:80").connections == 0)
        #expect(core.openConnections(pool: "web", backend: "10.1.0.2:80").connections == 7)
    }

    @Test func aDisabledCheckedBackendServesAgainOnlyAfterItsChecksRise() throws {
        let kernel = FakeKernel()
        let core = try started(try DaemonCoreTests.spec(), kernel: kernel)
        _ = core.change(pool: "web", backend: "10.1.0.3:80", to: .state(.disabled, closeConnections: false), force: false, now: t0, wall: 1)
        _ = core.change(pool: "web", backend: "10.1.0.3:80", to: .state(.enabled, closeConnections: false), force: false, now: t0, wall: 2)
        #expect(core.health.down == [DaemonCoreTests.ref(2)], "not probed while disabled: its health is stale")
        #expect(held(core)["10.1.0.3:80", default: 0] == 0)
        _ = core.healthChanged([DaemonCoreTests.flip(2, .up)], now: t0)
        #expect(held(core)["10.1.0.3:80", default: 0] > 0)
    }

    @Test func overridesOutliveAReloadButNotTheirBackend() throws {
        let kernel = FakeKernel()
        let core = try started(try DaemonCoreTests.spec(), kernel: kernel)
        _ = core.change(pool: "web", backend: "10.1.0.1:80", to: .state(.drain, closeConnections: false), force: false, now: t0, wall: 1)
        _ = core.change(pool: "web", backend: "10.1.0.3:80", to: .weight(5), force: false, now: t0, wall: 2)
        // The same file again: both stay.
        _ = core.reload(try DaemonCoreTests.spec(), now: t0)
        #expect(core.spec.pools[0].backends[0].state == .drain && core.spec.pools[0].backends[2].weight == 5)
        #expect(held(core)["10.1.0.1:80", default: 0] == 0)
        // A file without 10.1.0.3: its override goes, with a warning; the drain stays.
        let lines = core.reload(try DaemonCoreTests.spec(backends: 2), now: t0)
        #expect(lines.contains { $0.level == .warning && $0.text.contains("web/10.1.0.3:80 is no longer in the spec") }, "\(lines)")
        #expect(core.overrides.backends.keys.sorted() == ["web/10.1.0.1:80"])
        #expect(core.fileSpec == (try DaemonCoreTests.spec(backends: 2)))
    }

    @Test func aRestartStartsWithTheStoredOverrides() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-state-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = RuntimeStateFile(path: dir.appendingPathComponent("sub/t.json").path)
        #expect(file.load(table: "t").0.isEmpty && file.load(table: "t").1 == nil, "no file: no overrides, no error")
        let kernel = FakeKernel()
        let core = try started(try DaemonCoreTests.spec(), kernel: kernel)
        _ = core.change(pool: "web", backend: "10.1.0.2:80", to: .state(.drain, closeConnections: false), force: false, now: t0, wall: 7)
        try file.save(core.overrides, table: "t")
        var st = stat()
        #expect(stat(file.path, &st) == 0 && st.st_mode & 0o777 == 0o600)

        // The next daemon adopts the table with the backend still drained: nothing to send.
        let (stored, problem) = file.load(table: "t")
        #expect(problem == nil && stored == core.overrides)
        let next = DaemonCore(spec: try DaemonCoreTests.spec(), kernel: kernel, overrides: stored)
        let commits = kernel.commits
        _ = try next.start()
        #expect(next.spec.pools[0].backends[1].state == .drain)
        #expect(kernel.commits == commits, "adopting gives the same table: nothing sent")
    }

    @Test func aCorruptStateFileIsSetAsideAndReported() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-state-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.json").path
        for (content, why) in [("{\"version\": 1, \"table\": \"t\", \"overrides\": {\"backends\": 3}}", "overrides.backends"),
                               ("not json", "not valid runtime state"),
                               ("{\"version\": 1, \"table\": \"other\", \"overrides\": {\"backends\": {}}}", "it is for table other"),
                               // A weight of 0 would divide by zero building the slot map: not half used.
                               ("{\"version\": 1, \"table\": \"t\", \"overrides\": {\"backends\": {\"web/10.1.0.1:80\": {\"weight\": 0, \"changed\": 1}}}}", "has a state or weight nftpool does not take"),
                               ("{\"version\": 1, \"table\": \"t\", \"overrides\": {\"backends\": {\"web/10.1.0.1:80\": {\"state\": \"off\", \"changed\": 1}}}}", "has a state or weight nftpool does not take")] {
            try content.write(toFile: path, atomically: true, encoding: .utf8)
            let (overrides, problem) = RuntimeStateFile(path: path).load(table: "t")
            #expect(overrides.isEmpty)
            #expect(problem?.description.contains(why) == true && problem?.description.contains("kept as \(path).bad") == true, "\(String(describing: problem))")
            #expect(!FileManager.default.fileExists(atPath: path) && FileManager.default.fileExists(atPath: path + ".bad"))
        }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        #expect(RuntimeStateFile(path: path).load(table: "t").1?.description.contains("Is a directory") == true)
    }
}
