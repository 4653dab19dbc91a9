import Foundation
import Testing

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset
import TestSupport

@Suite(.serialized) struct ReadBackTests {
    /// Applied over netlink and read back over netlink, every example equals its desired model: every set
    /// declaration, element, chain, rule expression and comment.
    @Test(arguments: Repo.exampleNames)
    func readBackEqualsDesired(name: String) throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("readback")
        let kernel = try NetfilterKernel(netns: ns.name)
        let table = RulesetBuilder.table(for: try loadSpec(name))
        try kernel.apply(table)
        let actual = try #require(try kernel.snapshot(of: table.name))
        let desired = KernelSnapshot(desired: table)
        #expect(actual.comment == desired.comment)
        #expect(Set(actual.sets.keys) == Set(desired.sets.keys))
        for (setName, set) in desired.sets {
            #expect(actual.sets[setName]?.encoding == set.encoding, "\(setName) declaration")
            #expect(actual.sets[setName]?.elements == set.elements, "\(setName) elements")
        }
        #expect(actual.withoutHandles.chains == desired.chains)
        #expect(actual.withoutHandles == desired)
    }

    @Test func readBackOfAnAbsentTableIsNil() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("readback-none")
        #expect(try NetfilterKernel(netns: ns.name).snapshot(of: "nftpool") == nil)
    }
}
