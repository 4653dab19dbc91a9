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

/// The per-set digest that lets a no-change re-apply skip sorting and walking a set's elements.
struct ElementDigestTests {
    func slot(_ i: Int, _ last: UInt8) -> Element {
        Element(key: [.index(i)], data: .values([.address(IPAddress("10.0.0.\(last)")!), .port(80)]))
    }

    @Test func orderDoesNotMatterButEveryChangeDoes() {
        let want = (0..<500).map { slot($0, UInt8($0 % 7 + 1)) }.map(KernelSnapshot.ElementBytes.init)
        let digest = ElementDigest(want)
        #expect(ElementDigest(want.shuffled()) == digest)
        var moved = want
        moved[123].data = KernelSnapshot.ElementBytes(slot(123, 99)).data
        #expect(ElementDigest(moved) != digest)
        #expect(ElementDigest(want.dropLast()) != digest)
        #expect(ElementDigest(want + [KernelSnapshot.ElementBytes(slot(500, 1))]) != digest)
        var swapped = want  // two slots trade backends: same multiset of data, other pairs
        (swapped[1].data, swapped[2].data) = (want[2].data, want[1].data)
        #expect(ElementDigest(swapped) != digest)
    }

    /// A read-back keeps the kernel's order; the plan finds a hand edit through the digest.
    @Test func aPlanSeesAHandEditInAnUnsortedReadBack() {
        let set = NamedSet(name: "m", key: .slotIndex(modulus: 300), data: .endpoint(.ipv4, .tcp), size: 300,
            elements: (0..<300).map { slot($0, UInt8($0 % 3 + 1)) })
        let table = Table(name: "t", comment: "c", sets: [set], chains: [])
        var bytes = set.elements.map(KernelSnapshot.ElementBytes.init).shuffled()
        let same = KernelSnapshot(comment: "c", sets: ["m": .init(encoding: SetEncoding(set), unsorted: bytes)], chains: [:])
        #expect(TablePlan(from: same, to: table).isEmpty)
        bytes.removeLast()
        let edited = KernelSnapshot(comment: "c", sets: ["m": .init(encoding: SetEncoding(set), unsorted: bytes)], chains: [:])
        let plan = TablePlan(from: edited, to: table)
        #expect(plan.deleteElements.isEmpty && plan.addElements.map(\.elements.count) == [1])
    }

    /// In-place packing writes exactly the bytes SetEncoding.bytes gives, for every value shape.
    @Test func packedIsBytes() {
        let values: [[Value]] = [
            [.index(0)], [.index(65535)], [.address(IPAddress("10.1.2.3")!), .port(443)],
            [.address(IPAddress("fd00::1")!), .proto(.udp), .port(53)], [.address(IPAddress("192.0.2.9")!), .proto(.tcp), .port(1)],
        ]
        for v in values { #expect(SetEncoding.packed(v) == PackedBytes(SetEncoding.bytes(v)), "\(v)") }
    }
}
