import ArgumentParser
import PoolSpec
import Ruleset

struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Print the ruleset for a spec as an nft script.",
        discussion: """
            The script is what nftpool programs into the kernel, with every backend counted as healthy. \
            `nft -f` loads it in one transaction that replaces table inet <table> whole and leaves every \
            other table alone. Exit 0, or 2 for an invalid spec.
            """
    )

    @OptionGroup var input: SpecInput

    func run() throws {
        let spec = try input.load(readingCAFiles: false)
        print(NftRenderer.script(RulesetBuilder.table(for: spec)), terminator: "")
    }
}
