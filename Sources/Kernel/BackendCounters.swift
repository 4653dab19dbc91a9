import CNetfilter
import PoolSpec
import Ruleset

/// The per-backend packet and byte counters of the `backends-v4`/`backends-v6` sets (counted after DNAT,
/// in forward and output), for `nftpool status`.
extension NetfilterKernel {
    public struct Counter: Equatable, Sendable {
        public var packets: UInt64
        public var bytes: UInt64
    }

    /// Counters per backend endpoint (`10.0.0.1:80`, `[fd00::1]:80`), summed over protocols; nil when the
    /// table does not exist.
    public func backendCounters(of table: String) throws(KernelError) -> [String: Counter]? {
        guard try tableComment(table) != nil else { return nil }
        var out: [String: Counter] = [:]
        for set in ["backends-v4", "backends-v6"] {
            for message in try dump(NFT_MSG_GETSETELEM, table: table, set: set) {
                for (key, counter) in parseCounters(message) {
                    // key: address . inet_proto (padded to 4) . inet_service (padded to 4)
                    guard key.count == 12 || key.count == 24 else { continue }
                    let addressLength = key.count - 8
                    let endpoint = Self.endpoint(address: key[0..<addressLength], port: key[(addressLength + 4)...])
                    out[endpoint, default: Counter(packets: 0, bytes: 0)].packets += counter.packets
                    out[endpoint, default: Counter(packets: 0, bytes: 0)].bytes += counter.bytes
                }
            }
        }
        return out
    }

    private func parseCounters(_ message: [UInt8]) -> [([UInt8], Counter)] {
        withMessage(message) { nlh in
            let s = nftnl_set_alloc()!
            defer { nftnl_set_free(s) }
            guard nftnl_set_elems_nlmsg_parse(nlh, s) >= 0, let it = nftnl_set_elems_iter_create(s) else { return [] }
            defer { nftnl_set_elems_iter_destroy(it) }
            var out: [([UInt8], Counter)] = []
            while let element = nftnl_set_elems_iter_next(it) {
                var len: UInt32 = 0
                guard let p = nftnl_set_elem_get(element, UInt16(NFTNL_SET_ELEM_KEY), &len) else { continue }
                let key = Array(UnsafeRawBufferPointer(start: p, count: Int(len)))
                var counter = Counter(packets: 0, bytes: 0)
                _ = withUnsafeMutablePointer(to: &counter) { target in
                    nftnl_set_elem_expr_foreach(element, { expr, context in
                        guard let name = nftnl_expr_get_str(expr, UInt16(NFTNL_EXPR_NAME)), String(cString: name) == "counter"
                        else { return 0 }
                        let c = context!.assumingMemoryBound(to: Counter.self)
                        c.pointee.packets = nftnl_expr_get_u64(expr, UInt16(NFTNL_EXPR_CTR_PACKETS))
                        c.pointee.bytes = nftnl_expr_get_u64(expr, UInt16(NFTNL_EXPR_CTR_BYTES))
                        return 0
                    }, target)
                }
                out.append((key, counter))
            }
            return out
        }
    }
}
