import ArgumentParser
import Daemon
import Foundation
import HAConfig
import Kernel
import Logging
import NftpoolMetrics
import PoolSpec
import Ruleset

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Apply the spec, probe the backends, and rewrite the slots on every health change.",
        discussion: """
            Each health change is one transaction that rewrites only the slots that change. SIGHUP re-reads \
            FILE: an invalid spec is logged and the running one kept. SIGTERM/SIGINT stop the daemon and leave \
            the table in the kernel, so traffic keeps flowing (unless --cleanup-on-exit). Starting over a \
            table an earlier run left adopts it without dropping a connection. Logs go to standard error \
            (--log-format json: one JSON object per line; when standard error is the journal, text lines carry \
            syslog priorities). Exit 0 on a signal, 1 the kernel refused, 2 invalid spec.
            """
    )

    @OptionGroup var input: SpecInput
    @OptionGroup var options: KernelOptions

    @Flag(help: "Delete the table when stopped by SIGTERM/SIGINT.")
    var cleanupOnExit = false

    @Option(help: ArgumentHelp("Where to publish health for `nftpool status` (default /run/nftpool/<table>.json).", valueName: "PATH"))
    var statusFile: String?

    @Option(help: ArgumentHelp("Where `nftpool backend …` changes are kept across restarts (default /var/lib/nftpool/<table>[@<netns>].json).", valueName: "PATH"))
    var stateFile: String?

    @Option(help: ArgumentHelp("With a spec's ha section: this node's name in ha.nodes (default: the node whose address is on this machine).", valueName: "NAME"))
    var node: String?

    @Option(help: ArgumentHelp("With a spec's ha section: the runtime directory shared with keepalived (as given to `nftpool ha-config`).", valueName: "RUNDIR"))
    var runtimeDir: String = HAConfig.defaultRuntimeDirectory

    @Option(help: ArgumentHelp("Serve Prometheus metrics on /metrics and probes on /healthz and /readyz (an IPv6 address in brackets), or off.", valueName: "ADDR:PORT"))
    var metricsAddress: String = MetricsAddress.defaultText

    @Option(help: ArgumentHelp("Log lines on standard error: text, or json (one object per line: ts, level, msg and fields).", valueName: "FORMAT"))
    var logFormat: DaemonLogHandler.Format = .text

    func run() async throws {
        let metricsAt: MetricsAddress?
        do {
            metricsAt = try MetricsAddress.parse(metricsAddress)
        } catch {
            Stderr.print(error.description)
            throw ExitCode(ExitStatus.usage)
        }
        // Standard input can be read once: with --netns, re-execute first and read it inside.
        if input.file == "-", let netns = options.netns { try reexecInside(netns) }
        let spec = try input.load()  // exit 2 with every error before anything starts
        if node != nil && spec.ha == nil {
            Stderr.print("--node: the spec has no ha section")
            throw ExitCode(ExitStatus.invalidSpec)
        }
        // A named node is checked before anything starts; a local one is found inside --netns.
        if let ha = spec.ha, let node, case .failure(let error) = HANodeLink.node(ha, named: node) {
            Stderr.print(error.description)
            throw ExitCode(ExitStatus.invalidSpec)
        }
        if let netns = options.netns {
            try reexecInside(netns)
        }
        let logFormat = self.logFormat
        LoggingSystem.bootstrap { label in DaemonLogHandler.standardError(label: label, format: logFormat) }
        var daemonOptions = Daemon.Options(specPath: input.file, spec: spec, netns: ProcessInfo.processInfo.environment[namespaceVariable])
        daemonOptions.force = options.force
        daemonOptions.cleanupOnExit = cleanupOnExit
        daemonOptions.statusPath = statusFile
        daemonOptions.statePath = stateFile
        daemonOptions.node = node
        daemonOptions.runtimeDirectory = runtimeDir
        if let notifier = ServiceNotifier() { daemonOptions.observers.append(notifier) }
        if let metricsAt {
            let metrics = DaemonMetrics(version: nftpoolVersion)
            daemonOptions.observers += [metrics, MetricsServer(address: metricsAt, metrics: metrics)]
        }
        let daemon = Daemon(options: daemonOptions, logger: Logger(label: "nftpool"))
        do {
            try await daemon.run()
        } catch let error as KernelError {
            Stderr.print(error.description)
            throw ExitCode(ExitStatus.kernelRefused)
        } catch let error as DaemonLock.Failure {
            Stderr.print(error.description)
            throw ExitCode(ExitStatus.kernelRefused)
        } catch let error as HANodeLink.NodeError {
            Stderr.print(error.description)
            throw ExitCode(ExitStatus.invalidSpec)
        } catch let error as MetricsServer.BindError {
            Stderr.print("nftpool run: \(error)")
            throw ExitCode(ExitStatus.kernelRefused)
        } catch {
            Stderr.print("nftpool run: \(ErrorText.line(error))")
            throw ExitCode(ExitStatus.kernelRefused)
        }
    }
}

/// Tells the re-executed daemon which `ip netns` it runs in (for `status`).
let namespaceVariable = "NFTPOOL_NETNS"

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
    setenv(namespaceVariable, netns, 1)
    let cArgs = args.map { strdup($0) } + [nil]
    // The binary's own path, not /proc/self/exe: the process name (comm) stays `nftpool`, which
    // keepalived's liveness check of an HA node looks for.
    var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &path, path.count - 1)
    if n > 0 { execv(String(decoding: path[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self), cArgs) }
    // The binary was replaced or deleted meanwhile (readlink says "... (deleted)"): the open one.
    execv("/proc/self/exe", cArgs)
    Stderr.print("cannot re-execute nftpool inside namespace \(netns): \(String(cString: strerror(errno)))")
    throw ExitCode(ExitStatus.kernelRefused)
}

extension DaemonLogHandler.Format: ExpressibleByArgument {}

enum StatusOutput: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show each pool's backends: admin state, health, weight and slots held, from the running daemon(s).",
        discussion: """
            Without FILE, every running daemon's table is shown (with --netns, those in that namespace). Exit 0, 1 when no daemon runs the table (or \
            the one that wrote its status is gone), 2 invalid spec.
            """
    )

    @Argument(help: ArgumentHelp("The pool spec, YAML or JSON; - reads standard input. Omit it to show every running daemon.", valueName: "FILE"))
    var file: String?

    @Option(help: ArgumentHelp("The daemon's status file (default /run/nftpool/<table>.<netns>.json).", valueName: "PATH"))
    var statusFile: String?

    @Option(help: "text or json.")
    var output: StatusOutput = .text

    @Option(help: ArgumentHelp("The daemon's network namespace (default: the one it recorded); without FILE, only the daemons there.", valueName: "NAME"))
    var netns: String?

    func run() throws {
        var paths: [String]
        if let file {
            let spec = try SpecInput.load(file, readingCAFiles: false)
            let path = statusFile ?? StatusFile.defaultPath(table: spec.table, namespace: DaemonLock.namespaceID(named: netns))
            paths = [path]
            // A daemon started with --netns publishes under its namespace: find it without repeating it.
            if statusFile == nil, netns == nil, !FileManager.default.fileExists(atPath: path) {
                let found = StatusFile.all().filter { (try? StatusFile.read(path: $0))?.table == spec.table }
                if !found.isEmpty { paths = found }
            }
        } else {
            paths = statusFile.map { [$0] } ?? StatusFile.all()
        }
        var docs: [StatusFile.Document] = []
        var problems: [String] = []
        if file == nil && statusFile == nil {
            // --netns narrows to the daemons of that namespace (as `backend --netns` does); their files and
            // sockets are named <table>.<netns inode>.
            var inNamespace: (String) -> Bool = { _ in true }
            if let netns {
                let namespace = DaemonLock.namespaceID(named: netns)
                guard namespace != 0 else {
                    Stderr.print("--netns \(netns): no such network namespace (ip netns list)")
                    throw ExitCode(ExitStatus.usage)
                }
                inNamespace = { ($0 as NSString).deletingPathExtension.hasSuffix(".\(namespace)") }
                paths = paths.filter(inNamespace)
            }
            // Every daemon that answers on its control socket, live, wherever it writes its status file.
            for socket in ControlSocket.all() where inNamespace(socket) {
                guard let live = try? ControlClient.ask(.init(command: .status), at: socket, timeout: 3).status else { continue }
                docs.append(withCurrentFigures(live))
            }
            let seen = Set(docs.compactMap(\.lock))
            paths = paths.filter { path in (try? StatusFile.read(path: path)).map { $0.lock.map { !seen.contains($0) } ?? true } ?? true }
        }
        for path in paths {
            guard let doc = try? StatusFile.read(path: path) else {
                problems.append("no status at \(path): is `nftpool run` running?")
                continue
            }
            guard StatusFile.isLive(doc) else {
                problems.append("the daemon that wrote \(path) (pid \(doc.pid)) is gone: its status is stale")
                continue
            }
            // Live from the daemon itself when it answers; its last written status when it does not.
            var current = doc
            if let socket = doc.control {
                do {
                    let reply = try ControlClient.ask(.init(command: .status), at: socket, timeout: 3)
                    if let live = reply.status { current = live }
                } catch {
                    problems.append("\(error); showing its status as written \(String(format: "%.1fs", max(0, Date().timeIntervalSince1970 - doc.updated))) ago")
                }
            }
            docs.append(withCurrentFigures(current))
        }
        if docs.isEmpty {
            for p in problems { Stderr.print(p) }
            if problems.isEmpty {
                let there = file == nil && statusFile == nil ? netns.map { " in netns \($0)" } ?? "" : ""
                Stderr.print("no nftpool daemon is running\(there) (no status in \(DaemonLock.directory))")
            }
            throw ExitCode(ExitStatus.kernelRefused)
        }
        if output == .json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            // One daemon: its document (what scripts read); several: an array.
            let data = docs.count == 1 ? try encoder.encode(docs[0]) : try encoder.encode(docs)
            print(String(decoding: data, as: UTF8.self))
        } else {
            for doc in docs { printText(doc) }
        }
        for p in problems { Stderr.print(p) }
    }

    /// Time in state as of now, and the kernel's counters read in the daemon's namespace.
    func withCurrentFigures(_ document: StatusFile.Document) -> StatusFile.Document {
        var doc = document
        let now = Date().timeIntervalSince1970
        var counters: [String: NetfilterKernel.Counter] = [:]
        do {
            let read = try NetfilterKernel(netns: netns ?? doc.netns).counters(of: doc.table, sets: BackendCounterSets.sets) ?? [:]
            for (element, c) in read.values.joined() {
                guard let endpoint = BackendCounterSets.endpoint(of: element.key) else { continue }
                counters[endpoint, default: .init(packets: 0, bytes: 0)].packets += c.packets
                counters[endpoint, default: .init(packets: 0, bytes: 0)].bytes += c.bytes
            }
        } catch {
            Stderr.print("kernel counters unavailable: \(error)")
        }
        for p in doc.pools.indices {
            for b in doc.pools[p].backends.indices {
                let c = counters[doc.pools[p].backends[b].endpoint]
                doc.pools[p].backends[b].packets = c?.packets
                doc.pools[p].backends[b].bytes = c?.bytes
                doc.pools[p].backends[b].since = doc.pools[p].backends[b].sinceTime.map { max(0, now - $0) }
            }
        }
        return doc
    }

    func printText(_ doc: StatusFile.Document) {
        let now = Date().timeIntervalSince1970
        print("table inet \(doc.table) (nftpool run, pid \(doc.pid)\(doc.netns.map { ", netns \($0)" } ?? ""))")
        if let ha = doc.ha {
            print("ha: node \(ha.node), \(ha.role) for \(String(format: "%.0fs", now - ha.roleSince)), track file \(ha.track.map(String.init) ?? "-")\(ha.trackReason.map { " (\($0))" } ?? "")")
            if let resynced = ha.resynced {
                print("ha: conntrack state \(resynced ? "resynced" : "NOT resynced: \(ha.resyncPending ?? "?")")")
            }
            for peer in ha.peers ?? [] {
                let heard = peer.heard.map { String(format: "heard %.1fs ago", max(0, now - $0)) } ?? "never heard"
                let state = peer.lost ? "LOST (\(heard))" : "\(peer.role), priority \(peer.priority), \(peer.resynced ? "resynced" : "NOT resynced"), \(heard)"
                print("ha: peer \(peer.node): \(state)\(peer.lost ? "" : peer.sameTable ? ", same table" : ", TABLE DIFFERS")")
            }
        }
        if doc.kernel.inSync {
            print("kernel: in sync\(doc.kernel.repairs > 0 ? "; \(doc.kernel.repairs) foreign change\(doc.kernel.repairs == 1 ? "" : "s") restored" : "")")
        } else {
            let since = doc.kernel.outOfSyncSince.map { String(format: " for %.0fs", now - $0) } ?? ""
            print("kernel: OUT OF SYNC\(since) (\(doc.kernel.refusedAttempts) refused attempts): \(doc.kernel.error ?? "not confirmed"); slots below are what the kernel holds")
        }
        for pool in doc.pools {
            print("pool \(pool.name): \(pool.slots) slots")
            var rows = [["BACKEND", "STATE", "HEALTH", "WEIGHT", "SLOTS", "FOR", "PACKETS", "BYTES", "LAST PROBE"]]
            for b in pool.backends {
                let since = b.since.map { String(format: "%.0fs", $0) } ?? "-"
                let state = b.state + (b.stateFrom == "runtime" ? " (runtime)" : "")
                var health = b.health
                if let until = b.heldUntil { health += String(format: " (held %.0fs: flapping)", max(0, until - Date().timeIntervalSince1970)) }
                if let ramp = b.ramp { health += String(format: " (slowstart %.0f%%)", ramp * 100) }
                let weight = "\(b.weight)" + (b.weightFrom == "runtime" ? " (runtime)" : "")
                rows.append([b.endpoint, state, health, weight, "\(b.slots)", since,
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
