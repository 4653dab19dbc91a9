/// An order-independent digest of a set's elements: their count and the sum of a keyed 64-bit hash of
/// each. A no-change re-apply compares each set's digest with the digest of what is wanted and sorts and
/// walks the elements only of a set whose digests differ: 90,000 elements at 10,000 backends.
///
/// Hasher is seeded per process: a hand edit cannot be chosen to collide, and a chance collision of two
/// different element lists of the same length is about 2^-64.
struct ElementDigest: Hashable {
    private(set) var count = 0
    private var sum: UInt64 = 0

    init() {}

    init<S: Sequence>(_ elements: S) where S.Element == KernelSnapshot.ElementBytes {
        for element in elements { add(element) }
    }

    mutating func add(_ element: KernelSnapshot.ElementBytes) {
        var hasher = Hasher()
        element.hash(into: &hasher)
        sum &+= UInt64(bitPattern: Int64(hasher.finalize()))
        count += 1
    }
}
