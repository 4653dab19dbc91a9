import ArgumentParser
import PoolSpec

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a spec and print every error with its field path.",
        discussion: "Exit 0 when the spec is valid, 2 when it is not. Touches nothing."
    )

    @OptionGroup var input: SpecInput

    func run() throws {
        let spec = try input.load()
        let backends = spec.pools.reduce(0) { $0 + $1.backends.count }
        let frontends = spec.pools.reduce(0) { $0 + $1.frontends.count }
        print(
            "\(input.file): valid: table inet \(spec.table), \(plural(spec.pools.count, "pool")), "
                + "\(plural(frontends, "frontend")), \(plural(backends, "backend"))"
                + (spec.ha.map { "; ha: \(plural($0.nodes.count, "node")) (\($0.nodes.map(\.name).joined(separator: ", ")))" } ?? ""))
    }
}

func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
