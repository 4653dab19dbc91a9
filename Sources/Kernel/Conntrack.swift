import CNetfilter
import PoolSpec

/// ctnetlink, for `onBackendDown: close-connections`: the conntrack entries of connections that were
/// DNATed to a backend are deleted, so their clients see a reset at their next packet and reconnect at
/// once (to a healthy backend) instead of hanging on a dead one. Same socket, other subsystem.
extension NetfilterKernel {
    /// Deletes every DNATed conntrack entry whose reply comes from one of `backends` (connections sent
    /// to them through a frontend) and returns how many went per backend (`Backend.endpoint` text). The
    /// daemon's own probe connections and anything else reaching the backend directly are not DNATed and
    /// stay. One dump per address family serves every backend of a burst.
    public func deleteConnections(to backends: [(address: IPAddress, port: UInt16)]) throws(KernelError) -> [String: Int] {
        var counts: [String: Int] = [:]
        for family in [IPFamily.ipv4, .ipv6] {
            let wanted = Dictionary(
                backends.filter { $0.address.family == family }.map { ($0.address.bytes + [UInt8($0.port >> 8), UInt8($0.port & 0xff)], Backend.endpoint($0.address, $0.port)) },
                uniquingKeysWith: { a, _ in a })
            guard !wanted.isEmpty else { continue }
            let af = UInt8(family == .ipv4 ? AF_INET : AF_INET6)
            let seq = nextSequence()
            let dump = Self.ctMessage(UInt16(IPCTNL_MSG_CT_GET.rawValue), flags: UInt16(NLM_F_DUMP | NLM_F_ACK), family: af, seq: seq, payload: [])
            let reply = try exchange(dump, sequences: [seq])
            if let e = reply.status[seq], e != 0 { throw KernelError.system("cannot list connections (conntrack)", e) }

            var deletes: [UInt8] = []
            var owner: [UInt32: String] = [:]
            for message in reply.messages {
                let attrs = NetlinkAttributes(message, offset: 16 + 4)  // nlmsghdr + nfgenmsg
                guard let status = attrs.bigEndianU32(UInt16(CTA_STATUS.rawValue)), status & UInt32(IPS_DST_NAT.rawValue) != 0,
                    let orig = attrs.raw(UInt16(CTA_TUPLE_ORIG.rawValue)),
                    let replyTuple = attrs.nested(UInt16(CTA_TUPLE_REPLY.rawValue)),
                    let ip = replyTuple.nested(UInt16(CTA_TUPLE_IP.rawValue)),
                    let proto = replyTuple.nested(UInt16(CTA_TUPLE_PROTO.rawValue)),
                    let source = ip.payload(UInt16(family == .ipv4 ? CTA_IP_V4_SRC.rawValue : CTA_IP_V6_SRC.rawValue)),
                    let sourcePort = proto.payload(UInt16(CTA_PROTO_SRC_PORT.rawValue)),
                    let endpoint = wanted[source + sourcePort]
                else { continue }
                let s = nextSequence()
                owner[s] = endpoint
                deletes += Self.ctMessage(UInt16(IPCTNL_MSG_CT_DELETE.rawValue), flags: UInt16(NLM_F_ACK), family: af, seq: s, payload: orig)
            }
            for endpoint in wanted.values { counts[endpoint] = counts[endpoint] ?? 0 }
            guard !deletes.isEmpty else { continue }
            let result = try exchange(deletes, sequences: Set(owner.keys))
            // ENOENT: the connection ended by itself meanwhile.
            for (s, endpoint) in owner where (result.status[s] ?? 0) == 0 { counts[endpoint, default: 0] += 1 }
        }
        return counts
    }

    /// One ctnetlink message: nlmsghdr, nfgenmsg, then the given attribute bytes.
    static func ctMessage(_ type: UInt16, flags: UInt16, family: UInt8, seq: UInt32, payload: [UInt8]) -> [UInt8] {
        var m: [UInt8] = []
        func u16(_ v: UInt16) { m += [UInt8(v & 0xff), UInt8(v >> 8)] }
        func u32(_ v: UInt32) { m += [0, 8, 16, 24].map { UInt8((v >> UInt32($0)) & 0xff) } }
        u32(UInt32(16 + 4 + payload.count))
        u16(UInt16(NFNL_SUBSYS_CTNETLINK) << 8 | type)
        u16(UInt16(NLM_F_REQUEST) | flags)
        u32(seq)
        u32(0)
        m += [family, UInt8(NFNETLINK_V0), 0, 0]
        return m + payload
    }
}

/// A read-only walk over netlink attributes (length, type, payload padded to 4 bytes).
struct NetlinkAttributes {
    let bytes: [UInt8]
    let start: Int
    let end: Int

    init(_ bytes: [UInt8], offset: Int, end: Int? = nil) {
        self.bytes = bytes
        start = offset
        self.end = min(end ?? bytes.count, bytes.count)
    }

    /// (type without flags, offset of the attribute, its length including the header)
    private func find(_ type: UInt16) -> (Int, Int)? {
        var i = start
        while i + 4 <= end {
            let len = Int(bytes[i]) | Int(bytes[i + 1]) << 8
            let t = (UInt16(bytes[i + 2]) | UInt16(bytes[i + 3]) << 8) & 0x3fff
            guard len >= 4, i + len <= end else { return nil }
            if t == type { return (i, len) }
            i += (len + 3) & ~3
        }
        return nil
    }

    /// The whole attribute, header included (to send it back as it came).
    func raw(_ type: UInt16) -> [UInt8]? {
        guard let (i, len) = find(type) else { return nil }
        return Array(bytes[i..<(i + len)])
    }

    func payload(_ type: UInt16) -> [UInt8]? {
        guard let (i, len) = find(type) else { return nil }
        return Array(bytes[(i + 4)..<(i + len)])
    }

    /// A 32-bit attribute in network byte order, as ctnetlink sends its numbers.
    func bigEndianU32(_ type: UInt16) -> UInt32? {
        guard let p = payload(type), p.count == 4 else { return nil }
        return p.reduce(0) { $0 << 8 | UInt32($1) }
    }

    func nested(_ type: UInt16) -> NetlinkAttributes? {
        guard let (i, len) = find(type) else { return nil }
        return NetlinkAttributes(bytes, offset: i + 4, end: i + len)
    }
}
