import Foundation
import IntegrationHarness
import Testing

/// Passive health with real traffic: a client opens a connection every 5 ms while one backend's server is
/// killed (its host answers with resets). With `passive: {errorLimit: 1}` the kernel's first reset takes
/// the backend out; with active checks only, `fall` probes must fail first. Both in the same run.
@Suite(.serialized) struct PassiveHealthTests {
    static func spec(passive: Bool) -> String {
        DaemonTests.spec(extraCheck: passive ? ["passive: {errorLimit: 1, within: 10s}"] : [])
    }

    struct Trial {
        var failures: Int
        /// Kill to the end of the last failed connection.
        var lastFailure: Double
    }

    func trials(_ sb: Sandbox, count: Int) throws -> [Trial] {
        var out: [Trial] = []
        for trial in 0..<count {
            let victim = trial % 3
            let load = try sb.startTraffic(["loop", "--target", Sandbox.vip4, "--duration", "600", "--timeout", "1", "--pause", "0.005"])
            _ = try load.nextLine()
            usleep(200_000)
            let killedAt = Date().timeIntervalSince1970
            sb.killBackend(victim)
            #expect(sb.wait(timeout: 3) { sb.health()[DaemonTests.endpoint(victim)] == "down" }, "\(sb.daemonLogText())")
            usleep(300_000)  // connections after the removal, to see that none fail any more
            load.stop()
            let summary = try load.finish()
            let failures = summary["failures"] as? Int ?? -1
            let last = summary["last_failure"] as? Double
            out.append(Trial(failures: failures, lastFailure: last.map { max(0, $0 - killedAt) } ?? 0))
            try sb.reviveBackend(victim)
            #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 }, "b\(victim) comes back through rise: \(sb.health())")
        }
        return out
    }

    static func describe(_ t: [Trial]) -> (failures: [Int], p50: Double, max: Double, text: String) {
        let times = t.map(\.lastFailure).sorted()
        let failures = t.map(\.failures).sorted()
        let text = String(format: "failed connections p50 %d max %d; kill to last failure p50 %.1f ms max %.1f ms; per trial %@",
                          failures[failures.count / 2], failures.last!, times[times.count / 2] * 1000, times.last! * 1000,
                          t.map { "\($0.failures)/\(String(format: "%.0f", $0.lastFailure * 1000))ms" }.joined(separator: " "))
        return (failures, times[times.count / 2], times.last!, text)
    }

    @Test func aKilledServerIsTakenOutByItsFirstResetFasterThanByProbes() throws {
        var results: [Bool: [Trial]] = [:]
        for passive in [true, false] {
            let sb = try Sandbox(passive ? "passive" : "active-only")
            try sb.startDaemon(Self.spec(passive: passive), extra: ["--metrics-address", "off"])
            #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 }, "\(sb.daemonLogText())")
            if passive {
                #expect(sb.daemonLogText().contains("passive health: listening on NFLOG group"), "\(sb.daemonLogText())")
            }
            results[passive] = try trials(sb, count: 10)
            if passive {
                let log = sb.daemonLogText()
                #expect(log.components(separatedBy: "up → down (passive: connection reset by the backend)").count - 1 == 10, "\(log)")
            }
            sb.close()
        }
        let passive = Self.describe(results[true]!), active = Self.describe(results[false]!)
        print("figure: kill -9 of one of 3 servers under 200 new connections/s, 10 trials each, same run")
        print("figure:   passive errorLimit 1: \(passive.text)")
        print("figure:   active only (tcp, interval 500ms, fastInterval 100ms, fall 2): \(active.text)")
        #expect(passive.failures[passive.failures.count / 2] <= 2, "passive: at most 2 failed connections (p50): \(passive.text)")
        #expect(passive.p50 < 0.020 && passive.max < 0.100, "passive: last failure under 20 ms (p50) and 100 ms (max): \(passive.text)")
    }

    @Test func aBlackholedBackendFailsOverByProbesAndPassiveDoesNotMisfire() throws {
        let sb = try Sandbox("blackhole")
        try sb.startDaemon(Self.spec(passive: true), extra: ["--metrics-address", "off"])
        #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 }, "\(sb.daemonLogText())")
        // A short client timeout: a connection sent to the silent backend fails after 100 ms and the loop
        // goes on, so the last one that started towards it says when it stopped getting connections.
        let load = try sb.startTraffic(["loop", "--target", Sandbox.vip4, "--duration", "600", "--timeout", "0.1", "--pause", "0.005"])
        _ = try load.nextLine()
        usleep(200_000)
        // Backend 1 drops everything: no reset, no ICMP; only the probes' timeouts can tell.
        let at = Date().timeIntervalSince1970
        let drop = try sb.exec(sb.backends[1], "nft", ["add table inet blackhole; add chain inet blackhole in { type filter hook input priority -300; policy drop; }"])
        #expect(drop.status == 0, "\(drop.err)")
        #expect(sb.wait(timeout: 3) { sb.health()[DaemonTests.endpoint(1)] == "down" }, "\(sb.daemonLogText())")
        usleep(300_000)
        load.stop()
        let summary = try load.finish()
        let starts = (summary["failure_times"] as? [[Any]] ?? []).compactMap { $0.first as? Double }
        let lastStart = (starts.max() ?? at) - at
        print("figure: blackholed backend: \(starts.count) failed connections, the last one started \(String(format: "%.0f", lastStart * 1000)) ms after the blackhole")
        #expect(lastStart < 1.0, "active checks fail it over within 1 s: \(lastStart)")
        let log = sb.daemonLogText()
        #expect(log.contains("backend \(DaemonTests.endpoint(1)): up → down (tcp: timeout after"), "\(log)")
        #expect(!log.contains("(passive:"), "passive does not misfire on silence: \(log)")
    }
}
