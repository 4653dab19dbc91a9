import CNetfilter
import Foundation

/// nftables' change events (the NFNLGRP_NFTABLES multicast group, what `nft monitor` reads), reduced
/// to what the daemon acts on: which transactions touched table inet <name>, and who committed them.
/// The events of one transaction arrive first and its NEWGEN message last, so a transaction is judged
/// when its NEWGEN arrives.
public final class RulesetMonitor: @unchecked Sendable {
    // @unchecked: made by the daemon's loop before its first apply (so that no change after it goes
    // unseen), then used by the one monitor thread alone.
    public enum Event: Equatable, Sendable {
        /// A transaction touched the table. `ours`: committed from our own netlink port (or, failing
        /// that, by a thread of this process).
        case changed(generation: UInt32, pid: Int32, process: String, ours: Bool)
        /// A transaction that left the table alone.
        case elsewhere(generation: UInt32)
        /// The kernel dropped events (ENOBUFS: a burst overflowed the socket buffer): the table's state
        /// is unknown and must be checked.
        case lost
    }

    private let nl: OpaquePointer
    private let table: String
    private let ownPort: UInt32?
    private var touched = false
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)

    /// Subscribes in the calling thread's network namespace.
    public init(table: String, ownPort: UInt32? = nil) throws(KernelError) {
        self.table = table
        self.ownPort = ownPort
        let nl = try NetlinkSocket.open("the nftables event socket")
        self.nl = nl
        var group = Int32(NFNLGRP_NFTABLES.rawValue)
        guard mnl_socket_setsockopt(nl, NETLINK_ADD_MEMBERSHIP, &group, socklen_t(MemoryLayout<Int32>.size)) >= 0 else {
            let e = nftpool_errno()
            mnl_socket_close(nl)
            throw KernelError.system("cannot subscribe to nftables events", e)
        }
        // Our own first apply of a large table is itself an event per element: room for bursts, and a
        // burst that still overflows is reported as `.lost`, never silently missed.
        NetlinkSocket.setReceive(mnl_socket_get_fd(nl), buffer: 32 << 20, timeout: timeval(tv_sec: 0, tv_usec: 250_000))
    }

    deinit { mnl_socket_close(nl) }

    /// Blocks up to 250 ms for events; returns the judged transactions (empty on timeout).
    public func next() -> [Event] {
        let n = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(nl, $0.baseAddress, $0.count) }
        if n < 0 {
            let e = nftpool_errno()
            if e == ENOBUFS {
                touched = false
                return [.lost]
            }
            if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return [] }
            // Anything else: say so (the daemon checks the table) and do not spin.
            usleep(100_000)
            return [.lost]
        }
        return parse(buffer[0..<n])
    }

    func parse(_ bytes: ArraySlice<UInt8>) -> [Event] {
        var events: [Event] = []
        var offset = bytes.startIndex
        while offset + 20 <= bytes.endIndex {
            let length = Int(NetlinkSocket.u32(bytes, offset))
            guard length >= 20, offset + length <= bytes.endIndex else { break }
            let type = NetlinkSocket.u16(bytes, offset + 4)
            let family = bytes[offset + 16]
            let port = NetlinkSocket.u32(bytes, offset + 12)
            let message = Array(bytes[offset..<(offset + length)])
            offset += Int(nftpool_nlmsg_align(length))
            guard type >> 8 == UInt16(NFNL_SUBSYS_NFTABLES) else { continue }
            let attrs = NetlinkAttributes(message, offset: 20)
            if type & 0xff == UInt16(NFT_MSG_NEWGEN.rawValue) {
                let generation = attrs.bigEndianU32(UInt16(NFTA_GEN_ID.rawValue)) ?? 0
                let pid = Int32(bitPattern: attrs.bigEndianU32(UInt16(NFTA_GEN_PROC_PID.rawValue)) ?? 0)
                let name = attrs.payload(UInt16(NFTA_GEN_PROC_NAME.rawValue)).map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } ?? "?"
                events.append(touched
                    ? .changed(generation: generation, pid: pid, process: name, ours: port == ownPort || Self.isOurThread(pid))
                    : .elsewhere(generation: generation))
                touched = false
                continue
            }
            // Every object message names its table in attribute 1 (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE,
            // NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE, NFTA_RULE_TABLE, NFTA_OBJ_TABLE ...).
            guard family == UInt8(NFPROTO_INET), let name = attrs.payload(1) else { continue }
            if String(decoding: name.prefix { $0 != 0 }, as: UTF8.self) == table { touched = true }
        }
        return events
    }

    /// The kernel names the committing thread (task pid), not the process.
    static func isOurThread(_ pid: Int32) -> Bool {
        pid > 0 && access("/proc/self/task/\(pid)", F_OK) == 0
    }
}
