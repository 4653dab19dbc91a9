import CNetfilter
import Foundation

/// A NETLINK_NETFILTER socket set up as NETLINK-NOTES asks: CAP_ACK (errors do not echo whole messages),
/// EXT_ACK, forced large buffers, a receive timeout so that a lost reply cannot hang us.
final class NetlinkSocket {
    private let nl: OpaquePointer
    private var receiveBuffer = [UInt8](repeating: 0, count: 1 << 20)

    init() throws(KernelError) {
        guard let nl = mnl_socket_open(NETLINK_NETFILTER) else {
            throw KernelError.system("cannot open a netfilter netlink socket", nftpool_errno())
        }
        self.nl = nl
        guard mnl_socket_bind(nl, 0, pid_t(MNL_SOCKET_AUTOPID)) >= 0 else {
            let e = nftpool_errno()
            mnl_socket_close(nl)
            throw KernelError.system("cannot bind the netlink socket", e)
        }
        var on: Int32 = 1
        _ = mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &on, socklen_t(MemoryLayout<Int32>.size))
        _ = mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &on, socklen_t(MemoryLayout<Int32>.size))
        let fd = mnl_socket_get_fd(nl)
        var size: Int32 = 16 << 20
        // FORCE needs CAP_NET_ADMIN; without it the plain options still raise the buffers some.
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
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

    /// Reads replies until every sequence number in `expected` has its ACK or error, then drains what
    /// else is queued (BATCH_END's ACK), so that nothing is left to be misread as the next answer.
    /// Returns errno per sequence (0 = ACK) and every data message received, in order.
    func collect(expected: Set<UInt32>) throws(KernelError) -> (status: [UInt32: Int32], messages: [[UInt8]]) {
        var status: [UInt32: Int32] = [:]
        var messages: [[UInt8]] = []
        while !expected.isSubset(of: Set(status.keys)) {
            let n = receiveBuffer.withUnsafeMutableBytes { mnl_socket_recvfrom(nl, $0.baseAddress, $0.count) }
            if n < 0 {
                let e = nftpool_errno()
                if e == EAGAIN || e == EWOULDBLOCK {
                    throw KernelError.system("the kernel did not answer within 10 s", e)
                }
                throw KernelError.system("cannot read the kernel's reply", e)
            }
            parse(receiveBuffer[0..<n], into: &status, &messages)
        }
        // The whole batch was processed inside sendmsg; anything else is already queued.
        while true {
            let n = receiveBuffer.withUnsafeMutableBytes {
                recv(mnl_socket_get_fd(nl), $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
            }
            if n <= 0 { break }
            parse(receiveBuffer[0..<n], into: &status, &messages)
        }
        return (status, messages)
    }

    private func parse(
        _ bytes: ArraySlice<UInt8>, into status: inout [UInt32: Int32], _ messages: inout [[UInt8]]
    ) {
        var offset = bytes.startIndex
        while offset + 16 <= bytes.endIndex {
            let length = Int(Self.u32(bytes, offset))
            guard length >= 16, offset + length <= bytes.endIndex else { break }
            let type = Self.u16(bytes, offset + 4)
            let seq = Self.u32(bytes, offset + 8)
            switch Int32(type) {
            case NLMSG_ERROR:
                let error = Int32(bitPattern: Self.u32(bytes, offset + 16))
                status[seq] = -error
            case NLMSG_DONE:
                status[seq] = status[seq] ?? 0  // a dump's end answers its request
            default:
                messages.append(Array(bytes[offset..<(offset + length)]))
            }
            offset += Int(nftpool_nlmsg_align(length))
        }
    }

    private static func u32(_ b: ArraySlice<UInt8>, _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }

    private static func u16(_ b: ArraySlice<UInt8>, _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
}
