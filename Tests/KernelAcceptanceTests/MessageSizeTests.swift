import CNetfilter
import Foundation
import Testing

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset
import TestSupport

/// Element messages are capped by their encoded size: the element list is one attribute with a 16-bit
/// length, and a list past 64 KiB wraps (the kernel then sees a truncated or garbled list).
@Suite(.serialized) struct MessageSizeTests {
    /// `pools` pools named with 32 characters (the longest a spec allows), one frontend and `backends`
    /// backends each, all IPv6 or all IPv4.
    static func spec(pools: Int, backends: Int, ipv6: Bool, table: String = "nftpool") -> Spec {
        Spec(table: table, pools: (0..<pools).map { p in
            let name = "pool-with-a-long-name-" + String(format: "%010d", p)  // 32 characters
            let frontend = ipv6 ? "fd00:0:0:\(p / 250)::\(p % 250 + 1)" : "10.\(p / 250).\(p % 250).1"
            return Pool(
                name: name, frontends: [Frontend(address: IPAddress(frontend)!, port: 443)],
                backends: (0..<backends).map { b in
                    let address = ipv6 ? "fd01::\(p % 250 + 1):\(b + 1)" : "172.16.\(p % 250).\(b + 1)"
                    return Backend(address: IPAddress(address)!, port: UInt16(8000 + p / 250))
                })
        })
    }

    /// Every message of a batch, as (type, bytes), found by walking the nlmsghdr lengths.
    static func messages(_ buffer: [UInt8]) -> [(type: UInt16, bytes: ArraySlice<UInt8>)] {
        var out: [(UInt16, ArraySlice<UInt8>)] = []
        var offset = 0
        while offset + 16 <= buffer.count {
            let length = Int(buffer[offset]) | Int(buffer[offset + 1]) << 8 | Int(buffer[offset + 2]) << 16 | Int(buffer[offset + 3]) << 24
            let type = UInt16(buffer[offset + 4]) | UInt16(buffer[offset + 5]) << 8
            precondition(length >= 16 && offset + length <= buffer.count, "a malformed batch")
            out.append((type & 0xff, buffer[offset..<(offset + length)]))
            offset += (length + 3) & ~3
        }
        precondition(offset == buffer.count)
        return out
    }

    /// Elements per set in the NEWSETELEM messages of a batch, parsed back with libnftnl.
    static func elementCounts(_ buffer: [UInt8]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for (type, bytes) in messages(buffer) where Int(type) == Int(NFT_MSG_NEWSETELEM.rawValue) {
            var copy = Array(bytes)
            copy.withUnsafeMutableBytes { raw in
                let s = nftnl_set_alloc()!
                defer { nftnl_set_free(s) }
                guard nftnl_set_elems_nlmsg_parse(raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self), s) >= 0 else { return }
                let name = String(cString: nftnl_set_get_str(s, UInt16(NFTNL_SET_NAME.rawValue)))
                let it = nftnl_set_elems_iter_create(s)!
                defer { nftnl_set_elems_iter_destroy(it) }
                while nftnl_set_elems_iter_next(it) != nil { counts[name, default: 0] += 1 }
            }
        }
        return counts
    }

    static let shapes: [(label: String, spec: Spec)] = [
        ("1,000 IPv6 pools with 32-character names", spec(pools: 1000, backends: 2, ipv6: true)),
        ("1,000 IPv4 pools with 32-character names", spec(pools: 1000, backends: 2, ipv6: false)),
        ("3,000 IPv6 pools, 1 backend", spec(pools: 3000, backends: 1, ipv6: true)),
        ("20 IPv6 pools x 250 backends (counted backend set, big slot maps)", spec(pools: 20, backends: 250, ipv6: true)),
    ]

    @Test func noMessageOfALargeTableOutgrowsTheSixteenBitLength() throws {
        for (label, spec) in Self.shapes {
            let table = RulesetBuilder.table(for: spec)
            var batch = NetlinkBatch(firstSequence: 1)
            TableMessages.create(table, in: &batch)
            _ = batch.finish()
            let sizes = Self.messages(batch.buffer).map(\.bytes.count)
            #expect(sizes.count == batch.messageCount + 2, "\(label): BEGIN, the messages, END")
            #expect(sizes.max()! <= 0xFFFF, "\(label): largest message \(sizes.max()!) bytes")
            // Nothing lost in the split: every element of every set is in exactly one message.
            let counts = Self.elementCounts(batch.buffer)
            for set in table.sets where !set.elements.isEmpty {
                #expect(counts[set.name] == set.elements.count, "\(label): \(set.name)")
            }
            print("figure: \(label): \(sizes.count) messages, largest \(sizes.max()!) bytes")
        }
    }

    @Test func deletionsAreCappedToo() throws {
        let table = RulesetBuilder.table(for: Self.spec(pools: 3000, backends: 1, ipv6: true))
        var plan = TablePlan()
        for set in table.sets { plan.deleteElements.append((set.name, set.elements.map(KernelSnapshot.ElementBytes.init))) }
        var batch = NetlinkBatch(firstSequence: 1)
        plan.write(into: &batch, table: table)
        let sizes = Self.messages(batch.buffer).map(\.bytes.count)
        #expect(sizes.max()! <= 0xFFFF, "largest message \(sizes.max()!) bytes")
    }

    @Test func athousandLongNamedIPv6PoolsApplyWhole() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("longnames")
        let spec = Self.spec(pools: 1000, backends: 2, ipv6: true)
        let table = RulesetBuilder.table(for: spec)
        let kernel = try NetfilterKernel(netns: ns.name)
        let report = try kernel.apply(table)
        #expect(report.messages > 0)
        #expect(try kernel.diff(table) == [], "the kernel holds exactly the table")
        let frontends = try ns.exec("nft", ["list", "map", "inet", "nftpool", "frontends-v6"]).out
        #expect(frontends.components(separatedBy: " : goto pool-pool-with-a-long-name-").count - 1 == 1000)
        let masquerade = try ns.exec("nft", ["list", "set", "inet", "nftpool", "masquerade-v6"]).out
        #expect(masquerade.components(separatedBy: "fd00:").count - 1 == 1000)
        var batch = NetlinkBatch(firstSequence: 1)
        TableMessages.create(table, in: &batch)
        print("figure: 1,000 IPv6 pools with 32-character names: \(report.messages) messages, \(report.bytes) bytes, largest message \(Self.messages(batch.buffer).map(\.bytes.count).max()!) bytes")
    }
}
