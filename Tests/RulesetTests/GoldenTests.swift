import Foundation
import Testing

@testable import PoolSpec
@testable import Ruleset
import TestSupport

/// `render` of every rulesets/X.yaml must equal rulesets/X.nft byte for byte.
/// After an intended change: `NFTPOOL_UPDATE_GOLDEN=1 swift test --filter GoldenTests`, then read the diff.
@Suite struct GoldenTests {
    @Test func everyExampleHasAGoldenFile() {
        #expect(Repo.exampleNames.count >= 6)
        for name in Repo.exampleNames {
            #expect(FileManager.default.fileExists(atPath: Repo.rulesets.appendingPathComponent("\(name).nft").path), "\(name).nft")
        }
    }

    @Test(arguments: Repo.exampleNames)
    func renderEqualsGolden(name: String) throws {
        let spec = try SpecDecoder.load(path: Repo.rulesets.appendingPathComponent("\(name).yaml").path, readingCAFiles: false)
        let rendered = NftRenderer.script(RulesetBuilder.table(for: spec))
        let goldenURL = Repo.rulesets.appendingPathComponent("\(name).nft")
        if ProcessInfo.processInfo.environment["NFTPOOL_UPDATE_GOLDEN"] == "1" {
            try rendered.write(to: goldenURL, atomically: true, encoding: .utf8)
        }
        let golden = try String(contentsOf: goldenURL, encoding: .utf8)
        #expect(rendered == golden, "render of \(name).yaml differs from \(name).nft")
    }

    @Test func cliRenderMatchesGoldenInSeparateProcesses() throws {
        // Two processes, two random Hasher seeds: the tables must not depend on them.
        for name in Repo.exampleNames {
            let path = Repo.rulesets.appendingPathComponent("\(name).yaml").path
            let first = try Repo.run(Repo.nftpool, ["render", path])
            let second = try Repo.run(Repo.nftpool, ["render", path])
            let golden = try String(contentsOf: Repo.rulesets.appendingPathComponent("\(name).nft"), encoding: .utf8)
            #expect(first.status == 0 && second.status == 0)
            #expect(first.out == golden && second.out == golden, "\(name)")
        }
    }
}
