import CNetfilter
import Foundation
import Testing
import TestSupport

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset

/// ElementParser reads NEWSETELEM bytes without libnftnl. On the bytes nftpool itself sends (libnftnl's
/// encoding), it must read what libnftnl reads and what the model says; on damaged bytes it must say so
/// and never read past the message. The kernel's own dumps are compared in KernelAcceptanceTests.
struct ElementParserTests {
    /// Every NEWSETELEM message of a batch, with the name of its set.
    static func elementMessages(_ batch: NetlinkBatch) -> [(set: String, bytes: [UInt8])] {
        var out: [(String, [UInt8])] = []
        var offset = 0
        let buffer = batch.buffer
        while offset + 16 <= buffer.count {
            let length = Int(buffer[offset]) | Int(buffer[offset + 1]) << 8 | Int(buffer[offset + 2]) << 16 | Int(buffer[offset + 3]) << 24
            let type = Int(buffer[offset + 4]) | Int(buffer[offset + 5]) << 8
            let message = Array(buffer[offset..<(offset + length)])
            if type & 0xff == Int(NFT_MSG_NEWSETELEM.rawValue) {
                var copy = message
                let name = copy.withUnsafeMutableBytes { raw -> String in
                    let s = nftnl_set_alloc()!
                    defer { nftnl_set_free(s) }
                    _ = nftnl_set_elems_nlmsg_parse(raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self), s)
                    return String(cString: nftnl_set_get_str(s, UInt16(NFTNL_SET_NAME.rawValue)))
                }
                out.append((name, message))
            }
            offset += (length + 3) & ~3
        }
        return out
    }

    static func tables() throws -> [(String, Table)] {
        var out: [(String, Table)] = []
        for name in Repo.exampleNames {
            let spec = try SpecDecoder.load(path: Repo.rulesets.appendingPathComponent("\(name).yaml").path, readingCAFiles: false)
            out.append((name, RulesetBuilder.table(for: spec)))
        }
        out.append(("100 x 20", RulesetBuilder.table(for: PlanFixtures.spec(pools: 100, backends: 20))))
        return out
    }

    @Test func readsWhatLibnftnlReadsFromEveryBatchWeSend() throws {
        for (label, table) in try Self.tables() {
            var batch = NetlinkBatch(firstSequence: 1)
            TableMessages.create(table, in: &batch)
            _ = batch.finish()
            var read: [String: [KernelSnapshot.ElementBytes]] = [:]
            for (set, bytes) in Self.elementMessages(batch) {
                let lean = bytes.withUnsafeBytes { ElementParser.elements(in: $0) }
                #expect(lean == NetfilterKernel.parseElementsWithLibnftnl(bytes), "\(label): \(set)")
                read[set, default: []] += lean ?? []
            }
            for set in table.sets {
                #expect((read[set.name] ?? []) == set.elements.map(KernelSnapshot.ElementBytes.init), "\(label): \(set.name)")
            }
        }
    }

    /// The layout pinned by hand, not by libnftnl: one verdict-map element `goto pool-a` and one drop.
    @Test func handWrittenBytes() {
        func attr(_ type: UInt16, _ payload: [UInt8], nested: Bool = false) -> [UInt8] {
            let len = 4 + payload.count
            var out = [UInt8(len & 0xff), UInt8(len >> 8), UInt8(type & 0xff), UInt8(type >> 8 | (nested ? 0x80 : 0))] + payload
            while out.count % 4 != 0 { out.append(0) }
            return out
        }
        let key: [UInt8] = [10, 0, 0, 1, 6, 0, 0, 0, 1, 187, 0, 0]
        let goto = attr(1, attr(1, attr(1, key), nested: true)
            + attr(2, attr(2, attr(1, [0xff, 0xff, 0xff, 0xfc]) + attr(2, Array("pool-a".utf8) + [0]), nested: true), nested: true)
            + attr(3, [0, 0, 0, 0]), nested: true)
        let drop = attr(1, attr(1, attr(1, key.map { $0 ^ 1 }), nested: true)
            + attr(2, attr(2, attr(1, [0, 0, 0, 0]), nested: true), nested: true), nested: true)
        let body = [UInt8](repeating: 0, count: 4) + attr(1, Array("t".utf8) + [0]) + attr(2, Array("m".utf8) + [0]) + attr(3, goto + drop, nested: true)
        let length = 16 + body.count
        let message = [UInt8(length & 0xff), UInt8(length >> 8), 0, 0] + [UInt8](repeating: 0, count: 12) + body
        let read = message.withUnsafeBytes { ElementParser.elements(in: $0) }
        #expect(read == [
            KernelSnapshot.ElementBytes(key: PackedBytes(key), data: nil, verdict: -4, chain: "pool-a"),
            KernelSnapshot.ElementBytes(key: PackedBytes(key.map { $0 ^ 1 }), data: nil, verdict: 0, chain: nil),
        ])
        #expect(read == NetfilterKernel.parseElementsWithLibnftnl(message))
        // Cut anywhere inside the element list: refused, and no read past the end.
        for cut in 20..<message.count where cut % 4 == 0 && cut < message.count - 4 {
            var damaged = Array(message[0..<cut])
            damaged[0] = UInt8(cut & 0xff)
            damaged[1] = UInt8(cut >> 8)
            let parsed = damaged.withUnsafeBytes { ElementParser.elements(in: $0) }
            #expect(parsed == nil || parsed!.count < 2, "cut at \(cut)")
        }
    }

    /// A key longer than any of ours (a set added by hand with a long concatenation) reads as 32 bytes
    /// that equal no value of ours, and two different long keys stay different.
    @Test func longValuesDoNotCrashAndStayDistinct() {
        let a = (0..<36).map { UInt8($0) }, b = a.map { $0 == 35 ? 0 : $0 }
        let pa = a.withUnsafeBytes { ElementParser.packed($0) }, pb = b.withUnsafeBytes { ElementParser.packed($0) }
        #expect(pa.count == 32 && pb.count == 32 && pa != pb)
    }

    /// Random damage to real messages: every outcome is an answer (elements or nil), never a crash.
    @Test func damagedMessagesNeverCrash() throws {
        var batch = NetlinkBatch(firstSequence: 1)
        TableMessages.create(RulesetBuilder.table(for: PlanFixtures.spec(pools: 3, backends: 4)), in: &batch)
        _ = batch.finish()
        var rng = SystemRandomNumberGenerator()
        for (_, bytes) in Self.elementMessages(batch) {
            for _ in 0..<2000 {
                var damaged = bytes
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    damaged[Int.random(in: 16..<damaged.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                if Bool.random(using: &rng) { damaged = Array(damaged.prefix(Int.random(in: 0...damaged.count, using: &rng))) }
                _ = damaged.withUnsafeBytes { ElementParser.elements(in: $0) }
            }
        }
    }
}
