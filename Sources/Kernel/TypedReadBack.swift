import PoolSpec
import Ruleset

/// Read-back into the Ruleset's typed values, for callers that must not know the wire layout (the
/// daemon's adoption, status): bytes are decoded by the set declaration the caller expects.
extension NetfilterKernel {
    public func elements(of table: String, sets: [NamedSet]) throws(KernelError) -> [String: [Element]]? {
        guard let snapshot = try snapshot(of: table) else { return nil }
        var out: [String: [Element]] = [:]
        for set in sets {
            guard let state = snapshot.sets[set.name], state.encoding.isSameDeclaration(as: SetEncoding(set)) else { continue }
            out[set.name] = state.elements.compactMap { ElementDecoding.element($0, of: set) }
        }
        return out
    }
}

extension SetEncoding {
    /// Elements of the two read alike: same key and data types and lengths. The rest (a slot map's
    /// modulus and port header in the user data, the size, counters) does not change how an element
    /// reads, and differs whenever a pool gains a backend: adoption must still read the old slots.
    func isSameDeclaration(as other: SetEncoding) -> Bool {
        keyType == other.keyType && keyLength == other.keyLength && dataType == other.dataType
            && dataLength == other.dataLength
    }
}

/// The inverse of `SetEncoding.bytes`: element bytes ─► typed values, by declaration.
enum ElementDecoding {
    static func element(_ bytes: KernelSnapshot.ElementBytes, of set: NamedSet) -> Element? {
        let keyTypes: [FieldType]
        switch set.key {
        case .types(let types): keyTypes = types.map(FieldType.init)
        case .slotIndex: keyTypes = [.index]
        }
        guard let key = values(bytes.key.array, keyTypes) else { return nil }
        switch set.data {
        case nil:
            return Element(key: key)
        case .verdict?:
            if bytes.verdict == -4, let chain = bytes.chain { return Element(key: key, data: .verdict(.goto(chain))) }  // NFT_GOTO
            if bytes.verdict == 0 { return Element(key: key, data: .verdict(.drop)) }  // NF_DROP
            return nil  // a verdict nftpool never writes (a hand edit)
        case .types(let types)?:
            guard let data = bytes.data, let v = values(data.array, types.map(FieldType.init)) else { return nil }
            return Element(key: key, data: .values(v))
        case .endpoint(let family, _)?:
            guard let data = bytes.data,
                let v = values(data.array, [FieldType(.address(family)), .port])
            else { return nil }
            return Element(key: key, data: .values(v))
        }
    }

    enum FieldType {
        case v4, v6, proto, port, index

        init(_ t: DataType) {
            switch t {
            case .ipv4Addr: self = .v4
            case .ipv6Addr: self = .v6
            case .inetProto: self = .proto
            case .inetService: self = .port
            }
        }

        var size: Int { self == .v6 ? 16 : 4 }
    }

    static func values(_ bytes: [UInt8], _ types: [FieldType]) -> [Value]? {
        guard bytes.count == types.reduce(0, { $0 + $1.size }) else { return nil }
        var out: [Value] = []
        var i = 0
        for t in types {
            let field = Array(bytes[i..<(i + t.size)])
            i += t.size
            switch t {
            case .v4, .v6: out.append(.address(IPAddress(bytes: field)))
            case .proto:
                switch field[0] {
                case 6: out.append(.proto(.tcp))
                case 17: out.append(.proto(.udp))
                default: return nil
                }
            case .port: out.append(.port(UInt16(field[0]) << 8 | UInt16(field[1])))
            case .index: out.append(.index(Int(UInt32(field[0]) | UInt32(field[1]) << 8 | UInt32(field[2]) << 16 | UInt32(field[3]) << 24)))
            }
        }
        return out
    }
}
