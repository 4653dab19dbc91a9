import CNetfilter
import PoolSpec

/// ctnetlink, for `onBackendDown: close-connections`: the conntrack entries of connections that were
/// DNATed to a backend are deleted, so their clients see a reset at their next packet and reconnect at
/// once (to a healthy backend) instead of hanging on a dead one. Same socket, other subsystem. Only the
/// pool's own flows go: a flow is matched on its original destination (a frontend of the pool) as well
/// as its reply source (the backend).
extension NetfilterKernel {
    /// A backend of one pool, with the pool's frontends: only connections that came in through those
    /// frontends and were sent to this backend are that pool's.
    public struct ConnectionTarget: Sendable {
        public var address: IPAddress
        public var port: UInt16
        public var frontends: [Frontend]

        public init(address: IPAddress, port: UInt16, frontends: [Frontend]) {
            self.address = address
            self.port = port
            self.frontends = frontends
        }
    }

    /// Deletes the DNATed conntrack entries of each target: original destination one of its frontends
    /// (address, protocol, port) and reply source its backend. Another pool sharing the backend, and
    /// anyone else's DNAT to it (kube-proxy, docker), keep their connections; so do the daemon's own
    /// probes, which are not DNATed. Returns how many went per target, in order. One dump per address
    /// family serves every target of a burst.
    public func deleteConnections(to targets: [ConnectionTarget]) throws(KernelError) -> [Int] {
        var counts = [Int](repeating: 0, count: targets.count)
        for family in [IPFamily.ipv4, .ipv6] {
            let matched = try entries(of: targets, family: family)
            guard !matched.isEmpty else { continue }
            var deletes: [UInt8] = []
            var owner: [UInt32: Int] = [:]
            for (attrs, target) in matched {
                guard let orig = attrs.raw(UInt16(CTA_TUPLE_ORIG.rawValue)) else { continue }
                let s = nextSequence()
                owner[s] = target
                deletes += Self.ctMessage(UInt16(IPCTNL_MSG_CT_DELETE.rawValue), flags: UInt16(NLM_F_ACK), family: Self.af(family), seq: s, payload: orig)
            }
            let result = try exchange(deletes, sequences: Set(owner.keys))
            // ENOENT: the connection ended by itself meanwhile.
            for (s, target) in owner where (result.status[s] ?? 0) == 0 { counts[target] += 1 }
        }
        return counts
    }

    /// How many of each target's connections are still open, matched as `deleteConnections` matches them:
    /// a TCP entry in TIME_WAIT or CLOSE is a connection already over (conntrack keeps it for minutes), and
    /// is not counted. What `nftpool backend drain --wait` waits on.
    public func countConnections(to targets: [ConnectionTarget]) throws(KernelError) -> [Int] {
        var counts = [Int](repeating: 0, count: targets.count)
        for family in [IPFamily.ipv4, .ipv6] {
            for (attrs, target) in try entries(of: targets, family: family) {
                let state = attrs.nested(UInt16(CTA_PROTOINFO.rawValue))?.nested(UInt16(CTA_PROTOINFO_TCP.rawValue))?
                    .payload(UInt16(CTA_PROTOINFO_TCP_STATE.rawValue))
                if let state, state == [Self.tcpTimeWait] || state == [Self.tcpClose] { continue }
                counts[target] += 1
            }
        }
        return counts
    }

    /// TCP_CONNTRACK_TIME_WAIT and TCP_CONNTRACK_CLOSE (linux/netfilter/nf_conntrack_tcp.h).
    static let tcpTimeWait: UInt8 = 7
    static let tcpClose: UInt8 = 8

    static func af(_ family: IPFamily) -> UInt8 { UInt8(family == .ipv4 ? AF_INET : AF_INET6) }

    /// The DNATed conntrack entries of one family that belong to a target: original destination one of its
    /// frontends (address, protocol, port), reply source its backend; each with the target's index. One dump.
    func entries(of targets: [ConnectionTarget], family: IPFamily) throws(KernelError) -> [(NetlinkAttributes, Int)] {
        // (frontend address, protocol number, frontend port, backend address, backend port) ─► target
        var wanted: [[UInt8]: Int] = [:]
        for (i, t) in targets.enumerated() where t.address.family == family {
            for f in t.frontends where f.address.family == family {
                let key = f.address.bytes + [Self.protocolNumber(f.protocol)] + Self.bigEndian(f.port)
                    + t.address.bytes + Self.bigEndian(t.port)
                if wanted[key] == nil { wanted[key] = i }
            }
        }
        guard !wanted.isEmpty else { return [] }
        let (src, dst) = family == .ipv4
            ? (UInt16(CTA_IP_V4_SRC.rawValue), UInt16(CTA_IP_V4_DST.rawValue))
            : (UInt16(CTA_IP_V6_SRC.rawValue), UInt16(CTA_IP_V6_DST.rawValue))
        var matched: [(NetlinkAttributes, Int)] = []
        for attrs in try connections(Self.af(family)) {
            guard let status = attrs.bigEndianU32(UInt16(CTA_STATUS.rawValue)), status & UInt32(IPS_DST_NAT.rawValue) != 0,
                let origTuple = attrs.nested(UInt16(CTA_TUPLE_ORIG.rawValue)),
                let origIP = origTuple.nested(UInt16(CTA_TUPLE_IP.rawValue)),
                let origProto = origTuple.nested(UInt16(CTA_TUPLE_PROTO.rawValue)),
                let frontend = origIP.payload(dst),
                let protocolNumber = origProto.payload(UInt16(CTA_PROTO_NUM.rawValue)),
                let frontendPort = origProto.payload(UInt16(CTA_PROTO_DST_PORT.rawValue)),
                let replyTuple = attrs.nested(UInt16(CTA_TUPLE_REPLY.rawValue)),
                let replyIP = replyTuple.nested(UInt16(CTA_TUPLE_IP.rawValue)),
                let replyProto = replyTuple.nested(UInt16(CTA_TUPLE_PROTO.rawValue)),
                let backend = replyIP.payload(src),
                let backendPort = replyProto.payload(UInt16(CTA_PROTO_SRC_PORT.rawValue)),
                let target = wanted[frontend + protocolNumber + frontendPort + backend + backendPort]
            else { continue }
            matched.append((attrs, target))
        }
        return matched
    }

    /// The DNATed TCP connections that came in through one of `frontends` (their original destination),
    /// each as a 64-bit FNV-1a digest of its original tuple (source, source port, frontend, port): the same
    /// connection gives the same digest on every node. Split by whether conntrack has it ESTABLISHED. With
    /// `ha`, a node that resyncs checks that a sample of the master's established ones is in its own table,
    /// in whatever state (the master may hold an entry established that this node saw close). One dump
    /// per family.
    public func connectionDigests(to frontends: Set<IPAddress>) throws(KernelError) -> (established: [UInt64], other: [UInt64]) {
        var established: [UInt64] = [], other: [UInt64] = []
        for family in [IPFamily.ipv4, .ipv6] {
            let wanted = Set(frontends.filter { $0.family == family }.map(\.bytes))
            guard !wanted.isEmpty else { continue }
            let af = UInt8(family == .ipv4 ? AF_INET : AF_INET6)
            let dst = UInt16((family == .ipv4 ? CTA_IP_V4_DST : CTA_IP_V6_DST).rawValue)
            let src = UInt16((family == .ipv4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC).rawValue)
            for attrs in try connections(af) {
                guard let status = attrs.bigEndianU32(UInt16(CTA_STATUS.rawValue)), status & UInt32(IPS_DST_NAT.rawValue) != 0,
                    let origTuple = attrs.nested(UInt16(CTA_TUPLE_ORIG.rawValue)),
                    let origIP = origTuple.nested(UInt16(CTA_TUPLE_IP.rawValue)),
                    let frontend = origIP.payload(dst), wanted.contains(frontend), let client = origIP.payload(src),
                    let origProto = origTuple.nested(UInt16(CTA_TUPLE_PROTO.rawValue)),
                    origProto.payload(UInt16(CTA_PROTO_NUM.rawValue)) == [UInt8(IPPROTO_TCP)],
                    let sport = origProto.payload(UInt16(CTA_PROTO_SRC_PORT.rawValue)),
                    let dport = origProto.payload(UInt16(CTA_PROTO_DST_PORT.rawValue)),
                    let state = attrs.nested(UInt16(CTA_PROTOINFO.rawValue))?.nested(UInt16(CTA_PROTOINFO_TCP.rawValue))?
                        .payload(UInt16(CTA_PROTOINFO_TCP_STATE.rawValue))
                else { continue }
                var h: UInt64 = 0xcbf2_9ce4_8422_2325
                for byte in client + sport + frontend + dport {
                    h = (h ^ UInt64(byte)) &* 0x100_0000_01b3
                }
                if state == [3] { established.append(h) } else { other.append(h) }  // 3: TCP_CONNTRACK_ESTABLISHED
            }
        }
        return (established, other)
    }

    /// Every conntrack entry of one address family (AF_INET or AF_INET6), as its attributes.
    func connections(_ af: UInt8) throws(KernelError) -> [NetlinkAttributes] {
        let seq = nextSequence()
        let dump = Self.ctMessage(UInt16(IPCTNL_MSG_CT_GET.rawValue), flags: UInt16(NLM_F_DUMP | NLM_F_ACK), family: af, seq: seq, payload: [])
        let reply = try exchange(dump, sequences: [seq])
        if let e = reply.status[seq], e != 0 { throw KernelError.system("cannot list connections (conntrack)", e) }
        return reply.messages.map { NetlinkAttributes($0, offset: 16 + 4) }  // nlmsghdr + nfgenmsg
    }

    static func protocolNumber(_ p: L4Protocol) -> UInt8 {
        switch p {
        case .tcp: return UInt8(IPPROTO_TCP)
        case .udp: return UInt8(IPPROTO_UDP)
        }
    }

    static func bigEndian(_ port: UInt16) -> [UInt8] { [UInt8(port >> 8), UInt8(port & 0xff)] }

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
