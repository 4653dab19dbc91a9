import CNetfilter
import Foundation

/// One nftables transaction: BATCH_BEGIN, the messages, BATCH_END, laid out in one buffer so that it goes
/// to the kernel in a single sendmsg. Every message asks for an ACK and is remembered by its sequence
/// number, so a refusal can name the object it was about.
struct NetlinkBatch {
    private(set) var buffer: [UInt8] = []
    private(set) var objects: [UInt32: String] = [:]
    private(set) var messageCount = 0
    private var seq: UInt32
    private var scratch = [UInt8](repeating: 0, count: 1 << 20)

    init(firstSequence: UInt32) {
        seq = firstSequence
        appendControl { buf, s in nftnl_batch_begin(buf, s) }
    }

    var firstSequence: UInt32 { seq - UInt32(messageCount) - 1 }

    /// Adds one message; `payload` fills in its attributes.
    mutating func add(
        _ type: Int32, flags: Int32 = 0, describing object: String,
        payload: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) {
        add(type, flags: flags) { nlh -> String in
            payload(nlh)
            return object
        }
    }

    /// Adds one message whose description is known only once it is built (how many elements fit).
    mutating func add(_ type: Int32, flags: Int32 = 0, payload: (UnsafeMutablePointer<nlmsghdr>) -> String) {
        let s = seq
        var object = ""
        scratch.withUnsafeMutableBytes { raw in
            let buf = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            let nlh = nftnl_nlmsg_build_hdr(
                buf, UInt16(type), UInt16(NFPROTO_INET), UInt16(flags | NLM_F_ACK), s)!
            object = payload(nlh)
            let length = Int(nftpool_nlmsg_align(Int(nlh.pointee.nlmsg_len)))
            precondition(length <= raw.count, "one netlink message outgrew its 1 MiB buffer")
            buffer.append(contentsOf: UnsafeRawBufferPointer(start: raw.baseAddress, count: length))
        }
        objects[s] = object
        messageCount += 1
        seq += 1
    }

    mutating func finish() -> UInt32 {
        appendControl { buf, s in nftnl_batch_end(buf, s) }
        return seq
    }

    private mutating func appendControl(_ build: (UnsafeMutablePointer<CChar>, UInt32) -> UnsafeMutablePointer<nlmsghdr>?) {
        let s = seq
        scratch.withUnsafeMutableBytes { raw in
            let nlh = build(raw.baseAddress!.assumingMemoryBound(to: CChar.self), s)!
            let length = Int(nftpool_nlmsg_align(Int(nlh.pointee.nlmsg_len)))
            buffer.append(contentsOf: UnsafeRawBufferPointer(start: raw.baseAddress, count: length))
        }
        seq += 1
    }
}
