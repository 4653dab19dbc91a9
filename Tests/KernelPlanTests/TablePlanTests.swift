import Testing

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset

/// The element diff on its own, no kernel needed: what a map holds against what is wanted.
struct TablePlanTests {
    func slot(_ i: Int, _ last: UInt8) -> Element {
        Element(key: [.index(i)], data: .values([.address(IPAddress("10.0.0.\(last)")!), .port(80)]))
    }

    @Test func sameElementsInAnyOrderChangeNothing() {
        let want = (0..<300).map { slot($0, UInt8($0 % 3 + 1)) }
        let have = KernelSnapshot.SetState(
            encoding: SetEncoding(NamedSet(name: "m", key: .slotIndex(modulus: 300))),
            elements: want.shuffled().map(KernelSnapshot.ElementBytes.init)).elements
        let (gone, new) = TablePlan.elementChanges(have: have, want: want)
        #expect(gone.isEmpty && new.isEmpty)
    }

    @Test func changedDataIsDeletedAndAddedMissingAddedExtraDeleted() {
        let want = [slot(0, 1), slot(1, 2), slot(2, 3)]
        let held = [slot(0, 1), slot(1, 9), slot(3, 1)]
        let have = KernelSnapshot.SetState(
            encoding: SetEncoding(NamedSet(name: "m", key: .slotIndex(modulus: 4))),
            elements: held.map(KernelSnapshot.ElementBytes.init)).elements
        let (gone, new) = TablePlan.elementChanges(have: have, want: want)
        #expect(Set(gone) == Set([slot(1, 9), slot(3, 1)].map(KernelSnapshot.ElementBytes.init)))
        #expect(new == [slot(1, 2), slot(2, 3)])
    }

    @Test func packedBytesOrderIsByteOrder() {
        let values: [[UInt8]] = [[], [0], [0, 0], [1], [1, 0, 0, 0, 0, 0, 0, 0, 0, 2], [1, 0, 0, 0, 0, 0, 0, 0, 1], [255], Array(repeating: 7, count: 24)]
        for a in values {
            for b in values {
                #expect((PackedBytes(a) < PackedBytes(b)) == a.lexicographicallyPrecedes(b), "\(a) < \(b)")
                #expect((PackedBytes(a) == PackedBytes(b)) == (a == b))
            }
        }
    }
}
