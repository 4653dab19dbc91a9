/// A short byte string held inline (no heap allocation): a set element's key or data. A 10,000-backend
/// table has 90,000 elements, and a no-change apply builds, hashes and compares every one of them twice;
/// as `[UInt8]` arrays that was most of its time.
struct PackedBytes: Hashable, Comparable {
    /// Our longest value is 24 bytes (ipv6_addr . inet_proto . inet_service).
    static let capacity = 32

    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private(set) var count: Int = 0

    init(_ bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { PackedBytes($0) }
    }

    init(_ raw: UnsafeRawBufferPointer) {
        precondition(raw.count <= Self.capacity, "a set value of \(raw.count) bytes is longer than nftpool ever sends")
        count = raw.count
        withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: raw) }
    }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: words) { try body(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
    }

    var array: [UInt8] { withUnsafeBytes { Array($0) } }

    static func == (a: PackedBytes, b: PackedBytes) -> Bool {
        a.count == b.count && a.words == b.words
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }

    /// Byte order (as the bytes read), the shorter first when one is a prefix of the other.
    /// Word by word, no arrays: sorting 90,000 keys calls this about 1.5 million times.
    static func < (a: PackedBytes, b: PackedBytes) -> Bool {
        if a.words.0 != b.words.0 { return a.words.0.bigEndian < b.words.0.bigEndian }
        if a.words.1 != b.words.1 { return a.words.1.bigEndian < b.words.1.bigEndian }
        if a.words.2 != b.words.2 { return a.words.2.bigEndian < b.words.2.bigEndian }
        if a.words.3 != b.words.3 { return a.words.3.bigEndian < b.words.3.bigEndian }
        return a.count < b.count
    }

    /// `count` bytes written by `fill` into zeroed storage (count <= capacity).
    init(count: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Void) {
        precondition(count <= Self.capacity, "a set value of \(count) bytes is longer than nftpool ever sends")
        self.count = count
        Swift.withUnsafeMutableBytes(of: &words) { fill(UnsafeMutableRawBufferPointer(rebasing: $0[..<count])) }
    }
}
