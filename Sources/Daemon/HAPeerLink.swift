import Foundation
import HAConfig
import NIOConcurrencyHelpers
import PoolSpec

/// The beats between nodes' daemons: one UDP socket bound to this node's sync address, port
/// `HAConfig.peerPort`, sending to every other node's sync address. A thread of its own receives; sending
/// never blocks (a full socket buffer drops the beat, the next one follows). Until the sync address
/// exists (the link is not up yet), binding is retried at each send.
final class HAPeerLink: Sendable {
    private let fd: Int32
    private let local: HANode
    private let peers: [HANode]
    private let bound = NIOLockedValueBox(false)

    init(ha: HA, node: HANode) throws {
        local = node
        peers = ha.nodes.filter { $0.name != node.name }
        let family = node.syncAddress.family == .ipv4 ? AF_INET : AF_INET6
        fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HAPeerLinkError("cannot open a UDP socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = bind()
    }

    deinit { close(fd) }

    /// Binds once the address is there; false until then.
    @discardableResult
    func bind() -> Bool {
        if bound.withLockedValue({ $0 }) { return true }
        let ok = SocketAddress.with(local.syncAddress, port: UInt16(HAConfig.peerPort)) { sa, len in
            Foundation.bind(fd, sa, len) == 0
        }
        if ok { bound.withLockedValue { $0 = true } }
        return ok
    }

    func send(_ beat: HAPeerBeat) {
        guard bind() else { return }
        let bytes = beat.encoded()
        for peer in peers {
            _ = SocketAddress.with(peer.syncAddress, port: UInt16(HAConfig.peerPort)) { sa, len in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT), sa, len) }
            }
        }
    }

    /// Delivers every valid beat from a peer's sync address, with how long ago the kernel received it (a
    /// beat that queued while this process was stopped is old news), for the process's life.
    func receive(_ deliver: @escaping @Sendable (HAPeerBeat, Duration) -> Void) {
        let fd = self.fd
        let senders = Set(peers.map(\.syncAddress))
        Thread {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            var from = sockaddr_storage()
            while true {
                var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = buffer.withUnsafeMutableBytes { b in
                    withUnsafeMutablePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &len) }
                    }
                }
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    // Not bound yet (the sync address is missing): wait for the sender to bind.
                    usleep(100_000)
                    continue
                }
                guard let source = SocketAddress.address(of: from), senders.contains(source),
                    let beat = HAPeerBeat.decode(Array(buffer[0..<n]))
                else { continue }
                // SIOCGSTAMP (0x8906): the kernel's receive time of the last datagram, wall clock.
                var stamp = timeval()
                var age = Duration.zero
                if ioctl(fd, 0x8906, &stamp) == 0 {
                    var now = timespec()
                    clock_gettime(CLOCK_REALTIME, &now)
                    let ns = (Int64(now.tv_sec) - Int64(stamp.tv_sec)) * 1_000_000_000 + Int64(now.tv_nsec) - Int64(stamp.tv_usec) * 1000
                    age = .nanoseconds(max(0, ns))
                }
                deliver(beat, age)
            }
        }.start()
    }
}

struct HAPeerLinkError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
