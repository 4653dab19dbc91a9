import CNetfilter
import Foundation

/// One nftables transaction: BATCH_BEGIN, the messages, BATCH_END, laid out in one buffer so that it goes
/// to the kernel in a single sendmsg. Every message asks for an ACK and is remembered by its sequence
/// number, so a refusal can name the object it was about (and the attribute the kernel pointed at).
struct NetlinkBatch {
    private(set) var buffer: [UInt8] = []
    private(set) var objects: [UInt32: BatchObject] = [:]
    /// Where each message lies in `buffer`, by sequence.
    private(set) var ranges: [UInt32: Range<Int>] = [:]
    private(set) var messageCount = 0
    /// The ruleset generation the batch was planned against, sent in BATCH_BEGIN (NFNL_BATCH_GENID): the
    /// kernel refuses the whole batch with ERESTART if anything was committed since. nil: no guard.
    let generation: UInt32?
    private var seq: UInt32
    private var scratch = [UInt8](repeating: 0, count: 1 << 20)

    init(firstSequence: UInt32, generation: UInt32? = nil) {
        seq = firstSequence
        self.generation = generation
        appendControl { buf, s in
            let nlh = nftnl_batch_begin(buf, s)!
            if let generation { mnl_attr_put_u32(nlh, UInt16(NFNL_BATCH_GENID.rawValue), generation.bigEndian) }
            return nlh
        }
    }

    /// BATCH_BEGIN's sequence: the kernel answers it (only) when it refuses the batch as a whole.
    var beginSequence: UInt32 { seq - UInt32(messageCount) - 1 }

    /// Adds one message; `payload` fills in its attributes.
    mutating func add(
        _ type: Int32, flags: Int32 = 0, describing object: BatchObject,
        payload: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) {
        add(type, flags: flags) { nlh -> BatchObject in
            payload(nlh)
            return object
        }
    }

    /// Adds one message whose description is known only once it is built (how many elements fit).
    mutating func add(_ type: Int32, flags: Int32 = 0, payload: (UnsafeMutablePointer<nlmsghdr>) -> BatchObject) {
        let s = seq
        var object: BatchObject?
        scratch.withUnsafeMutableBytes { raw in
            let buf = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            let nlh = nftnl_nlmsg_build_hdr(
                buf, UInt16(type), UInt16(NFPROTO_INET), UInt16(flags | NLM_F_ACK), s)!
            object = payload(nlh)
            let length = Int(nftpool_nlmsg_align(Int(nlh.pointee.nlmsg_len)))
            precondition(length <= raw.count, "one netlink message outgrew its 1 MiB buffer")
            ranges[s] = buffer.count..<(buffer.count + length)
            buffer.append(contentsOf: UnsafeRawBufferPointer(start: raw.baseAddress, count: length))
        }
        objects[s] = object!
        messageCount += 1
        seq += 1
    }

    /// The attribute of message `seq` that starts at byte `offset` of it (an extended ACK's pointer),
    /// as its payload when that is printable text (a name), else as its attribute number.
    func attribute(at offset: UInt32, ofMessage seq: UInt32) -> String? {
        guard let range = ranges[seq], Int(offset) + 4 <= range.count else { return nil }
        let i = range.lowerBound + Int(offset)
        let len = Int(buffer[i]) | Int(buffer[i + 1]) << 8
        let type = (Int(buffer[i + 2]) | Int(buffer[i + 3]) << 8) & 0x3fff
        guard len >= 4, i + len <= range.upperBound else { return nil }
        let payload = buffer[(i + 4)..<(i + len)].prefix { $0 != 0 }
        if !payload.isEmpty, payload.count == len - 5, payload.allSatisfy({ (0x20..<0x7f).contains($0) }) {
            return "\"" + String(decoding: payload, as: UTF8.self) + "\""
        }
        return "attribute \(type) at byte \(offset)"
    }

    /// Which member of the top-level nest `list` of message `seq` starts at byte `offset` of it.
    func nestMember(at offset: UInt32, ofMessage seq: UInt32, list: UInt16) -> Int? {
        guard let range = ranges[seq] else { return nil }
        var i = range.lowerBound + 20  // after nlmsghdr and nfgenmsg
        while let (len, type) = attributeHeader(at: i, end: range.upperBound) {
            if type == list {
                var member = i + 4, index = 0
                while attributeHeader(at: member, end: i + len) != nil {
                    if member - range.lowerBound == Int(offset) { return index }
                    member += (attributeHeader(at: member, end: i + len)!.length + 3) & ~3
                    index += 1
                }
                return nil
            }
            i += (len + 3) & ~3
        }
        return nil
    }

    /// The length and type of the attribute at `i`, if a whole one lies before `end`.
    private func attributeHeader(at i: Int, end: Int) -> (length: Int, type: UInt16)? {
        guard i + 4 <= end else { return nil }
        let len = Int(buffer[i]) | Int(buffer[i + 1]) << 8
        let type = (UInt16(buffer[i + 2]) | UInt16(buffer[i + 3]) << 8) & 0x3fff
        return len >= 4 && i + len <= end ? (len, type) : nil
    }

    /// The refusal of message `seq`, named from its typed object. When the kernel pointed at one of a
    /// rule's expressions, the refusal names that expression and only its module.
    func refusal(_ seq: UInt32, errno: Int32, ack: NetlinkSocket.ExtAck?) -> KernelError.Refusal {
        let object = objects[seq]
        var refusal = KernelError.Refusal(
            object: object?.description ?? "message \(seq)", errno: errno, modules: object?.modules ?? [],
            kernelText: ack?.message, pointedAt: ack?.offset.flatMap { attribute(at: $0, ofMessage: seq) })
        if case .rule(_, let rule)? = object, let offset = ack?.offset,
            let i = nestMember(at: offset, ofMessage: seq, list: UInt16(NFTA_RULE_EXPRESSIONS.rawValue)), i < rule.expressions.count
        {
            refusal.pointedAt = "expression \(i + 1), \(rule.expressions[i].name)"
            refusal.modules = rule.expressions[i].module == "nf_tables" ? [] : [rule.expressions[i].module]
        }
        return refusal
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
