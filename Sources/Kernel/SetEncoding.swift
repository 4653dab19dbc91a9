import PoolSpec
import Ruleset

/// How a NamedSet looks on the wire: the same types, lengths, flags and user data nft sends for the same
/// declaration, so that `nft list` prints our sets exactly as it prints the golden rulesets.
struct SetEncoding: Equatable {
    var keyType: UInt32
    var keyLength: UInt32
    var dataType: UInt32?
    var dataLength: UInt32?
    var flags: UInt32
    var userData: UserData
    var perElementCounter: Bool
    var size: UInt32?

    init(
        keyType: UInt32, keyLength: UInt32, dataType: UInt32?, dataLength: UInt32?, flags: UInt32,
        userData: UserData, perElementCounter: Bool, size: UInt32?
    ) {
        self.size = size
        self.keyType = keyType
        self.keyLength = keyLength
        self.dataType = dataType
        self.dataLength = dataLength
        self.flags = flags
        self.userData = userData
        self.perElementCounter = perElementCounter
    }

    static let verdictType: UInt32 = 0xffff_ff00
    static let mapFlag: UInt32 = 0x8  // NFT_SET_MAP

    init(_ set: NamedSet) {
        var ud = UserData()
        switch set.key {
        case .types(let key):
            keyType = Self.concatType(key)
            keyLength = Self.length(key)
            if key.count == 1 {
                ud.add(SetUserData.keyByteOrder, u32: SetUserData.bigEndian)
            } else {
                // nft marks a concatenated `type` key as a typeof of an (empty) concatenation
                ud.add(SetUserData.keyByteOrder, u32: 0)
            }
        case .slotIndex:
            keyType = 4  // integer
            keyLength = 4
            ud.add(SetUserData.keyByteOrder, u32: SetUserData.hostEndian)
        }
        switch set.data {
        case nil:
            dataType = nil
            dataLength = nil
        case .types(let data)?:
            dataType = Self.concatType(data)
            dataLength = Self.length(data)
            ud.add(SetUserData.dataByteOrder, u32: data.count == 1 ? SetUserData.bigEndian : 0)
        case .verdict?:
            dataType = Self.verdictType
            dataLength = 0
            ud.add(SetUserData.dataByteOrder, u32: 0)
        case .endpoint(let family, _)?:
            let types: [DataType] = [.address(family), .inetService]
            dataType = Self.concatType(types)
            dataLength = Self.length(types)
            ud.add(SetUserData.dataByteOrder, u32: 0)
        }
        if case .types(let key) = set.key, key.count > 1 {
            var typeofKey = UserData()
            typeofKey.add(0, u32: SetUserData.exprConcat)
            typeofKey.add(1, [])
            ud.add(SetUserData.keyTypeof, nested: typeofKey)
        }
        if case .slotIndex(let modulus) = set.key {
            var numgen = UserData()
            numgen.add(0, u32: 0)  // inc
            numgen.add(1, u32: UInt32(modulus))
            numgen.add(2, u32: 0)  // offset
            var typeofKey = UserData()
            typeofKey.add(0, u32: SetUserData.exprNumgen)
            typeofKey.add(1, nested: numgen)
            ud.add(SetUserData.keyTypeof, nested: typeofKey)
        }
        if case .endpoint(let family, let header)? = set.data {
            let address = Self.payload(
                family == .ipv4 ? SetUserData.protoIP : SetUserData.protoIP6,
                field: family == .ipv4 ? SetUserData.ipDaddr : SetUserData.ip6Daddr)
            let proto: UInt32
            switch header {
            case .tcp: proto = SetUserData.protoTCP
            case .udp: proto = SetUserData.protoUDP
            case .th: proto = SetUserData.protoTH
            }
            var list = UserData()
            list.add(0, nested: address)
            list.add(1, nested: Self.payload(proto, field: SetUserData.l4Dport))
            var typeofData = UserData()
            typeofData.add(0, u32: SetUserData.exprConcat)
            typeofData.add(1, nested: list)
            ud.add(SetUserData.dataTypeof, nested: typeofData)
        }
        if set.isMap {
            ud.add(SetUserData.dataInterval, u32: 0)
        }
        flags = set.isMap ? Self.mapFlag : 0
        userData = ud
        perElementCounter = set.counter
        size = set.size.map(UInt32.init)
    }

    private static func payload(_ proto: UInt32, field: UInt32) -> UserData {
        var desc = UserData()
        desc.add(0, u32: proto)
        desc.add(1, u32: field)
        var expr = UserData()
        expr.add(0, u32: SetUserData.exprPayload)
        expr.add(1, nested: desc)
        return expr
    }

    static func typeId(_ t: DataType) -> UInt32 {
        switch t {
        case .ipv4Addr: return 7
        case .ipv6Addr: return 8
        case .inetProto: return 12
        case .inetService: return 13
        }
    }

    /// nft's id of a concatenation: the member ids, 6 bits each.
    static func concatType(_ types: [DataType]) -> UInt32 {
        types.reduce(0) { ($0 << 6) | typeId($1) }
    }

    /// Each member of a concatenation takes whole 32-bit registers.
    static func length(_ types: [DataType]) -> UInt32 {
        types.reduce(0) { $0 + paddedSize($1) }
    }

    static func paddedSize(_ t: DataType) -> UInt32 {
        switch t {
        case .ipv4Addr: return 4
        case .ipv6Addr: return 16
        case .inetProto, .inetService: return 4
        }
    }

    /// `bytes(values)` as PackedBytes, written in place: no array per element (a table of 10,000
    /// backends has 90,000 elements, and every apply encodes each of them to compare).
    static func packed(_ values: [Value]) -> PackedBytes {
        var count = 0
        for v in values {
            if case .address(let a) = v { count += a.bytes.count } else { count += 4 }
        }
        guard count <= PackedBytes.capacity else { return PackedBytes(bytes(values)) }
        return PackedBytes(count: count) { out in
            var i = 0
            for v in values {
                switch v {
                case .address(let a):
                    for b in a.bytes {
                        out[i] = b
                        i += 1
                    }
                    continue
                case .proto(let p): out[i] = p == .tcp ? 6 : 17
                case .port(let p):
                    out[i] = UInt8(p >> 8)
                    out[i + 1] = UInt8(p & 0xff)
                case .index(let n): out.storeBytes(of: UInt32(n).littleEndian, toByteOffset: i, as: UInt32.self)
                }
                i += 4
            }
        }
    }

    /// The bytes of a key or data value, each member padded to 32 bits; addresses and ports in network
    /// order, slot indexes in host order (as nft's integer keys are).
    static func bytes(_ values: [Value]) -> [UInt8] {
        values.flatMap { v -> [UInt8] in
            switch v {
            case .address(let a): return a.bytes
            case .proto(let p): return [p == .tcp ? 6 : 17, 0, 0, 0]
            case .port(let p): return [UInt8(p >> 8), UInt8(p & 0xff), 0, 0]
            case .index(let i): return withUnsafeBytes(of: UInt32(i).littleEndian) { Array($0) }
            }
        }
    }
}
