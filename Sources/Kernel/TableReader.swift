import CNetfilter
import Dispatch
import Ruleset
import Synchronization

/// Reads table inet <name> back over netlink (dumps of sets, elements, chains, rules) into a snapshot.
/// Read-only. The chain dump returns every inet table's chains; parseChain keeps ours and drops the rest.
/// A read is several dumps: it is consistent only if no commit came between them, so the generation is
/// read before and after, and the whole read is done again when it moved or a dump was interrupted.
extension NetfilterKernel {
    func snapshot(of name: String) throws(KernelError) -> KernelSnapshot? {
        try consistentRead { () throws(KernelError) in try readSnapshot(of: name) }.value
    }

    /// `body`'s reads and the generation they saw, retried while other writers commit in between.
    func consistentRead<T>(_ body: () throws(KernelError) -> T) throws(KernelError) -> (value: T, generation: UInt32) {
        for _ in 0..<Self.attempts {
            let before = try generation()
            let value: T
            do throws(KernelError) {
                value = try body()
            } catch .busy {
                continue  // a dump was interrupted
            }
            if try generation() == before { return (value, before) }
        }
        throw .busy("read the ruleset", attempts: Self.attempts)
    }

    func readSnapshot(of name: String) throws(KernelError) -> KernelSnapshot? {
        guard let comment = try tableComment(name) else { return nil }
        var snapshot = KernelSnapshot(comment: comment, sets: [:], chains: [:])

        let sets = try dump(NFT_MSG_GETSET, table: name).compactMap(parseSet)
        let elements = try readElements(of: sets.map(\.0), table: name)
        for ((setName, encoding), elements) in zip(sets, elements) {
            snapshot.sets[setName] = KernelSnapshot.SetState(encoding: encoding, unsorted: elements)
        }
        for message in try dump(NFT_MSG_GETCHAIN, table: name) {
            guard let (chainName, base) = parseChain(message, table: name) else { continue }
            snapshot.chains[chainName] = KernelSnapshot.ChainState(base: base, rules: [])
        }
        for message in try dump(NFT_MSG_GETRULE, table: name) {
            guard let (chainName, rule) = parseRule(message, table: name) else { continue }
            snapshot.chains[chainName, default: KernelSnapshot.ChainState(base: nil, rules: [])].rules.append(rule)
        }
        return snapshot
    }

    /// The elements of each set, read by two threads, each on its own socket, taking the next set as
    /// it finishes one. At 10,000 backends (80,000 elements in 108 sets) one thread took 47 ms.
    func readElements(of sets: [String], table: String) throws(KernelError) -> [[KernelSnapshot.ElementBytes]] {
        var results = [Result<[KernelSnapshot.ElementBytes], KernelError>](repeating: .success([]), count: sets.count)
        let next = Mutex(0)
        // The first socket's numbers are taken from the kernel object's sequence (reserved for every set,
        // so its later requests never reuse one); the second socket has its own replies and numbers.
        let sequences = (nextSequence(), UInt32(0))
        for _ in sets { _ = nextSequence() }
        nonisolated(unsafe) let sockets = (socket, secondSocket)  // each used by one thread only
        results.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let out = buffer  // each set's slot is written by the one thread that took it
            DispatchQueue.concurrentPerform(iterations: sets.isEmpty ? 0 : 2) { reader in
                var sequence = reader == 0 ? sequences.0 : sequences.1
                let socket = reader == 0 ? sockets.0 : sockets.1
                while case let i = next.withLock({ i in defer { i += 1 }; return i }), i < sets.count {
                    sequence &+= 1
                    out[i] = Result { () throws(KernelError) in
                        try Self.elements(of: sets[i], table: table, sequence: sequence, on: socket)
                    }
                }
            }
        }
        return try results.map { result throws(KernelError) in try result.get() }
    }

    static func elements(of set: String, table: String, sequence: UInt32, on socket: NetlinkSocket) throws(KernelError)
        -> [KernelSnapshot.ElementBytes]
    {
        var elements: [KernelSnapshot.ElementBytes] = []
        for message in try dump(NFT_MSG_GETSETELEM, table: table, set: set, sequence: sequence, on: socket) {
            let ok = message.withUnsafeBytes { ElementParser.forEachElement(in: $0) { elements.append($0) } }
            guard ok else { throw KernelError.system("cannot parse the elements of set \(set) read back from table inet \(table)", EPROTO) }
        }
        return elements
    }

    func dump(_ type: nf_tables_msg_types, table: String, set: String? = nil) throws(KernelError) -> [[UInt8]] {
        try Self.dump(type, table: table, set: set, sequence: nextSequence(), on: socket)
    }

    static func dump(_ type: nf_tables_msg_types, table: String, set: String?, sequence: UInt32, on socket: NetlinkSocket)
        throws(KernelError) -> [[UInt8]]
    {
        let reply = try request(type, flags: NLM_F_DUMP, sequence: sequence, on: socket) { nlh in
            switch type {
            case NFT_MSG_GETSET, NFT_MSG_GETSETELEM:
                let s = nftnl_set_alloc()!
                defer { nftnl_set_free(s) }
                nftnl_set_set_str(s, UInt16(NFTNL_SET_TABLE.rawValue), table)
                if let set { nftnl_set_set_str(s, UInt16(NFTNL_SET_NAME.rawValue), set) }
                if type == NFT_MSG_GETSETELEM {
                    nftnl_set_elems_nlmsg_build_payload(nlh, s)
                } else {
                    nftnl_set_nlmsg_build_payload(nlh, s)
                }
            case NFT_MSG_GETRULE:
                let r = nftnl_rule_alloc()!
                defer { nftnl_rule_free(r) }
                nftnl_rule_set_str(r, UInt16(NFTNL_RULE_TABLE.rawValue), table)
                nftnl_rule_nlmsg_build_payload(nlh, r)
            default:
                break  // GETCHAIN dumps the family; parseChain keeps our table's chains only
            }
        }
        // ENOENT mid-read: the table or a set listed a moment ago is gone (a flush or delete raced the
        // read): read again, as for an interrupted dump.
        if reply.errno == ENOENT { throw KernelError.busy("read table inet \(table)", attempts: 1) }
        if reply.errno != 0 { throw KernelError.system("cannot read back table inet \(table)", reply.errno) }
        if reply.interrupted { throw KernelError.busy("read table inet \(table)", attempts: 1) }
        return reply.messages
    }

    func withMessage<T>(_ message: [UInt8], _ body: (UnsafePointer<nlmsghdr>) -> T) -> T {
        var copy = message
        return copy.withUnsafeMutableBytes { body(UnsafePointer($0.baseAddress!.assumingMemoryBound(to: nlmsghdr.self))) }
    }

    private func parseSet(_ message: [UInt8]) -> (String, SetEncoding)? {
        withMessage(message) { nlh in
            let s = nftnl_set_alloc()!
            defer { nftnl_set_free(s) }
            guard nftnl_set_nlmsg_parse(nlh, s) >= 0 else { return nil }
            func u32(_ attr: nftnl_set_attr) -> UInt32? {
                nftnl_set_is_set(s, UInt16(attr.rawValue)) ? nftnl_set_get_u32(s, UInt16(attr.rawValue)) : nil
            }
            var len: UInt32 = 0
            var ud = UserData()
            if let data = nftnl_set_get_data(s, UInt16(NFTNL_SET_USERDATA.rawValue), &len) {
                ud = UserData(raw: Array(UnsafeRawBufferPointer(start: data, count: Int(len))))
            }
            var hasCounter = false
            _ = withUnsafeMutablePointer(to: &hasCounter) { flag in
                nftnl_set_expr_foreach(s, { expr, context in
                    if let name = nftnl_expr_get_str(expr, UInt16(NFTNL_EXPR_NAME)), String(cString: name) == "counter" {
                        context!.assumingMemoryBound(to: Bool.self).pointee = true
                    }
                    return 0
                }, flag)
            }
            let name = String(cString: nftnl_set_get_str(s, UInt16(NFTNL_SET_NAME.rawValue)))
            let dataType = u32(NFTNL_SET_DATA_TYPE)
            // The kernel reports a verdict map's data length as a register's (16); nft and we send 0.
            let dataLength = dataType == SetEncoding.verdictType ? 0 : u32(NFTNL_SET_DATA_LEN) ?? 0
            let encoding = SetEncoding(
                keyType: u32(NFTNL_SET_KEY_TYPE) ?? 0, keyLength: u32(NFTNL_SET_KEY_LEN) ?? 0,
                dataType: dataType, dataLength: dataType == nil ? nil : dataLength,
                flags: u32(NFTNL_SET_FLAGS) ?? 0, userData: ud, perElementCounter: hasCounter,
                size: u32(NFTNL_SET_DESC_SIZE))
            return (name, encoding)
        }
    }

    /// The same as ElementParser, through one libnftnl object per element: the reference the lean parser
    /// is tested against.
    static func parseElementsWithLibnftnl(_ message: [UInt8]) -> [KernelSnapshot.ElementBytes] {
        var copy = message
        return copy.withUnsafeMutableBytes { raw in
            let nlh = UnsafePointer(raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self))
            let s = nftnl_set_alloc()!
            defer { nftnl_set_free(s) }
            guard nftnl_set_elems_nlmsg_parse(nlh, s) >= 0, let it = nftnl_set_elems_iter_create(s) else { return [] }
            defer { nftnl_set_elems_iter_destroy(it) }
            var out: [KernelSnapshot.ElementBytes] = []
            // iter_next returns the current element and then advances (starting with iter_cur's
            // would read the first element twice).
            while let element = nftnl_set_elems_iter_next(it) {
                func bytes(_ attr: Int) -> PackedBytes? {
                    var len: UInt32 = 0
                    guard let p = nftnl_set_elem_get(element, UInt16(attr), &len) else { return nil }
                    return PackedBytes(UnsafeRawBufferPointer(start: p, count: Int(len)))
                }
                var item = KernelSnapshot.ElementBytes(key: bytes(NFTNL_SET_ELEM_KEY) ?? PackedBytes([]), data: bytes(NFTNL_SET_ELEM_DATA))
                if nftnl_set_elem_is_set(element, UInt16(NFTNL_SET_ELEM_VERDICT)) {
                    item.verdict = Int32(bitPattern: nftnl_set_elem_get_u32(element, UInt16(NFTNL_SET_ELEM_VERDICT)))
                    item.data = nil
                    if let chain = nftnl_set_elem_get_str(element, UInt16(NFTNL_SET_ELEM_CHAIN)) {
                        item.chain = String(cString: chain)
                    }
                }
                out.append(item)
            }
            return out
        }
    }

    private func parseChain(_ message: [UInt8], table: String) -> (String, BaseChain?)? {
        withMessage(message) { nlh in
            let c = nftnl_chain_alloc()!
            defer { nftnl_chain_free(c) }
            guard nftnl_chain_nlmsg_parse(nlh, c) >= 0,
                String(cString: nftnl_chain_get_str(c, UInt16(NFTNL_CHAIN_TABLE.rawValue))) == table
            else { return nil }
            let name = String(cString: nftnl_chain_get_str(c, UInt16(NFTNL_CHAIN_NAME.rawValue)))
            guard nftnl_chain_is_set(c, UInt16(NFTNL_CHAIN_HOOKNUM.rawValue)) else { return (name, nil) }
            let hook: BaseChain.Hook
            switch nftnl_chain_get_u32(c, UInt16(NFTNL_CHAIN_HOOKNUM.rawValue)) {
            case UInt32(NF_INET_PRE_ROUTING.rawValue): hook = .prerouting
            case UInt32(NF_INET_LOCAL_IN.rawValue): hook = .input
            case UInt32(NF_INET_LOCAL_OUT.rawValue): hook = .output
            case UInt32(NF_INET_POST_ROUTING.rawValue): hook = .postrouting
            default: hook = .forward
            }
            let kind = BaseChain.Kind(rawValue: String(cString: nftnl_chain_get_str(c, UInt16(NFTNL_CHAIN_TYPE.rawValue)))) ?? .filter
            let priority = Int(nftnl_chain_get_s32(c, UInt16(NFTNL_CHAIN_PRIO.rawValue)))
            return (name, BaseChain(kind: kind, hook: hook, priority: priority))
        }
    }

    private func parseRule(_ message: [UInt8], table: String) -> (String, KernelSnapshot.RuleState)? {
        withMessage(message) { nlh in
            let r = nftnl_rule_alloc()!
            defer { nftnl_rule_free(r) }
            guard nftnl_rule_nlmsg_parse(nlh, r) >= 0 else { return nil }
            let chain = String(cString: nftnl_rule_get_str(r, UInt16(NFTNL_RULE_CHAIN.rawValue)))
            let handle = nftnl_rule_get_u64(r, UInt16(NFTNL_RULE_HANDLE.rawValue))
            var exprs: [Expr] = []
            if let it = nftnl_expr_iter_create(r) {
                defer { nftnl_expr_iter_destroy(it) }
                while let e = nftnl_expr_iter_next(it) { exprs.append(Expr(parsing: e)) }
            }
            var comment: String?
            var len: UInt32 = 0
            if let data = nftnl_rule_get_data(r, UInt16(NFTNL_RULE_USERDATA.rawValue), &len) {
                comment = UserData.string(0, in: Array(UnsafeRawBufferPointer(start: data, count: Int(len))))
            }
            return (chain, KernelSnapshot.RuleState(handle: handle, expressions: exprs, comment: comment))
        }
    }
}
