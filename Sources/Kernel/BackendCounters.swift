import CNetfilter
import PoolSpec
import Ruleset

/// Per-element packet and byte counters of counted sets, read at the time of asking (for `status` and
/// metrics), decoded by the declarations the caller gives: which sets count what is Ruleset's business.
extension NetfilterKernel {
    public struct Counter: Equatable, Sendable {
        public var packets: UInt64
        public var bytes: UInt64

        public init(packets: UInt64, bytes: UInt64) {
            self.packets = packets
            self.bytes = bytes
        }
    }

    /// Each named set's elements with their counters; nil when the table does not exist.
    public func counters(of table: String, sets: [NamedSet]) throws(KernelError) -> [String: [(element: Element, counter: Counter)]]? {
        guard try tableComment(table) != nil else { return nil }
        var out: [String: [(element: Element, counter: Counter)]] = [:]
        for set in sets {
            var list: [(element: Element, counter: Counter)] = []
            for message in try dump(NFT_MSG_GETSETELEM, table: table, set: set.name) {
                for (key, counter) in parseCounters(message) {
                    let bytes = KernelSnapshot.ElementBytes(key: PackedBytes(key), data: nil)
                    if let element = ElementDecoding.element(bytes, of: set) { list.append((element, counter)) }
                }
            }
            out[set.name] = list
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
                guard let p = nftnl_set_elem_get(element, UInt16(NFTNL_SET_ELEM_KEY), &len), len <= PackedBytes.capacity else { continue }
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
