import Foundation
import Testing

@testable import PoolSpec
@testable import Ruleset
import TestSupport

/// The kernel is the judge of the renderer: every golden ruleset must load with the real `nft -f` into a
/// fresh network namespace, list back with every object and element, and load again over itself.
@Suite(.serialized) struct GoldenLoadTests {
    @Test(arguments: Repo.exampleNames)
    func goldenLoadsIntoFreshNamespace(name: String) throws {
        try ScratchNamespace.requireKernelTools()
        let spec = try SpecDecoder.load(path: Repo.rulesets.appendingPathComponent("\(name).yaml").path, readingCAFiles: false)
        let table = RulesetBuilder.table(for: spec)
        let golden = Repo.rulesets.appendingPathComponent("\(name).nft").path
        let ns = try ScratchNamespace(name)

        let load = try ns.exec("nft", ["-f", golden])
        #expect(load.status == 0, "nft -f \(name).nft: \(load.err)")
        let listing = try ns.exec("nft", ["list", "table", "inet", table.name])
        #expect(listing.status == 0, "\(listing.err)")

        // Every chain and set is there, and every slot map holds all its elements (nothing truncated).
        for chain in table.chains { #expect(listing.out.contains("\tchain \(chain.name) {"), "chain \(chain.name)") }
        for set in table.sets {
            let block = try #require(Self.block(of: set, in: listing.out), "\(set.name) missing from the listing")
            if case .slotIndex = set.key {
                let elements = try #require(block.range(of: "elements = {")).upperBound
                #expect(block[elements...].components(separatedBy: " : ").count - 1 == set.elements.count, "\(set.name) elements")
            }
        }
        #expect(listing.out.contains("comment \"\(RulesetBuilder.ownerComment)\""))

        // Loading the script again replaces the table (no duplicate rules): the listing does not change.
        let again = try ns.exec("nft", ["-f", golden])
        #expect(again.status == 0, "\(again.err)")
        let relisting = try ns.exec("nft", ["list", "table", "inet", table.name])
        #expect(relisting.out == listing.out)
    }

    @Test func namespacesAreRemovedAfterwards() throws {
        try ScratchNamespace.requireKernelTools()
        var name = ""
        do {
            let ns = try ScratchNamespace("cleanup")
            name = ns.name
            #expect(try Repo.run(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "list"]).out.contains(name))
        }
        #expect(try !Repo.run(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "list"]).out.contains(name))
    }

    static func block(of set: NamedSet, in listing: String) -> String? {
        let header = "\t\(set.isMap ? "map" : "set") \(set.name) {\n"
        guard let start = listing.range(of: header) else { return nil }
        guard let end = listing.range(of: "\n\t}\n", range: start.upperBound..<listing.endIndex) else { return nil }
        return String(listing[start.upperBound..<end.lowerBound])
    }
}
