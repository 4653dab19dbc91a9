import CNetfilter
import Foundation
import PoolSpec

/// What the kernel saw a backend do to a client's connection (passive health): the packets nftpool's
/// passive rules log to an NFLOG group, reduced to the backend they accuse.
public struct PassiveSignal: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// A TCP reset from the backend to a connection that never got established.
        case reset
        /// ICMP / ICMPv6 destination unreachable (with its code) from or about the backend.
        case unreachable(code: UInt8)
    }

    public var address: IPAddress
    public var port: UInt16
    public var kind: Kind

    public init(address: IPAddress, port: UInt16, kind: Kind) {
        self.address = address
        self.port = port
        self.kind = kind
    }

    public var reason: String {
        switch kind {
        case .reset: return "passive: connection reset by the backend"
        case .unreachable(let code): return "passive: destination unreachable (ICMP code \(code))"
        }
    }
}

/// nfnetlink_log: binds one NFLOG group (the table's, `RulesetBuilder.passiveLogGroup`) and turns each
/// logged packet into a PassiveSignal. The kernel rule already chose the packets (reply direction of a
/// DNATed flow, from a passive pool's backend, rate-limited); this only reads their headers. One group has
/// one listener per network namespace: a second daemon for the same table is refused by its lock first.
public final class PassiveHealthListener: @unchecked Sendable {
    // @unchecked: made by the daemon's loop, then read by one listener thread alone.
    private let nl: OpaquePointer
    public let group: UInt16
    private var buffer = [UInt8](repeating: 0, count: 1 << 18)

    /// Binds `group` in the calling thread's network namespace, copying `snaplen` bytes of each packet.
    public init(group: UInt16, snaplen: UInt32 = 128) throws(KernelError) {
        self.group = group
        nl = try NetlinkSocket.open("the NFLOG socket")
        NetlinkSocket.setReceive(mnl_socket_get_fd(nl), buffer: 4 << 20, timeout: timeval(tv_sec: 0, tv_usec: 250_000))
        // Bind the group, then ask for packet copies. Each is acknowledged (EBUSY: another listener has it).
        // A throw from here on still runs deinit, which closes the socket.
        try configure([Self.attribute(UInt16(NFULA_CFG_CMD.rawValue), [UInt8(NFULNL_CFG_CMD_BIND.rawValue)])], seq: 1, what: "bind NFLOG group \(group)")
        let range = [UInt8(snaplen >> 24 & 0xff), UInt8(snaplen >> 16 & 0xff), UInt8(snaplen >> 8 & 0xff), UInt8(snaplen & 0xff)]
        try configure([Self.attribute(UInt16(NFULA_CFG_MODE.rawValue), range + [UInt8(NFULNL_COPY_PACKET), 0])], seq: 2, what: "set the NFLOG copy mode")
        // Each packet at once: by default the kernel batches up to 100 packets or one second, and a backend's
        // first reset would reach us a second late (measured: a killed server was found by its probes first).
        try configure([Self.attribute(UInt16(NFULA_CFG_QTHRESH.rawValue), [0, 0, 0, 1])], seq: 4, what: "set the NFLOG queue threshold")
        // With each packet its conntrack entry: the reply tuple names the backend on every path. The packet's
        // own source does not: a reply generated on this host is un-NATed before the input hook sees it.
        // Kernels without CONFIG_NETFILTER_NETLINK_GLUE_CT (this test machine's) refuse it (EOPNOTSUPP): then
        // the packet's headers name the backend, which holds for every backend on another host.
        let flags = UInt16(NFULNL_CFG_F_CONNTRACK)
        do {
            try configure([Self.attribute(UInt16(NFULA_CFG_FLAGS.rawValue), [UInt8(flags >> 8), UInt8(flags & 0xff)])], seq: 3, what: "ask NFLOG for conntrack entries")
            withConntrack = true
        } catch {
            withConntrack = false
        }
    }

    /// Whether each packet comes with its conntrack entry (see init).
    public private(set) var withConntrack = false

    deinit { mnl_socket_close(nl) }

    /// Blocks up to 250 ms; the signals of the packets that arrived (empty on timeout).
    public func next() -> [PassiveSignal] {
        let n = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(nl, $0.baseAddress, $0.count) }
        if n < 0 {
            let e = nftpool_errno()
            // ENOBUFS: a flood overflowed the socket; the rule's rate limit bounds it, and what was lost
            // is more of the same. Anything else: do not spin.
            if e != EAGAIN && e != EWOULDBLOCK && e != EINTR && e != ENOBUFS { usleep(100_000) }
            return []
        }
        return Self.parse(Array(buffer[0..<n]))
    }

    /// The signals in a buffer of NFULNL_MSG_PACKET messages.
    static func parse(_ bytes: [UInt8]) -> [PassiveSignal] {
        var signals: [PassiveSignal] = []
        var offset = 0
        while offset + 20 <= bytes.count {
            let length = Int(NetlinkSocket.u32(bytes[...], offset))
            guard length >= 20, offset + length <= bytes.count else { break }
            let type = NetlinkSocket.u16(bytes[...], offset + 4)
            defer { offset += Int(nftpool_nlmsg_align(length)) }
            guard type == UInt16(NFNL_SUBSYS_ULOG) << 8 | UInt16(NFULNL_MSG_PACKET.rawValue) else { continue }
            let attrs = NetlinkAttributes(bytes, offset: offset + 20, end: offset + length)
            guard let packet = attrs.payload(UInt16(NFULA_PAYLOAD.rawValue)), var s = signal(inPacket: packet) else { continue }
            if let backend = attrs.nested(UInt16(NFULA_CT.rawValue)).flatMap(replySource) {
                s.address = backend.0
                s.port = backend.1
            }
            signals.append(s)
        }
        return signals
    }

    /// The reply tuple's source of a conntrack entry (ctnetlink attributes): where the flow was DNATed to.
    static func replySource(_ ct: NetlinkAttributes) -> (IPAddress, UInt16)? {
        guard let reply = ct.nested(UInt16(CTA_TUPLE_REPLY.rawValue)),
            let ip = reply.nested(UInt16(CTA_TUPLE_IP.rawValue)),
            let address = ip.payload(UInt16(CTA_IP_V4_SRC.rawValue)) ?? ip.payload(UInt16(CTA_IP_V6_SRC.rawValue)),
            address.count == 4 || address.count == 16,
            let port = reply.nested(UInt16(CTA_TUPLE_PROTO.rawValue))?.payload(UInt16(CTA_PROTO_SRC_PORT.rawValue)), port.count == 2
        else { return nil }
        return (IPAddress(bytes: address), UInt16(port[0]) << 8 | UInt16(port[1]))
    }

    /// Reads a logged packet from its network header: the backend is the source of a TCP reset, and the
    /// destination of the packet an ICMP error quotes.
    public static func signal(inPacket p: [UInt8]) -> PassiveSignal? {
        guard let first = p.first else { return nil }
        func port(_ i: Int) -> UInt16? { i + 2 <= p.count ? UInt16(p[i]) << 8 | UInt16(p[i + 1]) : nil }
        switch first >> 4 {
        case 4:
            let ihl = Int(first & 0x0f) * 4
            guard ihl >= 20, p.count >= ihl + 4 else { return nil }
            switch p[9] {
            case 6:  // TCP: the reset's source
                guard p.count >= ihl + 14, p[ihl + 13] & 0x04 != 0, let sport = port(ihl) else { return nil }
                return PassiveSignal(address: IPAddress(bytes: Array(p[12..<16])), port: sport, kind: .reset)
            case 1:  // ICMP destination unreachable: the quoted packet's destination
                let inner = ihl + 8
                guard p[ihl] == 3, p.count >= inner + 20, p[inner] >> 4 == 4 else { return nil }
                let innerIHL = Int(p[inner] & 0x0f) * 4
                guard let dport = port(inner + innerIHL + 2) else { return nil }
                return PassiveSignal(address: IPAddress(bytes: Array(p[(inner + 16)..<(inner + 20)])), port: dport, kind: .unreachable(code: p[ihl + 1]))
            default:
                return nil
            }
        case 6:
            guard p.count >= 44 else { return nil }
            switch p[6] {
            case 6:
                guard p.count >= 54, p[53] & 0x04 != 0, let sport = port(40) else { return nil }
                return PassiveSignal(address: IPAddress(bytes: Array(p[8..<24])), port: sport, kind: .reset)
            case 58:
                let inner = 48
                guard p[40] == 1, p.count >= inner + 40, p[inner] >> 4 == 6, let dport = port(inner + 40 + 2) else { return nil }
                return PassiveSignal(address: IPAddress(bytes: Array(p[(inner + 24)..<(inner + 40)])), port: dport, kind: .unreachable(code: p[41]))
            default:
                return nil
            }
        default:
            return nil
        }
    }

    private func configure(_ attributes: [[UInt8]], seq: UInt32, what: String) throws(KernelError) {
        let payload = attributes.flatMap { $0 }
        var m: [UInt8] = []
        func u16(_ v: UInt16) { m += [UInt8(v & 0xff), UInt8(v >> 8)] }
        func u32(_ v: UInt32) { m += [0, 8, 16, 24].map { UInt8((v >> UInt32($0)) & 0xff) } }
        u32(UInt32(16 + 4 + payload.count))
        u16(UInt16(NFNL_SUBSYS_ULOG) << 8 | UInt16(NFULNL_MSG_CONFIG.rawValue))
        u16(UInt16(NLM_F_REQUEST | NLM_F_ACK))
        u32(seq)
        u32(0)
        // nfgenmsg: AF_UNSPEC, version, the group in network byte order as res_id.
        m += [UInt8(AF_UNSPEC), UInt8(NFNETLINK_V0), UInt8(group >> 8), UInt8(group & 0xff)]
        m += payload
        let sent = m.withUnsafeBytes { mnl_socket_sendto(nl, $0.baseAddress, $0.count) }
        guard sent >= 0 else { throw KernelError.system("cannot \(what)", nftpool_errno()) }
        // The acknowledgement: an NLMSG_ERROR carrying 0 or -errno. Packets may already be queued before it.
        for _ in 0..<64 {
            let n = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(nl, $0.baseAddress, $0.count) }
            guard n >= 0 else { throw KernelError.system("cannot \(what) (no answer)", nftpool_errno()) }
            var offset = 0
            while offset + 16 <= n {
                let length = Int(NetlinkSocket.u32(buffer[...], offset))
                guard length >= 16, offset + length <= n else { break }
                if NetlinkSocket.u16(buffer[...], offset + 4) == UInt16(NLMSG_ERROR), NetlinkSocket.u32(buffer[...], offset + 8) == seq, offset + 20 <= n {
                    let code = Int32(bitPattern: NetlinkSocket.u32(buffer[...], offset + 16))
                    if code == 0 { return }
                    throw KernelError.system("cannot \(what)", -code)
                }
                offset += Int(nftpool_nlmsg_align(length))
            }
        }
        throw KernelError.system("cannot \(what) (no acknowledgement)", EPROTO)
    }

    static func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let length = 4 + payload.count
        var a = [UInt8(length & 0xff), UInt8(length >> 8), UInt8(type & 0xff), UInt8(type >> 8)] + payload
        while a.count % 4 != 0 { a.append(0) }
        return a
    }
}
