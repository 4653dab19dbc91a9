import CNetfilter
import Foundation
import Testing
import TestSupport

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset

/// Trust under concurrent writers: batches carry the generation they were planned at, reads are
/// consistent, replies are matched to what we asked, and the kernel's extended ACK reaches the error.
@Suite(.serialized) struct GenerationGuardTests {
    static func listing(_ ns: ScratchNamespace) throws -> String { try ns.exec("nft", ["list", "ruleset"]).out }

    @Test func aBatchPlannedAtAnOldGenerationIsRefusedWholeAndChangesNothing() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("stale")
        let kernel = try NetfilterKernel(netns: ns.name)
        try kernel.apply(RulesetBuilder.table(for: loadSpec("kube-apiserver")))
        let planned = try kernel.generation()
        #expect(try ns.exec("nft", ["add", "table", "inet", "other"]).status == 0)
        let before = try Self.listing(ns)
        var batch = NetlinkBatch(firstSequence: kernel.nextSequence(), generation: planned)
        TableMessages.deleteTable("nftpool", in: &batch)
        // On the wire: BATCH_BEGIN carries NFNL_BATCH_GENID, the planned generation in network order.
        let begin = Array(batch.buffer[16..<28])
        #expect(begin == [0, 0, 0, 10] + [8, 0, UInt8(NFNL_BATCH_GENID.rawValue), 0] + withUnsafeBytes(of: planned.bigEndian, Array.init))
        #expect {
            try kernel.commit(&batch)
        } throws: { error in
            (error as? KernelError) == .stale(generation: planned) && "\(error)".contains("ERESTART")
        }
        #expect(try Self.listing(ns) == before, "the table is still there, nothing changed")
        #expect(try kernel.generation() == planned &+ 1, "only nft's commit counted")
    }

    @Test func applyRedoesItsPlanWhenSomeoneCommitsBeforeIt() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("retry")
        let kernel = try NetfilterKernel(netns: ns.name)
        try kernel.apply(RulesetBuilder.table(for: loadSpec("kube-apiserver")))
        var spec = try loadSpec("kube-apiserver")
        spec.pools[0].backends.removeLast()
        let wanted = RulesetBuilder.table(for: spec)
        var intrusions = 0
        kernel.beforeCommit = {
            guard intrusions == 0 else { return }
            intrusions += 1
            _ = try? ns.exec("nft", ["add", "table", "inet", "other"])
        }
        let report = try kernel.apply(wanted)
        print("figure: apply with one commit in between: \(report.retries) retry")
        #expect(report.retries == 1)
        #expect(try kernel.diff(wanted) == [])
        #expect(try ns.exec("nft", ["list", "tables"]).out.contains("table inet other"))
    }

    @Test func applyGivesUpWhenSomeoneAlwaysCommitsFirst() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("busy")
        let kernel = try NetfilterKernel(netns: ns.name)
        var n = 0
        kernel.beforeCommit = {
            n += 1
            _ = try? ns.exec("nft", ["add", "table", "inet", "other\(n)"])
        }
        #expect {
            try kernel.apply(RulesetBuilder.table(for: loadSpec("kube-apiserver")))
        } throws: { error in
            guard case KernelError.busy(_, let attempts) = error else { return false }
            return attempts == NetfilterKernel.attempts
        }
        #expect(n == NetfilterKernel.attempts)
        #expect(try !ns.exec("nft", ["list", "tables"]).out.contains("nftpool"), "nothing of ours landed")
    }

    @Test func theFastPathFallsBackToTheFullDiffWhenSomeoneElseCommitted() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("fallback")
        let kernel = try NetfilterKernel(netns: ns.name)
        var spec = try loadSpec("source-hash")
        let before = RulesetBuilder.table(for: spec)
        try kernel.apply(before)
        // Drift that only a full read-back sees: an element of a set the flip does not touch.
        let masq = before.set(named: "masquerade-v4")!.elements[0].key
        guard case .address(let address) = masq[0] else { Issue.record("masquerade-v4 keys are addresses"); return }
        #expect(try ns.exec("nft", ["delete", "element", "inet", "nftpool", "masquerade-v4", "{ \(address) }"]).status == 0)
        spec.pools[0].backends[1].state = .disabled
        let after = RulesetBuilder.table(for: spec)
        try kernel.apply(after, after: before)
        #expect(try kernel.diff(after) == [], "the stale fast-path batch was refused and the full diff repaired the drift")
        // And with nobody in between the fast path goes through on its remembered generation.
        let g = try kernel.generation()
        let report = try kernel.apply(before, after: after)
        #expect(report.messages == 2)
        #expect(try kernel.generation() == g &+ 1)
        #expect(try kernel.diff(before) == [])
    }

    @Test func aReadDuringWhichSomeoneCommitsIsReadAgain() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("consistent")
        let kernel = try NetfilterKernel(netns: ns.name)
        try kernel.apply(RulesetBuilder.table(for: loadSpec("kube-apiserver")))
        var reads = 0
        let (snapshot, generation) = try kernel.consistentRead { () throws(KernelError) -> KernelSnapshot? in
            reads += 1
            let s = try kernel.readSnapshot(of: "nftpool")
            if reads == 1 { _ = try? ns.exec("nft", ["add", "table", "inet", "other"]) }
            return s
        }
        #expect(reads == 2)
        #expect(snapshot != nil)
        #expect(generation == (try kernel.generation()))
    }

    @Test func theKernelsPointerLandsInTheRefusal() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("extack")
        let kernel = try NetfilterKernel(netns: ns.name)
        try kernel.apply(RulesetBuilder.table(for: loadSpec("kube-apiserver")))
        var batch = NetlinkBatch(firstSequence: kernel.nextSequence(), generation: try kernel.generation())
        TableMessages.addRule(.reject, chain: "no-such-chain", table: "nftpool", setIDs: [:], in: &batch)
        #expect {
            try kernel.commit(&batch)
        } throws: { error in
            guard case KernelError.refused(let refusals) = error, refusals.count == 1 else { return false }
            // nf_tables points at NFTA_RULE_CHAIN (NL_SET_BAD_ATTR); the offset maps back to our bytes.
            // The module hint comes from the batch's typed object (the rule's expressions), not from text.
            return refusals[0].errno == ENOENT && refusals[0].pointedAt == "\"no-such-chain\""
                && refusals[0].object == "rule in chain no-such-chain: reject" && refusals[0].modules == ["nft_reject_inet"]
                && "\(error)".contains("No such file or directory at \"no-such-chain\"")
        }
    }

    @Test func eachMessageRemembersItsTypedObject() throws {
        let table = RulesetBuilder.table(for: try loadSpec("source-hash"))
        var batch = NetlinkBatch(firstSequence: 100)
        TableMessages.create(table, in: &batch)
        let objects = (101..<(101 + UInt32(batch.messageCount))).map { batch.objects[$0]! }
        #expect(objects.first == .table("nftpool"))
        let pool = table.chains.first { $0.name == "pool-sessions" }!
        let dnat = try #require(objects.first { if case .rule("pool-sessions", _) = $0 { return true } else { return false } })
        #expect(dnat == .rule(chain: "pool-sessions", pool.rules.last!))
        #expect(Set(dnat.modules) == Set(pool.rules.last!.expressions.map(\.module)).subtracting(["nf_tables"]))
        #expect(dnat.modules.contains("nft_hash") && dnat.modules.contains("nft_nat"))
        let slots = table.set(named: "pool-sessions-slots")!
        #expect(objects.contains(.elements(set: slots.name, count: slots.elements.count)))
        #expect(objects.allSatisfy { if case .rule = $0 { return true } else { return $0.modules.isEmpty } })
    }

    /// NLMSG_ERROR as the kernel lays it out with CAP_ACK and EXT_ACK.
    static func errorMessage(seq: UInt32, pid: UInt32, errno: Int32, text: String?, offset: UInt32?) -> [UInt8] {
        func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        func attr(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
            let a = u16(UInt16(4 + payload.count)) + u16(type) + payload
            return a + [UInt8](repeating: 0, count: (4 - a.count % 4) % 4)
        }
        var tlvs: [UInt8] = []
        if let text { tlvs += attr(UInt16(NLMSGERR_ATTR_MSG.rawValue), Array(text.utf8) + [0]) }
        if let offset { tlvs += attr(UInt16(NLMSGERR_ATTR_OFFS.rawValue), u32(offset)) }
        let inner = u32(40) + u16(0x0a06) + u16(5) + u32(seq) + u32(pid)
        let flags = UInt16(NLM_F_CAPPED | (tlvs.isEmpty ? 0 : NLM_F_ACK_TLVS))
        let body = u32(UInt32(bitPattern: -errno)) + inner + tlvs
        return u32(UInt32(16 + body.count)) + u16(UInt16(NLMSG_ERROR)) + u16(flags) + u32(seq) + u32(pid) + body
    }

    @Test func extendedAckTextAndOffsetAreRead() {
        let bytes = Self.errorMessage(seq: 7, pid: 4242, errno: EINVAL, text: "Unknown device type", offset: 36)
        var replies = NetlinkSocket.Replies()
        NetlinkSocket.parse(bytes[...], port: 4242, expected: [7], into: &replies)
        #expect(replies.status == [7: EINVAL])
        #expect(replies.extAcks[7] == NetlinkSocket.ExtAck(message: "Unknown device type", offset: 36))
        let refusal = KernelError.refused([KernelError.Refusal(
            object: "chain x", errno: EINVAL, modules: [], kernelText: "Unknown device type", pointedAt: "\"x\"")])
        #expect("\(refusal)" == "the kernel refused chain x: Invalid argument (Unknown device type) at \"x\"; nothing was applied")
    }

    @Test func repliesAreMatchedBySequenceAndPort() {
        let ours = Self.errorMessage(seq: 7, pid: 4242, errno: 0, text: nil, offset: nil)
        let otherPort = Self.errorMessage(seq: 8, pid: 999, errno: ENOENT, text: nil, offset: nil)
        let otherSequence = Self.errorMessage(seq: 9, pid: 4242, errno: EEXIST, text: nil, offset: nil)
        let fromKernel = Self.errorMessage(seq: 10, pid: 0, errno: EBUSY, text: nil, offset: nil)
        var replies = NetlinkSocket.Replies()
        NetlinkSocket.parse((otherPort + ours + otherSequence + fromKernel)[...], port: 4242, expected: [7, 8, 10], into: &replies)
        #expect(replies.status == [7: 0, 10: EBUSY], "seq 8 came for another socket, seq 9 was never asked")
    }
}
