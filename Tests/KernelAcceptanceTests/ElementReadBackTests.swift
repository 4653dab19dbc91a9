import CNetfilter
import Foundation
import Testing

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset
import TestSupport

/// ElementParser on what the kernel itself dumps: every set of every example, and a large IPv6 table
/// (many dump messages per set), read as libnftnl reads the same bytes and as the model says.
@Suite(.serialized) struct ElementReadBackTests {
    func compareParsers(_ table: Table, in kernel: NetfilterKernel, _ label: String) throws {
        for set in table.sets {
            var lean: [KernelSnapshot.ElementBytes] = [], reference: [KernelSnapshot.ElementBytes] = []
            for message in try kernel.dump(NFT_MSG_GETSETELEM, table: table.name, set: set.name) {
                let read = message.withUnsafeBytes { ElementParser.elements(in: $0) }
                #expect(read != nil, "\(label): \(set.name)")
                lean += read ?? []
                reference += NetfilterKernel.parseElementsWithLibnftnl(message)
            }
            #expect(lean == reference, "\(label): \(set.name) as libnftnl reads it")
            #expect(lean.sorted { $0.key < $1.key } == set.elements.map(KernelSnapshot.ElementBytes.init).sorted { $0.key < $1.key },
                "\(label): \(set.name) as the model says")
        }
    }

    @Test(arguments: Repo.exampleNames)
    func kernelDumpsReadAsLibnftnlReadsThem(name: String) throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("elements")
        let kernel = try NetfilterKernel(netns: ns.name)
        let table = RulesetBuilder.table(for: try loadSpec(name))
        try kernel.apply(table)
        try compareParsers(table, in: kernel, name)
    }

    @Test func aLargeIPv6TableReadsWhole() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("elements-big")
        let kernel = try NetfilterKernel(netns: ns.name)
        let table = RulesetBuilder.table(for: MessageSizeTests.spec(pools: 20, backends: 250, ipv6: true))
        try kernel.apply(table)
        try compareParsers(table, in: kernel, "20 x 250 IPv6")
    }

    /// A set added by hand to our table with a key longer than any of ours (36 bytes): the read-back
    /// takes it, and the next apply deletes it.
    @Test func aForeignSetWithLongKeysIsReadAndRemoved() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("elements-long")
        let kernel = try NetfilterKernel(netns: ns.name)
        let table = RulesetBuilder.table(for: try loadSpec(Repo.exampleNames[0]))
        try kernel.apply(table)
        let add = try ns.exec("/usr/sbin/nft", [
            "add set inet \(table.name) junk { type ipv6_addr . ipv6_addr . inet_service; elements = { fd00::1 . fd00::2 . 80, fd00::1 . fd00::2 . 81 } }"
        ])
        #expect(add.status == 0, "\(add.err)")
        let snapshot = try #require(try kernel.snapshot(of: table.name))
        let junk = try #require(snapshot.sets["junk"])
        #expect(junk.elements.count == 2 && Set(junk.elements.map(\.key)).count == 2 && junk.elements.allSatisfy { $0.key.count == 32 })
        #expect(try kernel.apply(table).messages > 0)
        #expect(try kernel.snapshot(of: table.name)?.sets["junk"] == nil)
        #expect(try kernel.diff(table).isEmpty)
    }
}
