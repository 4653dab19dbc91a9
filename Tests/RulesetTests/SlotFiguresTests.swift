import Foundation
import Testing

@testable import PoolSpec
@testable import Ruleset

/// Prints the slot-balance and disruption figures quoted in docs/DESIGN.md and issue notes:
/// `swift test --filter SlotFiguresTests`. Asserts the same bounds as SlotTableTests.
@Suite struct SlotFiguresTests {
    @Test func balanceAndDisruptionFigures() {
        var lines = ["weights | scheduler | slots | worst |slots - share| (all up) | worst after 1 down"]
        for weights in weightCases {
            for scheduler in [Scheduler.roundRobin, .sourceHash] {
                let p = pool(weights, scheduler: scheduler)
                let size = RulesetBuilder.slotCount(for: p)
                let kind: SlotTable.Kind = scheduler == .sourceHash ? .maglev : .spread
                let all = SlotTable.build(members: members(weights), eligible: weights.map { _ in true }, size: size, kind: kind)
                var eligible = weights.map { _ in true }
                eligible[0] = false
                let down = SlotTable.build(members: members(weights), eligible: eligible, size: size, kind: kind)
                let up = worstDeviation(all, weights: weights)
                let degraded = worstDeviation(down, weights: weights, eligible: eligible)
                #expect(up <= 1)
                let label = weights.count > 10 ? "\(weights.count) x 1" : "\(weights)"
                lines.append(String(format: "%@ | %@ | %d | %.2f | %.2f", label, scheduler.rawValue, size, up, degraded))
            }
        }
        lines.append("source-hash N | slots | moved when 1 goes down (max over 3 choices) | bound 1/N+2% | moved when 1 is deleted from the spec")
        for n in [3, 10, 100] {
            let weights = Array(repeating: 1, count: n)
            let size = RulesetBuilder.slotCount(for: pool(weights, scheduler: .sourceHash))
            let all = SlotTable.maglev(members(weights), size: size)
            var worstDown = 0.0, worstDeleted = 0.0
            for gone in [0, n / 2, n - 1] {
                var eligible = weights.map { _ in true }
                eligible[gone] = false
                let after = SlotTable.build(members: members(weights), eligible: eligible, size: size, kind: .maglev)
                let moved = all.indices.filter { all[$0] != after[$0] }
                #expect(moved.allSatisfy { all[$0] == gone })
                worstDown = max(worstDown, Double(moved.count) / Double(size))
                var rest = members(weights)
                rest.remove(at: gone)
                let re = SlotTable.maglev(rest, size: size).map { $0 >= gone ? $0 + 1 : $0 }
                worstDeleted = max(worstDeleted, Double(all.indices.filter { all[$0] != re[$0] }.count) / Double(size))
            }
            #expect(worstDown <= 1 / Double(n) + 0.02)
            lines.append(String(format: "%d | %d | %.2f%% (only its own slots) | %.2f%% | %.2f%%", n, size, worstDown * 100, (1 / Double(n) + 0.02) * 100, worstDeleted * 100))
        }
        print(lines.joined(separator: "\n"))
    }
}
