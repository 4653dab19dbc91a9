import CNetfilter
import Foundation

/// A NETLINK_NETFILTER socket set up as NETLINK-NOTES asks: CAP_ACK (errors do not echo whole messages),
/// EXT_ACK, forced large buffers, a receive timeout so that a lost reply cannot hang us.
final class NetlinkSocket {
    private let nl: OpaquePointer
    private var receiveBuffer = [UInt8](repeating: 0, count: 1 << 20)

    init() throws(KernelError) {
        nl = try Self.open("a netfilter netlink socket")
        var on: Int32 = 1
        _ = mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &on, socklen_t(MemoryLayout<Int32>.size))
        _ = mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &on, socklen_t(MemoryLayout<Int32>.size))
        Self.setReceive(mnl_socket_get_fd(nl), buffer: 16 << 20, timeout: timeval(tv_sec: 10, tv_usec: 0))
    }

    /// A NETLINK_NETFILTER socket bound to a port of the kernel's choosing (`what` names it in errors).
    static func open(_ what: String) throws(KernelError) -> OpaquePointer {
        guard let nl = mnl_socket_open(NETLINK_NETFILTER) else {
            throw KernelError.system("cannot open \(what)", nftpool_errno())
        }
        guard mnl_socket_bind(nl, 0, pid_t(MNL_SOCKET_AUTOPID)) >= 0 else {
            let e = nftpool_errno()
            mnl_socket_close(nl)
            throw KernelError.system("cannot bind \(what)", e)
        }
        return nl
    }

    /// A large receive buffer (FORCE needs CAP_NET_ADMIN; without it the plain option still raises it
    /// some) and a receive timeout, so that a lost reply cannot hang us.
    static func setReceive(_ fd: Int32, buffer: Int32, timeout: timeval) {
        var size = buffer
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var t = timeout
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { mnl_socket_close(nl) }

    var portID: UInt32 { mnl_socket_get_portid(nl) }

    func send(_ bytes: [UInt8]) throws(KernelError) {
        let fd = mnl_socket_get_fd(nl)
        var size = Int32(min(bytes.count + (1 << 16), Int(Int32.max)))
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        let sent = bytes.withUnsafeBytes { mnl_socket_sendto(nl, $0.baseAddress, $0.count) }
        guard sent == bytes.count else {
            throw KernelError.system("cannot send \(bytes.count) bytes to the kernel", nftpool_errno())
        }
    }

    /// What came back for one exchange.
    struct Replies {
        /// errno per sequence (0 = ACK, or the end of a dump).
        var status: [UInt32: Int32] = [:]
        /// Data messages answering our sequences, in order.
        var messages: [[UInt8]] = []
        /// The extended ACK of an NLMSG_ERROR, where the kernel gave one.
        var extAcks: [UInt32: ExtAck] = [:]
        /// Dumps that the kernel marked NLM_F_DUMP_INTR: the ruleset changed while they ran.
        var interrupted: Set<UInt32> = []
    }

    /// NLMSGERR_ATTR_MSG and NLMSGERR_ATTR_OFFS: the kernel's words and the byte offset, from the start
    /// of the refused message, of the attribute it objected to.
    struct ExtAck: Equatable {
        var message: String?
        var offset: UInt32?
    }

    /// Reads replies until every sequence number in `expected` has its ACK or error (or `abortOn` has an
    /// error: the kernel dropped the rest of the batch), then drains what else is queued (BATCH_END's
    /// ACK), so that nothing is left to be misread as the next answer.
    func collect(expected: Set<UInt32>, abortOn: UInt32? = nil) throws(KernelError) -> Replies {
        var replies = Replies()
        let port = portID
        let accepted = abortOn.map { expected.union([$0]) } ?? expected
        func done() -> Bool {
            if let abortOn, let e = replies.status[abortOn], e != 0 { return true }
            return expected.allSatisfy { replies.status[$0] != nil }
        }
        while !done() {
            let n = receiveBuffer.withUnsafeMutableBytes { mnl_socket_recvfrom(nl, $0.baseAddress, $0.count) }
            if n < 0 {
                let e = nftpool_errno()
                if e == EAGAIN || e == EWOULDBLOCK {
                    throw KernelError.system("the kernel did not answer within 10 s", e)
                }
                throw KernelError.system("cannot read the kernel's reply", e)
            }
            Self.parse(receiveBuffer[0..<n], port: port, expected: accepted, into: &replies)
        }
        // The whole batch was processed inside sendmsg; anything else is already queued.
        while true {
            let n = receiveBuffer.withUnsafeMutableBytes {
                recv(mnl_socket_get_fd(nl), $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
            }
            if n <= 0 { break }
            Self.parse(receiveBuffer[0..<n], port: port, expected: accepted, into: &replies)
        }
        return replies
    }

    /// One datagram's messages into `replies`. Only messages addressed to our port (or from the kernel
    /// with port 0) that answer a sequence we asked about count: anything else is someone else's answer
    /// and must not be taken for ours.
    static func parse(_ bytes: ArraySlice<UInt8>, port: UInt32, expected: Set<UInt32>, into replies: inout Replies) {
        var offset = bytes.startIndex
        while offset + 16 <= bytes.endIndex {
            let length = Int(u32(bytes, offset))
            guard length >= 16, offset + length <= bytes.endIndex else { break }
            defer { offset += Int(nftpool_nlmsg_align(length)) }
            let type = u16(bytes, offset + 4)
            let flags = Int32(u16(bytes, offset + 6))
            let seq = u32(bytes, offset + 8)
            let pid = u32(bytes, offset + 12)
            guard pid == 0 || pid == port, expected.contains(seq) else { continue }
            if flags & NLM_F_DUMP_INTR != 0 { replies.interrupted.insert(seq) }
            switch Int32(type) {
            case NLMSG_ERROR:
                guard length >= 20 else { continue }
                replies.status[seq] = -Int32(bitPattern: u32(bytes, offset + 16))
                if let ack = extAck(bytes[offset..<(offset + length)], flags: flags) { replies.extAcks[seq] = ack }
            case NLMSG_DONE:
                replies.status[seq] = replies.status[seq] ?? 0  // a dump's end answers its request
            default:
                replies.messages.append(Array(bytes[offset..<(offset + length)]))
            }
        }
    }

    /// The TLVs after an NLMSG_ERROR's echoed request: only its header with CAP_ACK (NLM_F_CAPPED),
    /// the whole request otherwise.
    static func extAck(_ message: ArraySlice<UInt8>, flags: Int32) -> ExtAck? {
        guard flags & NLM_F_ACK_TLVS != 0 else { return nil }
        let inner = message.startIndex + 20
        guard inner + 16 <= message.endIndex else { return nil }
        let echoed = flags & NLM_F_CAPPED != 0 ? 16 : Int(u32(message, inner))
        var i = inner + Int(nftpool_nlmsg_align(echoed))
        var ack = ExtAck()
        while i + 4 <= message.endIndex {
            let len = Int(u16(message, i)), type = u16(message, i + 2) & 0x3fff
            guard len >= 4, i + len <= message.endIndex else { break }
            let payload = message[(i + 4)..<(i + len)]
            switch UInt32(type) {
            case NLMSGERR_ATTR_MSG.rawValue:
                ack.message = String(decoding: payload.prefix { $0 != 0 }, as: UTF8.self)
            case NLMSGERR_ATTR_OFFS.rawValue where payload.count == 4:
                ack.offset = u32(payload, payload.startIndex)
            default:
                break
            }
            i += (len + 3) & ~3
        }
        return ack.message == nil && ack.offset == nil ? nil : ack
    }

    /// Netlink headers are host order (little-endian here).
    static func u32(_ b: ArraySlice<UInt8>, _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }

    static func u16(_ b: ArraySlice<UInt8>, _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
}
