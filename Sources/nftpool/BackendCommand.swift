import ArgumentParser
import Daemon
import Foundation
import PoolSpec

struct BackendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backend",
        abstract: "Drain, disable, enable or reweight a backend in the running daemon, at once.",
        discussion: """
            The daemon applies the change in one transaction and keeps it over reloads and restarts (a runtime \
            override of the spec, shown by `nftpool status`), until changed back. It is reached over its \
            control socket in /run/nftpool (root only). Exit 0 done, 1 refused (the last serving backend \
            without --force; the kernel refused; --wait timed out) or no daemon, 2 no such pool or backend.
            """,
        subcommands: [Drain.self, Disable.self, Enable.self, Weight.self]
    )

    struct Target: ParsableArguments {
        @Argument(help: "The pool's name.")
        var pool: String

        @Argument(help: ArgumentHelp("ADDRESS:PORT as `status` shows it, or the address alone when the pool has it once.", valueName: "BACKEND"))
        var backend: String

        @Option(help: ArgumentHelp("The daemon's table, when several daemons have the pool.", valueName: "NAME"))
        var table: String?

        @Option(help: ArgumentHelp("The daemon's network namespace (`ip netns` name), when several daemons have the pool.", valueName: "NAME"))
        var netns: String?

        @Option(help: ArgumentHelp("The daemon's control socket, instead of finding it in /run/nftpool.", valueName: "PATH"))
        var socket: String?
    }

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "No new connections to the backend; its established ones go on, and so do its probes.")
        @OptionGroup var target: Target
        @Flag(help: "Drain the pool's last serving backend anyway.")
        var force = false
        @Option(help: ArgumentHelp("Then wait until the backend has no open connection (from conntrack), at most this long (30s, 5m).", valueName: "DURATION"))
        var wait: String?

        func run() throws {
            var timeout: Duration?
            if let wait {
                guard let d = DurationText.parse(wait), d > .zero else {
                    Stderr.print("--wait: \(wait) is not a duration (30s, 5m, 500ms)")
                    throw ExitCode(ExitStatus.usage)
                }
                timeout = d
            }
            let socket = try target.findSocket()
            let reply = try BackendCommand.send(.init(command: .set, pool: target.pool, backend: target.backend, state: "drain", force: force), to: socket)
            guard let timeout, let endpoint = reply.backend else { return }
            try BackendCommand.waitForNoConnections(pool: target.pool, backend: endpoint, socket: socket, timeout: timeout)
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take the backend out: no new connections, no probes.")
        @OptionGroup var target: Target
        @Flag(help: "Disable the pool's last serving backend anyway.")
        var force = false
        @Flag(help: "Also end its established connections (their clients reconnect to another backend).")
        var closeConnections = false

        func run() throws {
            try BackendCommand.send(.init(command: .set, pool: target.pool, backend: target.backend, state: "disabled",
                                          force: force, closeConnections: closeConnections), to: try target.findSocket())
        }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Back in service (a disabled, checked backend first passes its checks).")
        @OptionGroup var target: Target

        func run() throws {
            try BackendCommand.send(.init(command: .set, pool: target.pool, backend: target.backend, state: "enabled"), to: try target.findSocket())
        }
    }

    struct Weight: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set the backend's weight (1 to 1000); its share of the slots follows.")
        @OptionGroup var target: Target
        @Argument(help: "The new weight.")
        var weight: Int

        func run() throws {
            try BackendCommand.send(.init(command: .set, pool: target.pool, backend: target.backend, weight: weight), to: try target.findSocket())
        }
    }

    /// Sends, prints the daemon's line, and exits with its status when it is not 0.
    @discardableResult
    static func send(_ request: ControlMessage.Request, to socket: String) throws -> ControlMessage.Reply {
        let reply: ControlMessage.Reply
        do {
            reply = try ControlClient.ask(request, at: socket)
        } catch {
            Stderr.print(error.description)
            throw ExitCode(ExitStatus.kernelRefused)
        }
        if reply.exit == 0 {
            print(reply.message)
        } else {
            Stderr.print(reply.message)
            throw ExitCode(reply.exit)
        }
        return reply
    }

    static func waitForNoConnections(pool: String, backend: String, socket: String, timeout: Duration) throws {
        let start = ContinuousClock.now
        var last = -1
        while true {
            let reply: ControlMessage.Reply
            do {
                reply = try ControlClient.ask(.init(command: .connections, pool: pool, backend: backend), at: socket)
            } catch {
                Stderr.print(error.description)
                throw ExitCode(ExitStatus.kernelRefused)
            }
            guard reply.exit == 0, let n = reply.connections else {
                Stderr.print(reply.message)
                throw ExitCode(reply.exit == 0 ? ExitStatus.kernelRefused : reply.exit)
            }
            let waited = DurationText.format(start.duration(to: .now))
            if n == 0 {
                print("pool \(pool) backend \(backend): no open connection after \(waited)")
                return
            }
            if ContinuousClock.now - start >= timeout {
                Stderr.print("pool \(pool) backend \(backend): still \(n) open connection\(n == 1 ? "" : "s") after \(waited) (--wait \(DurationText.format(timeout)))")
                throw ExitCode(ExitStatus.kernelRefused)
            }
            if n != last {
                print("pool \(pool) backend \(backend): \(n) open connection\(n == 1 ? "" : "s"), waiting")
                last = n
            }
            // Each poll is a conntrack dump on the daemon's loop: twice a second is plenty for a drain.
            Thread.sleep(forTimeInterval: 0.5)
        }
    }
}

extension BackendCommand.Target {
    /// The control socket of the one running daemon that has the pool (narrowed by --table / --netns).
    /// Found by the sockets in /run/nftpool themselves (each daemon is asked for its pools), so a daemon
    /// that writes its status elsewhere (--status-file) is found too.
    func findSocket() throws -> String {
        if let socket { return socket }
        let namespace = netns.map { DaemonLock.namespaceID(named: $0) }
        if netns != nil, namespace == 0 {
            Stderr.print("--netns \(netns!): no such network namespace (ip netns list)")
            throw ExitCode(ExitStatus.usage)
        }
        var daemons: [(path: String, doc: StatusFile.Document)] = []
        var unreachable: [String] = []
        for path in ControlSocket.all() {
            let name = (path as NSString).lastPathComponent
            if let table, !name.hasPrefix("\(table).") { continue }
            if let namespace, !name.hasSuffix(".\(namespace).sock") { continue }
            do {
                if let doc = try ControlClient.ask(.init(command: .status), at: path, timeout: 5).status { daemons.append((path, doc)) }
            } catch {
                unreachable.append(error.description)
            }
        }
        let narrowed = [table.map { "table \($0)" }, netns.map { "netns \($0)" }].compactMap { $0 }.joined(separator: ", ")
        let having = daemons.filter { $0.doc.pools.contains { $0.name == pool } }
        if having.count == 1 { return having[0].path }
        if daemons.isEmpty {
            for line in unreachable { Stderr.print(line) }
            Stderr.print("no running nftpool daemon\(narrowed.isEmpty ? "" : " with \(narrowed)") answers in \(DaemonLock.directory)")
            throw ExitCode(ExitStatus.kernelRefused)
        }
        if having.isEmpty {
            Stderr.print("no running daemon has a pool \(pool) (\(daemons.map { Self.describe($0.doc) }.joined(separator: "; ")))")
            throw ExitCode(ExitStatus.invalidSpec)
        }
        Stderr.print("pool \(pool) is in several daemons' tables (\(having.map { Self.describe($0.doc) }.joined(separator: "; "))): choose one with --table or --netns")
        throw ExitCode(ExitStatus.usage)
    }

    static func describe(_ doc: StatusFile.Document) -> String {
        "table \(doc.table)\(doc.netns.map { " in netns \($0)" } ?? ""): pools \(doc.pools.prefix(8).map(\.name).joined(separator: ", "))\(doc.pools.count > 8 ? ", …" : "")"
    }
}
