import ArgumentParser
import Daemon
import Foundation
import Kernel
import Logging
import PoolSpec

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Apply the spec, probe the backends, and rewrite the slots on every health change.",
        discussion: """
            Each health change is one transaction that rewrites only the slots that change. SIGHUP re-reads \
            FILE: an invalid spec is logged and the running one kept. SIGTERM/SIGINT stop the daemon and leave \
            the table in the kernel, so traffic keeps flowing (unless --cleanup-on-exit). Starting over a \
            table an earlier run left adopts it without dropping a connection. Logs go to standard error. \
            Exit 0 on a signal, 1 the kernel refused, 2 invalid spec.
            """
    )

    @OptionGroup var input: SpecInput
    @OptionGroup var options: KernelOptions

    @Flag(help: "Delete the table when stopped by SIGTERM/SIGINT.")
    var cleanupOnExit = false

    @Option(help: ArgumentHelp("Where to publish health for `nftpool status` (default /run/nftpool/<table>.json).", valueName: "PATH"))
    var statusFile: String?

    func run() async throws {
        _ = try input.load()  // exit 2 with every error before anything starts
        if let netns = options.netns {
            try reexecInside(netns)
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        var daemonOptions = Daemon.Options(specPath: input.file, netns: nil)
        daemonOptions.force = options.force
        daemonOptions.cleanupOnExit = cleanupOnExit
        daemonOptions.statusPath = statusFile
        let daemon = Daemon(options: daemonOptions, logger: Logger(label: "nftpool"))
        do {
            try await daemon.run()
        } catch let error as KernelError {
            Stderr.print(error.description)
            throw ExitCode(ExitStatus.kernelRefused)
        }
    }
}

/// The daemon must live in the namespace whole: its probes connect from there, not only its netlink
/// socket. setns moves one thread; exec from that thread makes it the whole process. Never returns.
func reexecInside(_ netns: String) throws {
    try reportingKernelErrors { () throws(KernelError) in try NetfilterKernel.enterNamespace(netns) }
    var args = CommandLine.arguments
    if let i = args.firstIndex(of: "--netns"), i + 1 < args.count {
        args.removeSubrange(i...(i + 1))
    } else if let i = args.firstIndex(where: { $0.hasPrefix("--netns=") }) {
        args.remove(at: i)
    }
    let cArgs = args.map { strdup($0) } + [nil]
    execv("/proc/self/exe", cArgs)
    Stderr.print("cannot re-execute nftpool inside namespace \(netns): \(String(cString: strerror(errno)))")
    throw ExitCode(ExitStatus.kernelRefused)
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show each pool's backends: admin state, health, weight and slots held, from the running daemon.",
        discussion: "Exit 0, 1 when no daemon publishes this table's status, 2 invalid spec."
    )

    @OptionGroup var input: SpecInput

    @Option(help: ArgumentHelp("The daemon's status file (default /run/nftpool/<table>.json).", valueName: "PATH"))
    var statusFile: String?

    @Option(help: "text or json.")
    var output: String = "text"

    @Option(help: ArgumentHelp("Read the kernel's counters inside this named network namespace.", valueName: "NAME"))
    var netns: String?

    func run() throws {
        let spec = try input.load()
        let path = statusFile ?? StatusFile.defaultPath(table: spec.table)
        var doc: StatusFile.Document
        do {
            doc = try StatusFile.read(path: path)
        } catch {
            Stderr.print("no status for table \(spec.table) at \(path): is `nftpool run` running?")
            throw ExitCode(ExitStatus.kernelRefused)
        }
        do {
            let counters = try NetfilterKernel(netns: netns).backendCounters(of: spec.table) ?? [:]
            for p in doc.pools.indices {
                for b in doc.pools[p].backends.indices {
                    let c = counters[doc.pools[p].backends[b].endpoint]
                    doc.pools[p].backends[b].packets = c?.packets
                    doc.pools[p].backends[b].bytes = c?.bytes
                }
            }
        } catch {
            Stderr.print("kernel counters unavailable: \(error)")
        }
        if output == "json" {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(doc), as: UTF8.self))
            return
        }
        print("table inet \(doc.table) (nftpool run, pid \(doc.pid))")
        for pool in doc.pools {
            print("pool \(pool.name): \(pool.slots) slots")
            var rows = [["BACKEND", "STATE", "HEALTH", "WEIGHT", "SLOTS", "FOR", "PACKETS", "BYTES", "LAST PROBE"]]
            for b in pool.backends {
                let since = b.since.map { String(format: "%.0fs", $0) } ?? "-"
                rows.append([b.endpoint, b.state, b.health, "\(b.weight)", "\(b.slots)", since,
                             b.packets.map(String.init) ?? "-", b.bytes.map(String.init) ?? "-", b.reason])
            }
            let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! + 2 }
            for row in rows {
                print("  " + row.enumerated().map { c, cell in
                    c == row.count - 1 ? cell : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                }.joined())
            }
        }
    }
}
