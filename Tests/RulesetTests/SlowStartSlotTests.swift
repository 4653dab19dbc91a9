import Testing

@testable import Ruleset

/// Slowstart's slot shares: a ramping backend's kept slots only grow with its share, and the backends at
/// full share never lose one of theirs.
struct SlowStartSlotTests {
    let members = (1...4).map { SlotTable.Member(key: "10.0.0.\($0):80", weight: 1) }

    @Test(arguments: [SlotTable.Kind.spread, .maglev])
    func eachStepOnlyAddsSlots(kind: SlotTable.Kind) {
        let size = kind == .maglev ? 131 : 128
        let all = [Bool](repeating: true, count: 4)
        let full = SlotTable.build(members: members, eligible: all, size: size, kind: kind)
        var previous = Set<Int>()
        for step in 1...10 {
            let share = Double(step) / 10
            let t = SlotTable.build(members: members, eligible: all, size: size, kind: kind, share: [1, 1, share, 1])
            let mine = Set(t.indices.filter { t[$0] == 2 })
            let fullMine = full.filter { $0 == 2 }.count
            #expect(abs(Double(mine.count) - share * Double(fullMine)) <= 1, "step \(step): \(mine.count) of \(fullMine)")
            #expect(previous.isSubset(of: mine), "step \(step) takes no slot back")
            // Every slot that is not the ramping backend's in the full table keeps its owner.
            for i in t.indices where full[i] != 2 { #expect(t[i] == full[i]) }
            previous = mine
        }
        #expect(SlotTable.build(members: members, eligible: all, size: size, kind: kind, share: [1, 1, 1, 1]) == full)
    }

    @Test func nobodyRampsWhenNobodyElseServes() {
        let t = SlotTable.build(members: members, eligible: [false, false, true, false], size: 128, kind: .spread, share: [1, 1, 0.1, 1])
        #expect(t.allSatisfy { $0 == 2 }, "the only serving backend takes everything")
    }
}
