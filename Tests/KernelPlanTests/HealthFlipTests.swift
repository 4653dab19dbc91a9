import Testing
import TestSupport

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset

/// What the daemon sends on a health flip, computed without a kernel: the plan against the table it last
/// wrote, turned into the very batch it would send.
struct HealthFlipTests {
    @Test func aFlipInOneOf1000PoolsTouchesOnlyThatBackendsSlots() throws {
        let spec = PlanFixtures.spec(pools: 1000, backends: 10)
        let before = RulesetBuilder.table(for: spec)
        let pool = spec.pools[617], victim = pool.backends[3]
        let health = Health(down: [BackendRef(pool, victim)])
        let after = RulesetBuilder.updating(before, spec: spec, pool: pool.name, health: health)
        #expect(after == RulesetBuilder.table(for: spec, health: health), "the one-pool update is the whole rebuild's table")

        let plan = try #require(NetfilterKernel.elementPlan(from: before, to: after))
        let held = before.set(named: RulesetBuilder.slotMapName(pool))!.elements.filter {
            $0.data == .values([.address(victim.address), .port(victim.port)])
        }
        #expect(plan.deleteElements.count == 1 && plan.addElements.count == 1)
        #expect(plan.deleteElements[0].set == "pool-p617-slots" && plan.addElements[0].set.name == "pool-p617-slots")
        #expect(plan.deleteElements[0].elements.count == held.count, "only its \(held.count) slots")
        #expect(Set(plan.addElements[0].elements.map(\.key)) == Set(held.map(\.key)))
        #expect(!plan.addElements[0].elements.contains { $0.data == held[0].data })

        var batch = NetlinkBatch(firstSequence: 1)
        plan.write(into: &batch, table: after)
        #expect(batch.messageCount == 2, "one delete and one add message for \(held.count) slots")
        print("figure: health flip in 1,000 pools x 10 backends: \(held.count) slots, \(batch.messageCount) messages, \(batch.buffer.count) bytes")
    }

    @Test func theLastBackendDownRewritesTheFrontendVerdictToo() throws {
        let spec = PlanFixtures.spec(pools: 3, backends: 1)
        let before = RulesetBuilder.table(for: spec)
        let pool = spec.pools[1]
        let health = Health(down: [BackendRef(pool, pool.backends[0])])
        let after = RulesetBuilder.updating(before, spec: spec, pool: pool.name, health: health)
        #expect(after == RulesetBuilder.table(for: spec, health: health))
        let plan = try #require(NetfilterKernel.elementPlan(from: before, to: after))
        #expect(plan.addElements.map(\.set.name) == ["frontends-v4"], "whenAllDown: reject, the verdict changes")
        #expect(plan.addElements[0].elements.map(\.data) == [.verdict(.goto(RulesetBuilder.rejectChain))])
    }

    /// A flip that leaves the pool serving does not write the frontends map at all: it keeps the storage
    /// of the table last applied, so neither the update nor the plan walks its 1,000 elements.
    @Test func aFlipThatKeepsThePoolServingLeavesTheFrontendsMapShared() throws {
        let spec = PlanFixtures.spec(pools: 1000, backends: 10)
        let before = RulesetBuilder.table(for: spec)
        let pool = spec.pools[421]
        let health = Health(down: [BackendRef(pool, pool.backends[0])])
        var after = before
        RulesetBuilder.update(&after, spec: spec, pool: pool, health: health)
        #expect(after == RulesetBuilder.table(for: spec, health: health))
        func storage(_ t: Table) -> UnsafeRawPointer? {
            t.set(named: "frontends-v4")!.elements.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
        }
        #expect(storage(after) == storage(before), "the frontends map was copied")
        #expect(storage(after) != nil)
    }

    /// Frontends are found by binary search in the sorted map, and by a scan in one that is not sorted.
    @Test func aFrontendIsFoundSortedOrNot() {
        let keys = (0..<50).map { [Value.address(IPAddress("10.0.\($0 / 10).\($0 % 10)")!), .proto(.tcp), .port(443)] }
        let sorted = keys.sorted { $0.lexicographicallyPrecedes($1) }.map { Element(key: $0) }
        for (i, e) in sorted.enumerated() { #expect(RulesetBuilder.index(of: e.key, in: sorted) == i) }
        let shuffled = Array(sorted.reversed())
        for (i, e) in shuffled.enumerated() { #expect(RulesetBuilder.index(of: e.key, in: shuffled) == i) }
        #expect(RulesetBuilder.index(of: [.address(IPAddress("10.9.9.9")!), .proto(.tcp), .port(443)], in: sorted) == nil)
    }
}
