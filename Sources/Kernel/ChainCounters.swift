import CNetfilter

/// The packets and bytes counted by each chain's `counter` expressions, read at the time of asking: a
/// pool chain's dnat rule counts the pool's new connections (nat chains see a connection's first
/// packet only). For metrics.
extension NetfilterKernel {
    /// Summed per chain of table inet `table`; nil when the table does not exist.
    public func chainCounters(of table: String) throws(KernelError) -> [String: Counter]? {
        guard try tableComment(table) != nil else { return nil }
        var out: [String: Counter] = [:]
        for message in try dump(NFT_MSG_GETRULE, table: table) {
            guard let (chain, counter) = parseRuleCounter(message) else { continue }
            out[chain, default: Counter(packets: 0, bytes: 0)].packets += counter.packets
            out[chain, default: Counter(packets: 0, bytes: 0)].bytes += counter.bytes
        }
        return out
    }

    private func parseRuleCounter(_ message: [UInt8]) -> (String, Counter)? {
        withMessage(message) { nlh in
            let r = nftnl_rule_alloc()!
            defer { nftnl_rule_free(r) }
            guard nftnl_rule_nlmsg_parse(nlh, r) >= 0, let chain = nftnl_rule_get_str(r, UInt16(NFTNL_RULE_CHAIN.rawValue)),
                let it = nftnl_expr_iter_create(r)
            else { return nil }
            defer { nftnl_expr_iter_destroy(it) }
            var counter: Counter?
            while let e = nftnl_expr_iter_next(it) {
                guard let name = nftnl_expr_get_str(e, UInt16(NFTNL_EXPR_NAME)), String(cString: name) == "counter" else { continue }
                counter = Counter(
                    packets: (counter?.packets ?? 0) + nftnl_expr_get_u64(e, UInt16(NFTNL_EXPR_CTR_PACKETS)),
                    bytes: (counter?.bytes ?? 0) + nftnl_expr_get_u64(e, UInt16(NFTNL_EXPR_CTR_BYTES)))
            }
            return counter.map { (String(cString: chain), $0) }
        }
    }
}
