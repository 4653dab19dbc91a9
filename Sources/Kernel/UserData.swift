/// nftnl user data: a list of TLVs (type u8, length u8, value), values nested the same way. nft stores
/// `typeof` and byte orders of sets here, comments of tables and rules; `nft list` reads them back.
/// Ids are in no header; they were read from `nft --debug=mnl` output and are pinned by tests.
struct UserData: Equatable {
    private(set) var bytes: [UInt8] = []

    init() {}

    /// User data as read back from the kernel.
    init(raw: [UInt8]) { bytes = raw }

    mutating func add(_ type: UInt8, _ value: [UInt8]) {
        precondition(value.count <= 255, "a user data value holds at most 255 bytes")
        bytes += [type, UInt8(value.count)] + value
    }

    mutating func add(_ type: UInt8, u32 value: UInt32) {
        add(type, withUnsafeBytes(of: value.littleEndian) { Array($0) })
    }

    mutating func add(_ type: UInt8, nested: UserData) { add(type, nested.bytes) }

    /// A NUL-terminated string, as nft writes comments.
    mutating func add(_ type: UInt8, string: String) { add(type, Array(string.utf8) + [0]) }

    /// Reads the string value of a top-level TLV, as nft reads a comment.
    static func string(_ type: UInt8, in bytes: [UInt8]) -> String? {
        var i = 0
        while i + 2 <= bytes.count {
            let t = bytes[i], len = Int(bytes[i + 1])
            guard i + 2 + len <= bytes.count else { return nil }
            if t == type {
                return String(decoding: bytes[(i + 2)..<(i + 2 + len)].prefix { $0 != 0 }, as: UTF8.self)
            }
            i += 2 + len
        }
        return nil
    }
}

/// The ids nft 1.0.6 uses inside set user data.
enum SetUserData {
    static let keyByteOrder: UInt8 = 0
    static let dataByteOrder: UInt8 = 1
    static let keyTypeof: UInt8 = 3
    static let dataTypeof: UInt8 = 4
    static let dataInterval: UInt8 = 6

    static let hostEndian: UInt32 = 1
    static let bigEndian: UInt32 = 2

    // typeof expressions
    static let exprPayload: UInt32 = 7
    static let exprConcat: UInt32 = 13
    static let exprNumgen: UInt32 = 0x17
    // protocol descriptions and their fields
    static let protoUDP: UInt32 = 6
    static let protoTCP: UInt32 = 8
    static let protoTH: UInt32 = 11
    static let protoIP: UInt32 = 12
    static let protoIP6: UInt32 = 13
    static let ipDaddr: UInt32 = 12
    static let ip6Daddr: UInt32 = 9
    static let l4Dport: UInt32 = 2
}
