import ArgumentParser
import Daemon
import Kernel
import PoolSpec
import Ruleset

/// Options of every command that talks to the kernel.
struct KernelOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Run inside this named network namespace (see `ip netns list`).", valueName: "NAME"))
    var netns: String?

    @Flag(help: "Change or delete a same-named table that nftpool did not make.")
    var force = false

    func kernel() throws -> NetfilterKernel {
        try reportingKernelErrors { () throws(KernelError) in try NetfilterKernel(netns: netns) }
    }

    /// The spec is validated before the kernel is touched: exit 2 always means nothing was sent.
    func prepare(_ input: SpecInput) throws -> (spec: Spec, table: Table, kernel: NetfilterKernel) {
        let spec = try input.load(readingCAFiles: false)
        return (spec, RulesetBuilder.table(for: spec), try kernel())
    }
}

extension KernelOptions {
    /// A running daemon owns its table: a one-shot change would be undone at once (it restores its
    /// table) or, worse, would be what the daemon plans against. Exit 1 naming it, unless --force.
    func refuseWhileADaemonRuns(_ table: String) throws {
        guard !force, let pid = DaemonLock.holder(table: table, namespace: DaemonLock.namespaceID(named: netns)) else { return }
        Stderr.print(
            "table inet \(table) is run by an nftpool daemon (\(DaemonLock.describe(pid))): change its spec and send it SIGHUP, stop it first, or pass --force")
        throw ExitCode(ExitStatus.kernelRefused)
    }
}

/// Runs kernel work; a KernelError is printed (one line per problem) and becomes exit 1.
func reportingKernelErrors<T>(_ body: () throws(KernelError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        Stderr.print(error.description)
        throw ExitCode(ExitStatus.kernelRefused)
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Program the spec's table into the kernel in one atomic transaction.",
        discussion: """
            Afterwards the kernel holds exactly the spec's table inet <table>; no other table is read or \
            changed. Only what differs from the kernel's current table is sent, as one transaction: \
            packets see the old table or the new one, never a mix; when nothing differs nothing is sent. \
            Exit 0 applied, 1 the kernel refused (nothing was applied), 2 invalid spec (nothing was sent).
            """
    )

    @OptionGroup var input: SpecInput
    @OptionGroup var options: KernelOptions

    func run() throws {
        let spec = try input.load(readingCAFiles: false)
        try options.refuseWhileADaemonRuns(spec.table)
        let kernel = try options.kernel()
        // The table is built on another thread while the kernel's is read back.
        let report = try reportingKernelErrors { () throws(KernelError) in
            try kernel.apply(tableNamed: spec.table, force: options.force) { RulesetBuilder.table(for: spec) }
        }
        guard report.messages > 0 else {
            print("table inet \(spec.table) is up to date: nothing sent")
            return
        }
        let backends = spec.pools.reduce(0) { $0 + $1.backends.count }
        print(
            "applied table inet \(spec.table): \(plural(spec.pools.count, "pool")), \(plural(backends, "backend")); "
                + "one transaction of \(report.messages) messages (\(report.bytes) bytes)"
                + (report.replaced ? ", replacing a table nftpool did not make" : ""))
    }
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Show what apply would change in the kernel; nothing is sent.",
        discussion: "Exit 0 no change, 3 changes pending, 1 the kernel could not be read, 2 invalid spec."
    )

    @OptionGroup var input: SpecInput
    @OptionGroup var options: KernelOptions

    func run() throws {
        let (_, table, kernel) = try options.prepare(input)
        let changes = try reportingKernelErrors { () throws(KernelError) in try kernel.diff(table, force: options.force) }
        guard !changes.isEmpty else {
            print("table inet \(table.name) is up to date")
            return
        }
        for line in changes { print(line) }
        throw ExitCode(ExitStatus.changesPending)
    }
}

struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Remove the spec's table from the kernel, and nothing else.",
        discussion: "Exit 0 deleted or absent, 1 the kernel refused or the table is not nftpool's, 2 invalid spec."
    )

    @OptionGroup var input: SpecInput
    @OptionGroup var options: KernelOptions

    func run() throws {
        let spec = try input.load(readingCAFiles: false)
        try options.refuseWhileADaemonRuns(spec.table)
        let kernel = try options.kernel()
        let existed = try reportingKernelErrors { () throws(KernelError) in
            try kernel.delete(tableNamed: spec.table, force: options.force)
        }
        print(existed ? "deleted table inet \(spec.table)" : "table inet \(spec.table) does not exist; nothing to delete")
    }
}
