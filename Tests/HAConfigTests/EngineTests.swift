import Foundation
import Testing

@testable import HAConfig
import PoolSpec
import TestSupport

/// The generated files run by the real engines (keepalived 2.2.7, conntrackd 1.4.7) inside a namespace made
/// by the test, with the spec's interfaces as veth ends. Needs root; fails, never skips, without it.
@Suite(.serialized) struct HAEngineTests {
    static let keepalived = URL(fileURLWithPath: "/usr/sbin/keepalived")
    static let conntrackd = URL(fileURLWithPath: "/usr/sbin/conntrackd")

    /// A scratch directory for one test (config and runtime directories), removed afterwards.
    final class Scratch {
        let root: URL
        var config: String { root.appendingPathComponent("etc").path }
        var run: String { root.appendingPathComponent("run").path }
        init(_ label: String) throws {
            root = URL(fileURLWithPath: "/tmp/nftpool-ha-\(getpid())-\(label)-\(UUID().uuidString.prefix(6))")
            try FileManager.default.createDirectory(atPath: root.appendingPathComponent("run").path, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root.appendingPathComponent("etc").path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(at: root) }

        func write(_ files: HAConfig.Files) throws {
            try files.keepalived.write(toFile: "\(config)/\(HAConfig.keepalivedFile)", atomically: true, encoding: .utf8)
            try files.conntrackd.write(toFile: "\(config)/\(HAConfig.conntrackdFile)", atomically: true, encoding: .utf8)
            let script = "\(config)/\(HAConfig.notifyScriptFile)"
            try files.notifyScript.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o755)
        }
    }

    /// A namespace holding ha.interface, backendInterface and sync.interface (veth ends, up), with `node`'s
    /// addresses on the client and sync legs.
    static func nodeNamespace(_ label: String, _ ha: HA, _ node: HANode) throws -> ScratchNamespace {
        try requireEngines()
        let ns = try ScratchNamespace(label)
        var made = Set<String>()
        for (i, dev) in [ha.interface, ha.backendInterface, ha.sync.interface].enumerated() where made.insert(dev).inserted {
            try check(Repo.run(ScratchNamespace.ip, ["-n", ns.name, "link", "add", dev, "type", "veth", "peer", "name", "peer\(i)"]))
            try check(Repo.run(ScratchNamespace.ip, ["-n", ns.name, "link", "set", dev, "up"]))
            try check(Repo.run(ScratchNamespace.ip, ["-n", ns.name, "link", "set", "peer\(i)", "up"]))
        }
        try check(Repo.run(ScratchNamespace.ip, ["-n", ns.name, "link", "set", "lo", "up"]))
        let bits = { (a: IPAddress) in a.family == .ipv4 ? "24" : "64" }
        try check(Repo.run(ScratchNamespace.ip, ["-n", ns.name, "addr", "add", "\(node.address)/\(bits(node.address))", "nodad", "dev", ha.interface]))
        try check(Repo.run(ScratchNamespace.ip, ["-n", ns.name, "addr", "add", "\(node.syncAddress)/\(bits(node.syncAddress))", "nodad", "dev", ha.sync.interface]))
        return ns
    }

    static func requireEngines() throws {
        try ScratchNamespace.requireKernelTools()
        for tool in [keepalived, conntrackd] where !FileManager.default.isExecutableFile(atPath: tool.path) {
            throw KernelTestError("ha engine tests need \(tool.path) (apt-get install keepalived conntrackd)")
        }
    }

    static func check(_ r: (status: Int32, out: String, err: String)) throws {
        guard r.status == 0 else { throw KernelTestError("command failed (\(r.status)): \(r.err)") }
    }

    /// A background process inside `ns`, its output in `log`; stopped (SIGTERM, then SIGKILL) by `stop`.
    final class Background {
        let process = Process()
        let log: URL
        init(_ ns: ScratchNamespace, _ executable: String, _ arguments: [String], log: URL) throws {
            self.log = log
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.executableURL = ScratchNamespace.ip
            process.arguments = ["netns", "exec", ns.name, executable] + arguments  // ip execs: same pid
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }
        var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        func stop() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGTERM)
            for _ in 0..<50 where process.isRunning { usleep(100_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        deinit { stop() }
    }

    /// Polls `condition` every 50 ms for up to `seconds`.
    static func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    /// `keepalived -t` exits 0 for the generated file and non-zero (5, config error) for a broken one.
    @Test(arguments: haExamples)
    func keepalivedConfigTestAcceptsTheFiles(example: String) throws {
        let spec = try loadExample(example)
        let ha = try #require(spec.ha)
        for node in ha.nodes {
            let scratch = try Scratch("t-\(node.name)")
            try scratch.write(try HAConfig.generate(spec, node: node.name, configDirectory: scratch.config, runtimeDirectory: scratch.run))
            let ns = try Self.nodeNamespace("kt", ha, node)
            let conf = "\(scratch.config)/\(HAConfig.keepalivedFile)"
            let r = try ns.exec(Self.keepalived.path, ["-t", "-f", conf])
            #expect(r.status == 0, "keepalived -t for \(node.name): \(r.out)\(r.err)")
            #expect(r.err.isEmpty && r.out.isEmpty, "keepalived -t warned: \(r.err)")
            // The check is real: the same file with an unknown interface is refused.
            try (try String(contentsOfFile: conf, encoding: .utf8)).replacingOccurrences(of: "interface \(ha.interface)\n", with: "interface nosuchif0\n")
                .write(toFile: conf, atomically: true, encoding: .utf8)
            let broken = try ns.exec(Self.keepalived.path, ["-t", "-f", conf])
            #expect(broken.status != 0)
        }
    }

    /// conntrackd starts with the file (its own lock and socket under RUNDIR, sync interface present) and
    /// answers `-s` over its UNIX socket.
    @Test(arguments: haExamples)
    func conntrackdStartsAndAnswers(example: String) throws {
        let spec = try loadExample(example)
        let ha = try #require(spec.ha)
        let node = ha.nodes[0]
        let scratch = try Scratch("ct")
        let paths = HAConfig.Paths(configDirectory: scratch.config, runtimeDirectory: scratch.run, table: spec.table, node: node.name)
        try scratch.write(try HAConfig.generate(spec, node: node.name, configDirectory: scratch.config, runtimeDirectory: scratch.run))
        let ns = try Self.nodeNamespace("ct", ha, node)
        let daemon = try Background(ns, Self.conntrackd.path, ["-C", paths.conntrackdConf], log: scratch.root.appendingPathComponent("conntrackd.log"))
        defer { daemon.stop() }
        var stats = (status: Int32(-1), out: "", err: "")
        let answered = try Self.eventually(5) {
            stats = try ns.exec(Self.conntrackd.path, ["-C", paths.conntrackdConf, "-s"])
            return stats.status == 0
        }
        #expect(answered, "conntrackd -s: \(stats.err); log: \(daemon.output)")
        #expect(stats.out.contains("cache internal"))
        #expect(FileManager.default.fileExists(atPath: paths.conntrackdSocket))
        #expect(FileManager.default.fileExists(atPath: paths.conntrackdLock))
        #expect(daemon.output.contains("disabling external cache"), "\(daemon.output)")
        #expect(daemon.process.isRunning)
    }

    /// Alone (no peer answers), keepalived holds FAULT until nftpool says ready (track file 0) and its
    /// daemon runs (pid file naming a process called nftpool); then it becomes MASTER and adds every VIP
    /// and the SNAT address; stopped, it removes them. The role reaches the notify fifo.
    @Test func aloneItBecomesMasterOnceNftpoolIsReady() throws {
        let spec = try loadExample("ha-pair")
        let ha = try #require(spec.ha)
        let node = ha.nodes[1]
        let scratch = try Scratch("ka")
        let paths = HAConfig.Paths(configDirectory: scratch.config, runtimeDirectory: scratch.run, table: spec.table, node: node.name)
        try scratch.write(try HAConfig.generate(spec, node: node.name, configDirectory: scratch.config, runtimeDirectory: scratch.run))
        let ns = try Self.nodeNamespace("ka", ha, node)

        // A stand-in daemon: a process whose name is nftpool.
        let fake = scratch.root.appendingPathComponent("nftpool")
        try FileManager.default.copyItem(atPath: "/bin/sleep", toPath: fake.path)
        let standIn = Process()
        standIn.executableURL = fake
        standIn.arguments = ["60"]
        try standIn.run()
        defer { kill(standIn.processIdentifier, SIGKILL); standIn.waitUntilExit() }
        try "\(standIn.processIdentifier)\n".write(toFile: paths.daemonPidFile, atomically: true, encoding: .utf8)

        mkfifo(paths.notifyFifo, 0o600)
        let fifo = open(paths.notifyFifo, O_RDWR | O_NONBLOCK)  // RDWR: opening never blocks
        defer { close(fifo) }

        // What a hard-killed node leaves behind: keepalived must remove it at start.
        try Self.check(Repo.run(ScratchNamespace.ip, ["-n", ns.name, "addr", "add", "10.50.0.10/32", "dev", ha.interface]))

        let keepalived = try Background(ns, Self.keepalived.path, [
            "-n", "-l", "-D", "-f", paths.keepalivedConf, "-p", paths.keepalivedPid, "-r", paths.keepalivedVRRPPid,
            "-c", paths.keepalivedCheckerPid,
        ], log: scratch.root.appendingPathComponent("keepalived.log"))
        defer { keepalived.stop() }

        func addresses() throws -> String { try Repo.run(ScratchNamespace.ip, ["-n", ns.name, "addr", "show"]).out }
        func notifications() -> String {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = read(fifo, &buffer, buffer.count)
            return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
        }
        // keepalived creates the track file holding -254: FAULT, no address added.
        #expect(Self.eventually(5) { (try? String(contentsOfFile: paths.trackFile, encoding: .utf8))?.hasPrefix("-254") == true })
        usleep(1_500_000)
        #expect(keepalived.output.contains("entering FAULT state (tracked file nftpool_ready has status -254)"), "\(keepalived.output)")
        #expect(!(try addresses()).contains("10.50.0.10/32"), "a stale VIP is removed at start")

        try "0\n".write(toFile: paths.trackFile + ".tmp", atomically: false, encoding: .utf8)
        rename(paths.trackFile + ".tmp", paths.trackFile)
        let master = try Self.eventually(5) {
            let a = try addresses()
            return a.contains("inet 10.50.0.10/32") && a.contains("inet 10.60.0.100/32") && a.contains("inet6 fd50::10/128")
        }
        #expect(master, "addresses: \((try? addresses()) ?? "")\nlog: \(keepalived.output)")
        #expect(keepalived.output.contains("Entering MASTER STATE"))
        let lines = ip(ns, ["-o", "addr", "show"])
        #expect(lines.contains { $0.contains(" \(ha.interface) ") && $0.contains("10.50.0.10/32") })
        #expect(lines.contains { $0.contains(" \(ha.backendInterface) ") && $0.contains("10.60.0.100/32") })
        #expect(lines.contains { $0.contains(" \(ha.interface) ") && $0.contains("fd50::10/128") })
        var roles = ""
        _ = Self.eventually(2) { roles += notifications(); return roles.contains("MASTER") }
        #expect(roles.contains("INSTANCE \"nftpool_\(spec.table)\" MASTER 150") || roles.contains("INSTANCE \"nftpool_\(spec.table)\" MASTER 100"), "fifo: \(roles)")

        keepalived.stop()
        #expect(!(try addresses()).contains("10.50.0.10/32"), "a stopped keepalived leaves no VIP")
    }

    static func ipLines(_ ns: ScratchNamespace, _ args: [String]) -> [String] {
        ((try? Repo.run(ScratchNamespace.ip, ["-n", ns.name] + args).out) ?? "").split(separator: "\n").map(String.init)
    }
    func ip(_ ns: ScratchNamespace, _ args: [String]) -> [String] { Self.ipLines(ns, args) }
}
