import Foundation
import Testing

import TestSupport

/// `nftpool run --node` keeps the HA contract with keepalived (docs/ha.md): pid file with the process
/// name keepalived's check looks for, track file 0 once the table is loaded and -254 when stopping, the
/// role read from the notify fifo and shown by `status`.
@Suite(.serialized) struct HANodeLinkTests {
    @Test func theDaemonPublishesItsPidAndTrackFileAndLearnsItsRole() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("ha-link")
        #expect(try ns.exec("ip", ["addr", "add", "10.50.0.3/32", "dev", "lo"]).status == 0)  // lb-b's address
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("nftpool-ha-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let rundir = dir.appendingPathComponent("run").path, statusFile = dir.appendingPathComponent("status.json").path
        let p = Process()
        p.executableURL = Repo.nftpool
        p.arguments = ["run", "--netns", ns.name, "--status-file", statusFile, "--runtime-dir", rundir,
                       Repo.rulesets.appendingPathComponent("ha-pair.yaml").path]
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() } }

        let track = "\(rundir)/nftpool.lb-b.track", pidFile = "\(rundir)/nftpool.lb-b.pid"
        func read(_ path: String) -> String { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines) }
        func wait(_ condition: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(5)
            while !condition() && Date() < deadline { usleep(20_000) }
            return condition()
        }
        #expect(wait { read(track) == "0" }, "the node found itself (lb-b, by its local address) and may hold the VIPs")
        let pid = read(pidFile)
        #expect(pid == "\(p.processIdentifier)")
        #expect(read("/proc/\(pid)/comm") == "nftpool", "keepalived's liveness check looks for this name (also after the --netns re-exec)")

        // keepalived's notify_fifo line ─► the role in status.
        let fifo = FileHandle(forWritingAtPath: "\(rundir)/nftpool.lb-b.notify")
        fifo?.write(Data("INSTANCE \"nftpool_nftpool\" BACKUP 100\n".utf8))
        try? fifo?.close()
        var out = ""
        #expect(wait {
            out = (try? Repo.run(Repo.nftpool, ["status", "--status-file", statusFile]).out) ?? ""
            return out.contains("ha: node lb-b, BACKUP")
        }, "\(out)")

        p.terminate()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(read(track) == "-254", "stopping gives the VIPs up")
        #expect(!FileManager.default.fileExists(atPath: pidFile))
    }

    @Test func aWrongNodeOrNoHASectionIsAUsageError() throws {
        let unknown = try Repo.run(Repo.nftpool, ["run", "--node", "zz", Repo.rulesets.appendingPathComponent("ha-pair.yaml").path])
        #expect(unknown.status == 2 && unknown.err == "--node: no node \"zz\" in ha.nodes (lb-a, lb-b)\n", "\(unknown)")
        let plain = try Repo.run(Repo.nftpool, ["run", "--node", "lb-a", Repo.rulesets.appendingPathComponent("weighted.yaml").path])
        #expect(plain.status == 2 && plain.err == "--node: the spec has no ha section\n", "\(plain)")
    }
}
