import CNetfilter
import PoolSpec
import Ruleset

/// Typed objects ─► libnftnl objects ─► messages in a batch. Elements go in messages capped by their
/// encoded size: an element list over 64 KiB is silently truncated by the kernel (NETLINK-NOTES).
enum TableMessages {
    static func deleteTable(_ name: String, in batch: inout NetlinkBatch) {
        batch.add(Int32(NFT_MSG_DELTABLE.rawValue), describing: .deleteTable(name)) { nlh in
            let t = nftnl_table_alloc()!
            defer { nftnl_table_free(t) }
            nftnl_table_set_str(t, UInt16(NFTNL_TABLE_NAME.rawValue), name)
            nftnl_table_nlmsg_build_payload(nlh, t)
        }
    }

    static func deleteRule(handle: UInt64, chain: String, table: String, in batch: inout NetlinkBatch) {
        batch.add(Int32(NFT_MSG_DELRULE.rawValue), describing: .deleteRule(chain: chain, handle: handle)) { nlh in
            let r = nftnl_rule_alloc()!
            defer { nftnl_rule_free(r) }
            nftnl_rule_set_str(r, UInt16(NFTNL_RULE_TABLE.rawValue), table)
            nftnl_rule_set_str(r, UInt16(NFTNL_RULE_CHAIN.rawValue), chain)
            nftnl_rule_set_u64(r, UInt16(NFTNL_RULE_HANDLE.rawValue), handle)
            nftnl_rule_nlmsg_build_payload(nlh, r)
        }
    }

    static func deleteSet(_ name: String, table: String, in batch: inout NetlinkBatch) {
        batch.add(Int32(NFT_MSG_DELSET.rawValue), describing: .deleteSet(name)) { nlh in
            let s = nftnl_set_alloc()!
            defer { nftnl_set_free(s) }
            nftnl_set_set_str(s, UInt16(NFTNL_SET_TABLE.rawValue), table)
            nftnl_set_set_str(s, UInt16(NFTNL_SET_NAME.rawValue), name)
            nftnl_set_nlmsg_build_payload(nlh, s)
        }
    }

    static func deleteChain(_ name: String, table: String, in batch: inout NetlinkBatch) {
        batch.add(Int32(NFT_MSG_DELCHAIN.rawValue), describing: .deleteChain(name)) { nlh in
            let c = nftnl_chain_alloc()!
            defer { nftnl_chain_free(c) }
            nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_TABLE.rawValue), table)
            nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_NAME.rawValue), name)
            nftnl_chain_nlmsg_build_payload(nlh, c)
        }
    }

    /// Deletes elements by key, in messages capped like additions.
    static func deleteElements(_ elements: [KernelSnapshot.ElementBytes], set: String, table: String, in batch: inout NetlinkBatch) {
        elementMessages(NFT_MSG_DELSETELEM, flags: 0, count: elements.count, set: set, setID: nil, table: table, in: &batch,
            describing: { .deleteElements(set: set, count: $0) }) { i, nlh in
            ElementAttributes.put(key: elements[i].key, into: nlh)
        }
    }

    /// NFTA_SET_ID of each set: lets rules and elements in the same batch name a set created in it.
    static func setIDs(_ table: Table) -> [String: UInt32] {
        Dictionary(uniqueKeysWithValues: table.sets.enumerated().map { ($1.name, UInt32($0 + 1)) })
    }

    /// Every object of the table, created from nothing.
    static func create(_ table: Table, in batch: inout NetlinkBatch) {
        batch.add(Int32(NFT_MSG_NEWTABLE.rawValue), flags: NLM_F_CREATE, describing: .table(table.name)) { nlh in
            let t = nftnl_table_alloc()!
            defer { nftnl_table_free(t) }
            nftnl_table_set_str(t, UInt16(NFTNL_TABLE_NAME.rawValue), table.name)
            nftnl_table_set_u32(t, UInt16(NFTNL_TABLE_FLAGS.rawValue), 0)
            var ud = UserData()
            ud.add(0, string: table.comment)  // NFTNL_UDATA_TABLE_COMMENT
            ud.bytes.withUnsafeBytes { raw in
                _ = nftnl_table_set_data(t, UInt16(NFTNL_TABLE_USERDATA.rawValue), raw.baseAddress, UInt32(raw.count))
            }
            nftnl_table_nlmsg_build_payload(nlh, t)
        }
        // Chains first: verdict map elements name them (goto pool-x). Then the sets, empty; then the
        // rules; then the elements. A rule that binds a map makes the kernel walk the map's elements
        // to check each against the rule: bound while empty, nothing is walked (at 80,000 slot
        // elements, nft's order of elements before rules spent about 6 ms there), and each element
        // added later is checked against the binding once, as it is inserted.
        for chain in table.chains { addChain(chain, table: table.name, in: &batch) }
        let ids = setIDs(table)
        for set in table.sets { addSet(set, id: ids[set.name]!, table: table.name, in: &batch) }
        for chain in table.chains {
            for rule in chain.rules {
                addRule(rule, chain: chain.name, table: table.name, setIDs: ids, in: &batch)
            }
        }
        for set in table.sets {
            addElements(set.elements, to: set, setID: ids[set.name], table: table.name, in: &batch)
        }
    }

    static func addSet(_ set: NamedSet, id: UInt32, table: String, in batch: inout NetlinkBatch) {
        let enc = SetEncoding(set)
        batch.add(Int32(NFT_MSG_NEWSET.rawValue), flags: NLM_F_CREATE, describing: .set(set.name, isMap: set.isMap)) { nlh in
            let s = nftnl_set_alloc()!
            defer { nftnl_set_free(s) }
            nftnl_set_set_str(s, UInt16(NFTNL_SET_TABLE.rawValue), table)
            nftnl_set_set_str(s, UInt16(NFTNL_SET_NAME.rawValue), set.name)
            nftnl_set_set_u32(s, UInt16(NFTNL_SET_FLAGS.rawValue), enc.flags)
            nftnl_set_set_u32(s, UInt16(NFTNL_SET_KEY_TYPE.rawValue), enc.keyType)
            nftnl_set_set_u32(s, UInt16(NFTNL_SET_KEY_LEN.rawValue), enc.keyLength)
            if let type = enc.dataType, let length = enc.dataLength {
                nftnl_set_set_u32(s, UInt16(NFTNL_SET_DATA_TYPE.rawValue), type)
                nftnl_set_set_u32(s, UInt16(NFTNL_SET_DATA_LEN.rawValue), length)
            }
            nftnl_set_set_u32(s, UInt16(NFTNL_SET_ID.rawValue), id)
            if let size = enc.size { nftnl_set_set_u32(s, UInt16(NFTNL_SET_DESC_SIZE.rawValue), size) }
            enc.userData.bytes.withUnsafeBytes { raw in
                _ = nftnl_set_set_data(s, UInt16(NFTNL_SET_USERDATA.rawValue), raw.baseAddress, UInt32(raw.count))
            }
            if enc.perElementCounter { nftnl_set_add_expr(s, nftnl_expr_alloc("counter")) }
            nftnl_set_nlmsg_build_payload(nlh, s)
        }
    }

    static func addElements(_ elements: [Element], to set: NamedSet, setID: UInt32?, table: String, in batch: inout NetlinkBatch) {
        elementMessages(NFT_MSG_NEWSETELEM, flags: NLM_F_CREATE, count: elements.count, set: set.name, setID: setID, table: table,
            in: &batch, describing: { .elements(set: set.name, count: $0) }) { ElementAttributes.put(elements[$0], into: $1) }
    }

    /// Upper bound of one message's element list nest. Its length field is 16 bits: past 64 KiB it wraps
    /// and the kernel reads a truncated or garbled list (NETLINK-NOTES). What an element takes depends on
    /// the set (key and data widths, verdicts naming chains), so it is measured as it is written.
    static let elementListLimit = 60 * 1024

    /// Elements `0..<count` (made by `element`) in as many messages as their encoded size needs: each
    /// element is written into the open message and, if that took the list past the limit, taken back
    /// and left to start the next message.
    static func elementMessages(
        _ type: nf_tables_msg_types, flags: Int32, count: Int, set: String, setID: UInt32?, table: String,
        in batch: inout NetlinkBatch, describing: (Int) -> BatchObject, element: (Int, UnsafeMutablePointer<nlmsghdr>) -> Void
    ) {
        var next = 0
        while next < count {
            batch.add(Int32(type.rawValue), flags: flags) { nlh -> BatchObject in
                let s = nftnl_set_alloc()!
                defer { nftnl_set_free(s) }
                nftnl_set_set_str(s, UInt16(NFTNL_SET_TABLE.rawValue), table)
                nftnl_set_set_str(s, UInt16(NFTNL_SET_NAME.rawValue), set)
                if let setID { nftnl_set_set_u32(s, UInt16(NFTNL_SET_ID.rawValue), setID) }
                nftnl_set_elems_nlmsg_build_payload(nlh, s)  // no elements: table, set, id only
                let list = mnl_attr_nest_start(nlh, UInt16(NFTA_SET_ELEM_LIST_ELEMENTS.rawValue))!
                let listStart = UnsafeRawPointer(list)
                let first = next
                while next < count {
                    let mark = nlh.pointee.nlmsg_len
                    let item = mnl_attr_nest_start(nlh, UInt16(NFTA_LIST_ELEM.rawValue))
                    element(next, nlh)
                    mnl_attr_nest_end(nlh, item)
                    let listLength = UnsafeRawPointer(mnl_nlmsg_get_payload_tail(nlh)!) - listStart
                    if listLength > elementListLimit && next > first {
                        nlh.pointee.nlmsg_len = mark
                        break
                    }
                    next += 1
                }
                mnl_attr_nest_end(nlh, list)
                return describing(next - first)
            }
        }
    }

    static func addChain(_ chain: Chain, table: String, in batch: inout NetlinkBatch) {
        batch.add(Int32(NFT_MSG_NEWCHAIN.rawValue), flags: NLM_F_CREATE, describing: .chain(chain.name)) { nlh in
            let c = nftnl_chain_alloc()!
            defer { nftnl_chain_free(c) }
            nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_TABLE.rawValue), table)
            nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_NAME.rawValue), chain.name)
            if let base = chain.base {
                let hook: Int32
                switch base.hook {
                case .prerouting: hook = Int32(NF_INET_PRE_ROUTING.rawValue)
                case .input: hook = Int32(NF_INET_LOCAL_IN.rawValue)
                case .output: hook = Int32(NF_INET_LOCAL_OUT.rawValue)
                case .postrouting: hook = Int32(NF_INET_POST_ROUTING.rawValue)
                case .forward: hook = Int32(NF_INET_FORWARD.rawValue)
                }
                nftnl_chain_set_u32(c, UInt16(NFTNL_CHAIN_HOOKNUM.rawValue), UInt32(hook))
                nftnl_chain_set_s32(c, UInt16(NFTNL_CHAIN_PRIO.rawValue), Int32(base.priority))
                nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_TYPE.rawValue), base.kind.rawValue)
                nftnl_chain_set_u32(c, UInt16(NFTNL_CHAIN_POLICY.rawValue), UInt32(NF_ACCEPT))
            }
            nftnl_chain_nlmsg_build_payload(nlh, c)
        }
    }

    static func addRule(_ rule: Rule, chain: String, table: String, setIDs: [String: UInt32], in batch: inout NetlinkBatch) {
        batch.add(
            Int32(NFT_MSG_NEWRULE.rawValue), flags: NLM_F_CREATE | NLM_F_APPEND,
            describing: .rule(chain: chain, rule)
        ) { nlh in
            let r = nftnl_rule_alloc()!
            defer { nftnl_rule_free(r) }
            nftnl_rule_set_str(r, UInt16(NFTNL_RULE_TABLE.rawValue), table)
            nftnl_rule_set_str(r, UInt16(NFTNL_RULE_CHAIN.rawValue), chain)
            for expr in rule.expressions { nftnl_rule_add_expr(r, makeExpr(expr, setIDs: setIDs)) }
            if let comment = rule.comment {
                var ud = UserData()
                ud.add(0, string: comment)  // NFTNL_UDATA_RULE_COMMENT
                ud.bytes.withUnsafeBytes { raw in
                    _ = nftnl_rule_set_data(r, UInt16(NFTNL_RULE_USERDATA.rawValue), raw.baseAddress, UInt32(raw.count))
                }
            }
            nftnl_rule_nlmsg_build_payload(nlh, r)
        }
    }

    static func makeExpr(_ expr: Expr, setIDs: [String: UInt32]) -> OpaquePointer {
        func new(_ name: String) -> OpaquePointer { nftnl_expr_alloc(name)! }
        func u32(_ e: OpaquePointer, _ attr: Int, _ v: UInt32) { nftnl_expr_set_u32(e, UInt16(attr), v) }
        func data(_ e: OpaquePointer, _ attr: Int, _ bytes: [UInt8]) {
            bytes.withUnsafeBytes { raw in _ = nftnl_expr_set(e, UInt16(attr), raw.baseAddress, UInt32(raw.count)) }
        }
        switch expr {
        case .meta(let key, let dreg):
            let e = new("meta")
            u32(e, NFTNL_EXPR_META_KEY, key)
            u32(e, NFTNL_EXPR_META_DREG, dreg)
            return e
        case .cmp(let sreg, let op, let bytes):
            let e = new("cmp")
            u32(e, NFTNL_EXPR_CMP_SREG, sreg)
            u32(e, NFTNL_EXPR_CMP_OP, op)
            data(e, NFTNL_EXPR_CMP_DATA, bytes)
            return e
        case .payload(let base, let offset, let length, let dreg):
            let e = new("payload")
            u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg)
            u32(e, NFTNL_EXPR_PAYLOAD_BASE, base)
            u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset)
            u32(e, NFTNL_EXPR_PAYLOAD_LEN, length)
            return e
        case .ct(let key, let dreg, let direction):
            let e = new("ct")
            u32(e, NFTNL_EXPR_CT_KEY, key)
            u32(e, NFTNL_EXPR_CT_DREG, dreg)
            if let direction { nftnl_expr_set_u8(e, UInt16(NFTNL_EXPR_CT_DIR), direction) }
            return e
        case .bitwise(let sreg, let dreg, let length, let mask, let xor):
            let e = new("bitwise")
            u32(e, NFTNL_EXPR_BITWISE_SREG, sreg)
            u32(e, NFTNL_EXPR_BITWISE_DREG, dreg)
            u32(e, NFTNL_EXPR_BITWISE_LEN, length)
            data(e, NFTNL_EXPR_BITWISE_MASK, mask)
            data(e, NFTNL_EXPR_BITWISE_XOR, xor)
            return e
        case .lookup(let set, let sreg, let dreg):
            let e = new("lookup")
            u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg)
            if let dreg { u32(e, NFTNL_EXPR_LOOKUP_DREG, dreg) }
            nftnl_expr_set_str(e, UInt16(NFTNL_EXPR_LOOKUP_SET), set)
            if let id = setIDs[set] { u32(e, NFTNL_EXPR_LOOKUP_SET_ID, id) }
            return e
        case .masq:
            return new("masq")
        case .nat(let type, let family, let addressReg, let protoReg):
            let e = new("nat")
            u32(e, NFTNL_EXPR_NAT_TYPE, type)
            u32(e, NFTNL_EXPR_NAT_FAMILY, family)
            u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, addressReg)
            if let protoReg { u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, protoReg) }
            return e
        case .numgen(let type, let modulus, let dreg):
            let e = new("numgen")
            u32(e, NFTNL_EXPR_NG_DREG, dreg)
            u32(e, NFTNL_EXPR_NG_MODULUS, modulus)
            u32(e, NFTNL_EXPR_NG_TYPE, type)
            u32(e, NFTNL_EXPR_NG_OFFSET, 0)
            return e
        case .hash(let sreg, let dreg, let length, let modulus, let seed):
            let e = new("hash")
            u32(e, NFTNL_EXPR_HASH_SREG, sreg)
            u32(e, NFTNL_EXPR_HASH_DREG, dreg)
            u32(e, NFTNL_EXPR_HASH_LEN, length)
            u32(e, NFTNL_EXPR_HASH_MODULUS, modulus)
            u32(e, NFTNL_EXPR_HASH_SEED, seed)
            u32(e, NFTNL_EXPR_HASH_TYPE, UInt32(NFT_HASH_JENKINS.rawValue))
            return e
        case .counter:
            return new("counter")
        case .unknown(let name):
            preconditionFailure("nftpool never writes an expression it did not read: \(name)")
        case .immediate(let verdict):
            let e = new("immediate")
            u32(e, NFTNL_EXPR_IMM_DREG, Registers.verdict)
            u32(e, NFTNL_EXPR_IMM_VERDICT, UInt32(bitPattern: verdict))
            return e
        case .limit(let rate, let unit, let burst, let type, let flags):
            let e = new("limit")
            nftnl_expr_set_u64(e, UInt16(NFTNL_EXPR_LIMIT_RATE), rate)
            nftnl_expr_set_u64(e, UInt16(NFTNL_EXPR_LIMIT_UNIT), unit)
            u32(e, NFTNL_EXPR_LIMIT_BURST, burst)
            u32(e, NFTNL_EXPR_LIMIT_TYPE, type)
            u32(e, NFTNL_EXPR_LIMIT_FLAGS, flags)
            return e
        case .log(let group, let snaplen):
            let e = new("log")
            nftnl_expr_set_u16(e, UInt16(NFTNL_EXPR_LOG_GROUP), group)
            u32(e, NFTNL_EXPR_LOG_SNAPLEN, snaplen)
            return e
        case .reject(let type, let code):
            let e = new("reject")
            u32(e, NFTNL_EXPR_REJECT_TYPE, type)
            nftnl_expr_set_u8(e, UInt16(NFTNL_EXPR_REJECT_CODE), code)
            return e
        }
    }
}
