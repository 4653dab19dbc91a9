import ArgumentParser


/// The release; also the `version` label of `nftpool_build_info`.
let nftpoolVersion = "0.1.0"

@available(macOS 10.15, *)
struct NftPoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nftpool",
        abstract: "Turn a pool spec into an nftables load balancer in the Linux kernel.",
        discussion: """
            A spec (YAML or JSON) names virtual addresses (frontends) and the backends behind them. nftpool \
            computes one nftables table (family inet) that balances new connections over the backends in \
            the kernel. FILE may be - to read standard input.

            Exit codes: 0 success, 2 the spec is invalid (nothing was sent anywhere). Each error is one line \
            on standard error, starting with the field it is about.

            Examples:
              nftpool validate rulesets/kube-apiserver.yaml
              nftpool render rulesets/kube-apiserver.yaml > lb.nft
            """,
        version: nftpoolVersion,
        subcommands: [ValidateCommand.self, RenderCommand.self, DiffCommand.self, ApplyCommand.self, DeleteCommand.self, RunCommand.self, StatusCommand.self, BackendCommand.self, HAConfigCommand.self]
    )
}
