import Foundation
import IntegrationHarness
import TestSupport
import Testing

/// `nftpool backend drain|disable|enable|weight` through the CLI against the running daemon, with real
/// connections: what a drained backend keeps and gets, what survives SIGHUP and a restart, `--wait`.
@Suite(.serialized) struct RuntimeControlTests {
    static func counts(_ r: [String: Any]) -> [String: Int] { r["counts"] as? [String: Int] ?? [:] }

    func backend(_ sb: Sandbox, _ args: [String], timeout: Double = 10) throws -> (status: Int32, out: String, err: String, timedOut: Bool) {
        try sb.nftpool(["backend"] + args + ["--netns", sb.lb], timeout: timeout)
    }

    @Test func drainKeepsTheHeldConnectionSurvivesReloadAndRestartAndWaitReturnsWhenItCloses() throws {
        let sb = try Sandbox("drain")
        let state = sb.dir.appendingPathComponent("runtime.json").path
        let spec = DaemonTests.spec()
        try sb.startDaemon(spec, extra: ["--state-file", state, "--metrics-address", "off"])
        #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 }, "\(sb.daemonLogText())")

        // One connection held for 9 s through everything below.
        let held = try sb.startTraffic(["hold", "--target", Sandbox.vip4, "--interval", "0.05", "--duration", "9"])
        let first = try #require(try held.nextLine()["first"] as? String)
        let victim = Int(first.dropFirst())!
        let endpoint = DaemonTests.endpoint(victim)

        let drained = try backend(sb, ["drain", "web", Sandbox.backendAddress(victim)])
        #expect(drained.status == 0 && drained.out.contains("pool web backend \(endpoint): enabled → drain (runtime override); one transaction of"), "\(drained)")
        func noNewConnections(_ when: String) throws {
            let fresh = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "30"])
            #expect(fresh["failures"] as? Int == 0, "\(when): \(fresh)")
            #expect(Self.counts(fresh)[first] == nil && Self.counts(fresh).values.reduce(0, +) == 30, "\(when): new connections avoid \(first): \(fresh)")
        }
        try noNewConnections("drained")
        // status without FILE: live from the daemon's socket, with where the state comes from.
        let status = try Repo.run(Repo.nftpool, ["status", "--netns", sb.lb])
        #expect(status.status == 0 && status.out.contains("drain (runtime)"), "\(status)")
        #expect(status.out.split(separator: "\n").contains { $0.contains(endpoint) && $0.contains("drain (runtime)") && $0.contains(" up ") }, "probes go on: \(status.out)")
        #expect(status.out.components(separatedBy: "table inet ").count == 2, "--netns shows that namespace's daemon alone: \(status.out)")
        let elsewhere = try Repo.run(Repo.nftpool, ["status", "--netns", sb.client])
        #expect(elsewhere.status == 1 && elsewhere.out.isEmpty && elsewhere.err.contains("no nftpool daemon is running in netns \(sb.client)"), "\(elsewhere)")

        sb.signalDaemon(SIGHUP)
        #expect(sb.wait(timeout: 3) { sb.daemonLogText().contains("reloaded:") })
        try noNewConnections("after SIGHUP")

        sb.signalDaemon(SIGTERM)
        #expect(sb.waitDaemonExit() == 0)
        try sb.startDaemon(spec, extra: ["--state-file", state, "--metrics-address", "off"])
        #expect(sb.wait(timeout: 5) { sb.daemonLogText().contains("runtime overrides from \(state): web/\(endpoint)") }, "\(sb.daemonLogText())")
        #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 })
        try noNewConnections("after a restart")

        // The held connection is still open: --wait waits for it, and returns once it closes.
        let start = Date()
        let waited = try backend(sb, ["drain", "web", endpoint, "--wait", "20s"], timeout: 25)
        let took = Date().timeIntervalSince(start)
        let summary = try held.finish()
        #expect(waited.status == 0, "\(waited)")
        #expect(waited.out.contains("drain (unchanged)") && waited.out.contains("1 open connection, waiting") && waited.out.contains("no open connection after"), "\(waited.out)")
        #expect(took > 1, "it waited for the held connection (\(took) s)")
        #expect(summary["failures"] as? Int == 0 && summary["names"] as? [String] == [first], "the drained backend kept its connection: \(summary)")
        print("figure: drain --wait returned \(String(format: "%.2f", took)) s after it was started; the held connection ended then: \(summary)")

        // Timed out: exit 1 and how many are left.
        let again = try sb.startTraffic(["hold", "--target", Sandbox.vip4, "--interval", "0.05", "--duration", "4"])
        let other = try #require(try again.nextLine()["first"] as? String)
        let timedOut = try backend(sb, ["drain", "web", Sandbox.backendAddress(Int(other.dropFirst())!), "--wait", "500ms"])
        #expect(timedOut.status == 1 && timedOut.err.contains("still 1 open connection after"), "\(timedOut)")
        _ = try again.finish()

        // enable: back to what the spec says, the override gone from the state file.
        let enabled = try backend(sb, ["enable", "web", endpoint])
        #expect(enabled.status == 0 && enabled.out.contains("drain → enabled (as the spec says)"), "\(enabled)")
        let after = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "30"])
        #expect(after["failures"] as? Int == 0 && (Self.counts(after)[first] ?? 0) >= 5, "\(first) serves again: \(after)")
        let stored = try String(contentsOfFile: state, encoding: .utf8)
        #expect(!stored.contains(endpoint), "\(stored)")
    }

    @Test func disableClosesOnRequestWeightMovesSharesAndTheLastBackendNeedsForce() throws {
        let sb = try Sandbox("disable")
        let state = sb.dir.appendingPathComponent("runtime.json").path
        try sb.startDaemon(DaemonTests.spec(), extra: ["--state-file", state, "--metrics-address", "off"])
        #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 }, "\(sb.daemonLogText())")

        // disable --close-connections: its held connection ends at once; no probes while disabled.
        let held = try sb.startTraffic(["hold", "--target", Sandbox.vip4, "--interval", "0.05", "--duration", "3"])
        let first = try #require(try held.nextLine()["first"] as? String)
        let victim = Int(first.dropFirst())!
        let disabled = try backend(sb, ["disable", "web", DaemonTests.endpoint(victim), "--close-connections"])
        #expect(disabled.status == 0 && disabled.out.contains("enabled → disabled"), "\(disabled)")
        let summary = try held.finish()
        #expect(summary["failures"] as? Int == 1, "the established connection is ended: \(summary)")
        #expect(sb.wait(timeout: 2) { sb.daemonLogText().contains("backend \(DaemonTests.endpoint(victim)): closed 1 connection") }, "\(sb.daemonLogText())")

        // weight: 3 of 4 (two enabled backends), about three quarters of new connections.
        let others = [0, 1, 2].filter { $0 != victim }
        let heavy = try backend(sb, ["weight", "web", DaemonTests.endpoint(others[0]), "3"])
        #expect(heavy.status == 0 && heavy.out.contains("weight 1 → 3 (runtime override)"), "\(heavy)")
        let spread = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "80"])
        let share = Self.counts(spread)["b\(others[0])"] ?? 0
        #expect(spread["failures"] as? Int == 0 && (55...65).contains(share), "weight 3 of 4 takes 3/4 of 80 round-robin connections: \(spread)")
        let badWeight = try backend(sb, ["weight", "web", DaemonTests.endpoint(others[0]), "0"])
        #expect(badWeight.status == 2 && badWeight.err == "weight 0 is out of range: a weight is 1 to 1000\n", "\(badWeight)")

        // The last serving backend: refused without --force, nothing changed; with it, the pool rejects.
        #expect(try backend(sb, ["drain", "web", DaemonTests.endpoint(others[0])]).status == 0)
        let refused = try backend(sb, ["drain", "web", DaemonTests.endpoint(others[1])])
        #expect(refused.status == 1 && refused.err.contains("is the last serving backend of pool web") && refused.err.contains("--force"), "\(refused)")
        #expect(Self.counts(try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "10"])) == ["b\(others[1])": 10])
        let forced = try backend(sb, ["drain", "web", DaemonTests.endpoint(others[1]), "--force"])
        #expect(forced.status == 0, "\(forced)")
        let rejected = try sb.traffic(["connect", "--target", Sandbox.vip4, "--timeout", "1"])
        #expect(rejected["error"] as? String == "refused", "\(rejected)")

        // enable of a disabled checked backend: it serves again once its checks rise.
        #expect(try backend(sb, ["enable", "web", DaemonTests.endpoint(victim)]).status == 0)
        #expect(sb.wait(timeout: 3) { (try? sb.traffic(["connect", "--target", Sandbox.vip4, "--timeout", "1"]))?["error"] == nil })

        // Mistakes: one line, an exit code, nothing sent.
        let noPool = try backend(sb, ["drain", "nope", "10.0.0.1"])
        #expect(noPool.status == 2 && noPool.err.hasPrefix("no running daemon has a pool nope"), "\(noPool)")
        let noBackend = try backend(sb, ["drain", "web", "10.9.9.9"])
        #expect(noBackend.status == 2 && noBackend.err.hasPrefix("pool web has no backend \"10.9.9.9\""), "\(noBackend)")
        let noDaemon = try sb.nftpool(["backend", "drain", "web", "10.9.9.9", "--table", "nosuchtable"])
        #expect(noDaemon.status == 1 && noDaemon.err.contains("no running nftpool daemon with table nosuchtable"), "\(noDaemon)")
        let badWait = try backend(sb, ["drain", "web", "10.9.9.9", "--wait", "soon"])
        #expect(badWait.status == 64 && badWait.err.contains("--wait: soon is not a duration"), "\(badWait)")

        // Root only: the socket's directory and mode keep other users out.
        let socket = try #require(try FileManager.default.contentsOfDirectory(atPath: "/run/nftpool").first { $0.hasPrefix("dtest.") && $0.hasSuffix(".sock") })
        var st = stat()
        #expect(stat("/run/nftpool/\(socket)", &st) == 0 && st.st_mode & 0o777 == 0o600)
        let nobody = try Repo.run(URL(fileURLWithPath: "/usr/bin/setpriv"), ["--reuid=65534", "--regid=65534", "--clear-groups", Repo.nftpool.path,
                                                                             "backend", "enable", "web", DaemonTests.endpoint(victim), "--socket", "/run/nftpool/\(socket)"])
        #expect(nobody.status == 1 && nobody.err.contains("Permission denied"), "\(nobody)")
        #expect(sb.daemonLogText().components(separatedBy: "\n").filter { $0.contains("(runtime override)") || $0.contains("(as the spec says)") }.count >= 5)
    }
}
