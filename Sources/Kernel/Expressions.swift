import CNetfilter
import PoolSpec
import Ruleset

/// One nftables expression, typed. A rule of the model becomes a fixed list of these, the same list nft
/// emits for the same rule text (compare `nft --debug=netlink`), so `nft list` prints our rules as written.
enum Expr: Equatable {
    case meta(key: UInt32, dreg: UInt32)
    case cmp(sreg: UInt32, op: UInt32, data: [UInt8])
    case payload(base: UInt32, offset: UInt32, length: UInt32, dreg: UInt32)
    case ct(key: UInt32, dreg: UInt32, direction: UInt8?)
    case bitwise(sreg: UInt32, dreg: UInt32, length: UInt32, mask: [UInt8], xor: [UInt8])
    case lookup(set: String, sreg: UInt32, dreg: UInt32?)
    case masq
    case nat(type: UInt32, family: UInt32, addressReg: UInt32, protoReg: UInt32?)
    case numgen(type: UInt32, modulus: UInt32, dreg: UInt32)
    case hash(sreg: UInt32, dreg: UInt32, length: UInt32, modulus: UInt32, seed: UInt32)
    case counter
    case reject(type: UInt32, code: UInt8)
    /// `limit rate R/second burst B packets`
    case limit(rate: UInt64, unit: UInt64, burst: UInt32, type: UInt32, flags: UInt32)
    /// `log group G snaplen S`: to nfnetlink_log.
    case log(group: UInt16, snaplen: UInt32)
    /// A rule's own verdict (`drop`): immediate into the verdict register.
    case immediate(verdict: Int32)
    /// Read back from the kernel and not one nftpool writes: never equal to a rule of ours.
    case unknown(String)

    /// The kernel module that implements it, for error messages.
    var module: String {
        switch self {
        case .meta: return "nft_meta"
        case .cmp, .payload, .bitwise, .lookup, .unknown: return "nf_tables"
        case .ct: return "nft_ct"
        case .masq: return "nft_masq"
        case .nat: return "nft_nat"
        case .numgen: return "nft_numgen"
        case .hash: return "nft_hash"
        case .counter: return "nft_counter"
        case .reject: return "nft_reject_inet"
        case .limit: return "nft_limit"
        case .log: return "nft_log"
        case .immediate: return "nf_tables"
        }
    }

    /// Its name as nft shows it (with the set a lookup names), for error messages.
    var name: String {
        switch self {
        case .lookup(let set, _, _): return "lookup @\(set)"
        case .unknown(let name): return name
        default: return String(String(describing: self).prefix { $0 != "(" })
        }
    }
}

extension Expr {
    /// Decodes a libnftnl expression read back from the kernel.
    init(parsing e: OpaquePointer) {
        func u32(_ attr: Int) -> UInt32 { nftnl_expr_get_u32(e, UInt16(attr)) }
        func has(_ attr: Int) -> Bool { nftnl_expr_is_set(e, UInt16(attr)) }
        func bytes(_ attr: Int) -> [UInt8] {
            var len: UInt32 = 0
            guard let p = nftnl_expr_get(e, UInt16(attr), &len) else { return [] }
            return Array(UnsafeRawBufferPointer(start: p, count: Int(len)))
        }
        let name = nftnl_expr_get_str(e, UInt16(NFTNL_EXPR_NAME)).map { String(cString: $0) } ?? "?"
        switch name {
        case "meta": self = .meta(key: u32(NFTNL_EXPR_META_KEY), dreg: u32(NFTNL_EXPR_META_DREG))
        case "cmp": self = .cmp(sreg: u32(NFTNL_EXPR_CMP_SREG), op: u32(NFTNL_EXPR_CMP_OP), data: bytes(NFTNL_EXPR_CMP_DATA))
        case "payload":
            self = .payload(
                base: u32(NFTNL_EXPR_PAYLOAD_BASE), offset: u32(NFTNL_EXPR_PAYLOAD_OFFSET),
                length: u32(NFTNL_EXPR_PAYLOAD_LEN), dreg: u32(NFTNL_EXPR_PAYLOAD_DREG))
        case "ct":
            self = .ct(
                key: u32(NFTNL_EXPR_CT_KEY), dreg: u32(NFTNL_EXPR_CT_DREG),
                direction: has(NFTNL_EXPR_CT_DIR) ? nftnl_expr_get_u8(e, UInt16(NFTNL_EXPR_CT_DIR)) : nil)
        case "bitwise":
            self = .bitwise(
                sreg: u32(NFTNL_EXPR_BITWISE_SREG), dreg: u32(NFTNL_EXPR_BITWISE_DREG), length: u32(NFTNL_EXPR_BITWISE_LEN),
                mask: bytes(NFTNL_EXPR_BITWISE_MASK), xor: bytes(NFTNL_EXPR_BITWISE_XOR))
        case "lookup":
            self = .lookup(
                set: nftnl_expr_get_str(e, UInt16(NFTNL_EXPR_LOOKUP_SET)).map { String(cString: $0) } ?? "",
                sreg: u32(NFTNL_EXPR_LOOKUP_SREG), dreg: has(NFTNL_EXPR_LOOKUP_DREG) ? u32(NFTNL_EXPR_LOOKUP_DREG) : nil)
        case "masq": self = .masq
        case "nat":
            self = .nat(
                type: u32(NFTNL_EXPR_NAT_TYPE), family: u32(NFTNL_EXPR_NAT_FAMILY), addressReg: u32(NFTNL_EXPR_NAT_REG_ADDR_MIN),
                protoReg: has(NFTNL_EXPR_NAT_REG_PROTO_MIN) ? u32(NFTNL_EXPR_NAT_REG_PROTO_MIN) : nil)
        case "numgen": self = .numgen(type: u32(NFTNL_EXPR_NG_TYPE), modulus: u32(NFTNL_EXPR_NG_MODULUS), dreg: u32(NFTNL_EXPR_NG_DREG))
        case "hash":
            self = .hash(
                sreg: u32(NFTNL_EXPR_HASH_SREG), dreg: u32(NFTNL_EXPR_HASH_DREG), length: u32(NFTNL_EXPR_HASH_LEN),
                modulus: u32(NFTNL_EXPR_HASH_MODULUS), seed: u32(NFTNL_EXPR_HASH_SEED))
        case "counter": self = .counter
        case "reject": self = .reject(type: u32(NFTNL_EXPR_REJECT_TYPE), code: nftnl_expr_get_u8(e, UInt16(NFTNL_EXPR_REJECT_CODE)))
        case "limit":
            self = .limit(
                rate: nftnl_expr_get_u64(e, UInt16(NFTNL_EXPR_LIMIT_RATE)), unit: nftnl_expr_get_u64(e, UInt16(NFTNL_EXPR_LIMIT_UNIT)),
                burst: u32(NFTNL_EXPR_LIMIT_BURST), type: u32(NFTNL_EXPR_LIMIT_TYPE), flags: u32(NFTNL_EXPR_LIMIT_FLAGS))
        case "log" where !has(NFTNL_EXPR_LOG_PREFIX) && !has(NFTNL_EXPR_LOG_LEVEL) && !has(NFTNL_EXPR_LOG_FLAGS):
            self = .log(group: nftnl_expr_get_u16(e, UInt16(NFTNL_EXPR_LOG_GROUP)), snaplen: u32(NFTNL_EXPR_LOG_SNAPLEN))
        case "immediate" where u32(NFTNL_EXPR_IMM_DREG) == Registers.verdict && has(NFTNL_EXPR_IMM_VERDICT):
            self = .immediate(verdict: Int32(bitPattern: u32(NFTNL_EXPR_IMM_VERDICT)))
        default: self = .unknown(name)
        }
    }
}

enum Registers {
    static let verdict: UInt32 = 0
    static let r1: UInt32 = 1  // 128-bit register 1 (32-bit 8..11)
    static let r2: UInt32 = 2  // 128-bit register 2 (32-bit 12..15)
    static func r32(_ n: UInt32) -> UInt32 { 8 + n }
}

extension Rule {
    var expressions: [Expr] {
        let networkHeader = UInt32(NFT_PAYLOAD_NETWORK_HEADER.rawValue)
        let transportHeader = UInt32(NFT_PAYLOAD_TRANSPORT_HEADER.rawValue)
        let eq = UInt32(NFT_CMP_EQ.rawValue), neq = UInt32(NFT_CMP_NEQ.rawValue)
        func nfproto(_ f: IPFamily) -> [Expr] {
            [.meta(key: UInt32(NFT_META_NFPROTO.rawValue), dreg: Registers.r1),
             .cmp(sreg: Registers.r1, op: eq, data: [f == .ipv4 ? UInt8(NFPROTO_IPV4) : UInt8(NFPROTO_IPV6)])]
        }
        /// `ip daddr . meta l4proto . th dport` into consecutive registers from r1.
        func destinationTuple(_ f: IPFamily) -> [Expr] {
            let v4 = f == .ipv4
            return nfproto(f) + [
                .payload(base: networkHeader, offset: v4 ? 16 : 24, length: v4 ? 4 : 16, dreg: Registers.r1),
                .meta(key: UInt32(NFT_META_L4PROTO.rawValue), dreg: v4 ? Registers.r32(1) : Registers.r2),
                .payload(base: transportHeader, offset: 2, length: 2, dreg: v4 ? Registers.r32(2) : Registers.r32(5)),
            ]
        }
        let ctStatusDNAT: [Expr] = [
            .ct(key: UInt32(NFT_CT_STATUS.rawValue), dreg: Registers.r1, direction: nil),
            .bitwise(sreg: Registers.r1, dreg: Registers.r1, length: 4, mask: [0x20, 0, 0, 0], xor: [0, 0, 0, 0]),
            .cmp(sreg: Registers.r1, op: neq, data: [0, 0, 0, 0]),
        ]
        func ctOriginalDaddr(_ f: IPFamily) -> Expr {
            .ct(key: UInt32((f == .ipv4 ? NFT_CT_DST_IP : NFT_CT_DST_IP6).rawValue), dreg: Registers.r1, direction: 0)
        }
        func l4proto(_ p: L4Protocol) -> [Expr] {
            [.meta(key: UInt32(NFT_META_L4PROTO.rawValue), dreg: Registers.r1),
             .cmp(sreg: Registers.r1, op: eq, data: [p == .tcp ? 6 : 17])]
        }
        func family(_ f: IPFamily) -> UInt32 { UInt32(f == .ipv4 ? NFPROTO_IPV4 : NFPROTO_IPV6) }
        func ctReply() -> [Expr] {
            [.ct(key: UInt32(NFT_CT_DIRECTION.rawValue), dreg: Registers.r1, direction: nil),
             .cmp(sreg: Registers.r1, op: eq, data: [1])]  // IP_CT_DIR_REPLY
        }
        /// `ct reply ip saddr . ct reply proto-src @set`: the backend the flow was DNATed to.
        func replySource(_ f: IPFamily, set: String) -> [Expr] {
            [.ct(key: UInt32((f == .ipv4 ? NFT_CT_SRC_IP : NFT_CT_SRC_IP6).rawValue), dreg: Registers.r1, direction: 1),
             .ct(key: UInt32(NFT_CT_PROTO_SRC.rawValue), dreg: f == .ipv4 ? Registers.r32(1) : Registers.r2, direction: 1),
             .lookup(set: set, sreg: Registers.r1, dreg: nil)]
        }
        func passiveLog(_ log: PassiveLog) -> [Expr] {
            [.limit(rate: UInt64(log.ratePerSecond), unit: 1, burst: UInt32(log.burst), type: UInt32(NFT_LIMIT_PKTS.rawValue), flags: 0),
             .log(group: log.group, snaplen: UInt32(log.snaplen))]
        }

        switch self {
        case .dispatch(let f, let map):
            return destinationTuple(f) + [.lookup(set: map, sreg: Registers.r1, dreg: Registers.verdict)]
        case .masquerade(let f, let set):
            return ctStatusDNAT + [ctOriginalDaddr(f), .lookup(set: set, sreg: Registers.r1, dreg: nil), .masq]
        case .snat(let f, let map):
            return ctStatusDNAT + [
                ctOriginalDaddr(f), .lookup(set: map, sreg: Registers.r1, dreg: Registers.r1),
                .nat(type: UInt32(NFT_NAT_SNAT.rawValue), family: family(f), addressReg: Registers.r1, protoReg: nil),
            ]
        case .countBackends(let f, let set):
            return ctStatusDNAT + destinationTuple(f) + [.lookup(set: set, sreg: Registers.r1, dreg: nil)]
        case .rejectWithTCPReset:
            return l4proto(.tcp) + [.reject(type: UInt32(NFT_REJECT_TCP_RST.rawValue), code: 0)]
        case .reject:
            return [.reject(type: UInt32(NFT_REJECT_ICMPX_UNREACH.rawValue), code: UInt8(NFT_REJECT_ICMPX_PORT_UNREACH.rawValue))]
        case .passiveReset(let f, let set, let log):
            let assuredOrDNAT: UInt8 = 0x04 | 0x20, dnat: UInt8 = 0x20  // IPS_ASSURED | IPS_DST_NAT
            let rst: UInt8 = 0x04
            return nfproto(f) + ctReply() + [
                .ct(key: UInt32(NFT_CT_STATUS.rawValue), dreg: Registers.r1, direction: nil),
                .bitwise(sreg: Registers.r1, dreg: Registers.r1, length: 4, mask: [assuredOrDNAT, 0, 0, 0], xor: [0, 0, 0, 0]),
                .cmp(sreg: Registers.r1, op: eq, data: [dnat, 0, 0, 0]),
            ] + l4proto(.tcp) + [
                .payload(base: transportHeader, offset: 13, length: 1, dreg: Registers.r1),
                .bitwise(sreg: Registers.r1, dreg: Registers.r1, length: 1, mask: [rst], xor: [0]),
                .cmp(sreg: Registers.r1, op: neq, data: [0]),
            ] + replySource(f, set: set) + passiveLog(log)
        case .passiveUnreachable(let f, let set, let log):
            let related: UInt8 = 0x04  // NF_CT_STATE_BIT(IP_CT_RELATED)
            var exprs = ctReply() + ctStatusDNAT + [
                .ct(key: UInt32(NFT_CT_STATE.rawValue), dreg: Registers.r1, direction: nil),
                .bitwise(sreg: Registers.r1, dreg: Registers.r1, length: 4, mask: [related, 0, 0, 0], xor: [0, 0, 0, 0]),
                .cmp(sreg: Registers.r1, op: neq, data: [0, 0, 0, 0]),
            ] + nfproto(f) + [
                .meta(key: UInt32(NFT_META_L4PROTO.rawValue), dreg: Registers.r1),
                .cmp(sreg: Registers.r1, op: eq, data: [f == .ipv4 ? 1 : 58]),  // icmp, ipv6-icmp
                .payload(base: transportHeader, offset: 0, length: 1, dreg: Registers.r1),
                .cmp(sreg: Registers.r1, op: eq, data: [f == .ipv4 ? 3 : 1]),  // destination unreachable
            ]
            if f == .ipv4 {
                exprs += [
                    .payload(base: transportHeader, offset: 1, length: 1, dreg: Registers.r1),
                    .cmp(sreg: Registers.r1, op: neq, data: [4]),  // fragmentation needed: path MTU, not a failure
                ]
            }
            return exprs + replySource(f, set: set) + passiveLog(log)
        case .dropUnsynced(let f, let set):
            // The order nft itself emits for the rule text (`nft --debug=netlink`).
            let ctStateInvalidOrNew: UInt8 = 0x01 | 0x08  // NF_CT_STATE_INVALID_BIT | NF_CT_STATE_BIT(NEW)
            let finSynRstAck: UInt8 = 0x01 | 0x02 | 0x04 | 0x10
            return l4proto(.tcp) + nfproto(f) + [
                .payload(base: networkHeader, offset: f == .ipv4 ? 16 : 24, length: f == .ipv4 ? 4 : 16, dreg: Registers.r1),
                .lookup(set: set, sreg: Registers.r1, dreg: nil),
                .ct(key: UInt32(NFT_CT_STATE.rawValue), dreg: Registers.r1, direction: nil),
                .bitwise(sreg: Registers.r1, dreg: Registers.r1, length: 4, mask: [ctStateInvalidOrNew, 0, 0, 0], xor: [0, 0, 0, 0]),
                .cmp(sreg: Registers.r1, op: neq, data: [0, 0, 0, 0]),
                .payload(base: transportHeader, offset: 13, length: 1, dreg: Registers.r1),
                .bitwise(sreg: Registers.r1, dreg: Registers.r1, length: 1, mask: [finSynRstAck], xor: [0]),
                .cmp(sreg: Registers.r1, op: neq, data: [0x02]),
                .immediate(verdict: Int32(NF_DROP)),
            ]
        case .dnat(let d):
            var exprs = l4proto(d.proto) + [.counter]
            let modulus = UInt32(d.modulus)
            switch d.selector {
            case .numgenInc:
                exprs.append(.numgen(type: UInt32(NFT_NG_INCREMENTAL.rawValue), modulus: modulus, dreg: Registers.r1))
            case .numgenRandom:
                exprs.append(.numgen(type: UInt32(NFT_NG_RANDOM.rawValue), modulus: modulus, dreg: Registers.r1))
            case .jhash(let fields, let seed):
                let v4 = d.family == .ipv4
                exprs += nfproto(d.family)
                exprs.append(.payload(base: networkHeader, offset: v4 ? 12 : 8, length: v4 ? 4 : 16, dreg: Registers.r2))
                var length: UInt32 = v4 ? 4 : 16
                if fields.contains(.sport) {
                    exprs.append(.payload(base: transportHeader, offset: 0, length: 2, dreg: v4 ? Registers.r32(5) : Registers.r32(8)))
                    length += 4
                }
                exprs.append(.hash(sreg: Registers.r2, dreg: Registers.r1, length: length, modulus: modulus, seed: seed))
            }
            exprs.append(.lookup(set: d.map, sreg: Registers.r1, dreg: Registers.r1))
            exprs.append(
                .nat(type: UInt32(NFT_NAT_DNAT.rawValue), family: family(d.family), addressReg: Registers.r1,
                     protoReg: d.family == .ipv4 ? Registers.r32(1) : Registers.r2))
            return exprs
        }
    }

    var comment: String? {
        if case .dnat(let d) = self { return d.comment }
        return nil
    }
}
