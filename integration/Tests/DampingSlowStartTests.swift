import Foundation
import IntegrationHarness
import Testing

/// Flap damping and slowstart with the real daemon, real probes and real connections.
@Suite(.serialized) struct DampingSlowStartTests {
    /// A backend whose /readyz flips every second, for 60 s (NFTPOOL_FLAP_SECONDS), with and without
    /// damping, side by side in two sandboxes.
    @Test func aFlappingBackendIsHeldDownWithDampingAndNotWithout() throws {
        let seconds = Double(ProcessInfo.processInfo.environment["NFTPOOL_FLAP_SECONDS"] ?? "") ?? 60
        var options = Sandbox.Options()
        options.https = true
        let damped = try Sandbox("damped", options), plain = try Sandbox("undamped", options)
        for (sb, damping) in [(damped, true), (plain, false)] {
            var extra = ["port: 443", "path: /readyz", "expectStatus: [200]", "caFile: \(sb.caFile.path)"]
            if damping { extra.append("damping: {falls: 3, within: 60s, hold: 5s, maxHold: 60s}") }
            try sb.startDaemon(DaemonTests.spec(check: "https", extraCheck: extra), extra: ["--metrics-address", "off"])
        }
        for sb in [damped, plain] {
            #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 }, "\(sb.daemonLogText())")
        }
        // b1's /readyz: 1 s failing, 1 s passing, in both sandboxes at once.
        let start = Date()
        var notReady = true
        while Date().timeIntervalSince(start) < seconds {
            for sb in [damped, plain] { sb.setNotReady(1, notReady) }
            notReady.toggle()
            Thread.sleep(forTimeInterval: 1)
        }
        for sb in [damped, plain] { sb.setNotReady(1, false) }
        let victim = DaemonTests.endpoint(1)
        // Passing again, but held: status says so and for how long.
        #expect(damped.wait(timeout: 3) {
            (try? damped.status(json: false).out)?.split(separator: "\n").contains { $0.contains(victim) && $0.contains("down (held") && $0.contains("s: flapping)") } ?? false
        }, "\((try? damped.status(json: false).out) ?? "")")
        func counts(_ sb: Sandbox) -> (falls: Int, rises: Int, held: Int, servingChanges: Int) {
            let lines = sb.daemonLogText().split(separator: "\n").filter { $0.contains("backend \(victim):") }
            let falls = lines.filter { $0.contains("up → down") }.count
            let rises = lines.filter { $0.contains("down → up") }.count
            let held = lines.filter { $0.contains("flapping (") }.count
            // What the kernel sends it, in order: a fall while held changes nothing.
            var serving = true, changes = 0
            for line in lines {
                if line.contains("up → down"), serving { serving = false; changes += 1 }
                if (line.contains("down → up") && !line.contains("flapping (")) || line.contains("hold over (flap damping)"), !serving {
                    serving = true
                    changes += 1
                }
            }
            return (falls, rises, held, changes)
        }
        let d = counts(damped), p = counts(plain)
        print("figure: /readyz 1 s on / 1 s off for \(Int(seconds)) s (https check, interval 500ms, fastInterval 100ms, rise 2, fall 2)")
        print("figure:   without damping: \(p.falls) falls, \(p.rises) rises: \(p.servingChanges) changes of what the kernel sends it")
        print("figure:   with damping {falls: 3, within: 60s, hold: 5s, maxHold: 60s}: \(d.falls) falls, \(d.rises) rises of which \(d.held) held down: \(d.servingChanges) changes of what the kernel sends it")
        #expect(p.servingChanges >= Int(seconds) / 3, "undamped, it flaps with its /readyz: \(p)")
        #expect(d.servingChanges * 3 <= p.servingChanges, "damping holds it down: \(d) against \(p)")
        let warnings = damped.daemonLogText().split(separator: "\n").filter { $0.contains("warning") && $0.contains("flapping (") }
        #expect(warnings.count == 1, "logged as news once: \(warnings)")
    }

    /// A backend back from down with `slowstart: 10s` takes its share of new connections in steps.
    @Test func aReturningBackendsShareGrowsStepByStep() throws {
        let sb = try Sandbox("slowstart")
        var spec = DaemonTests.spec()
        spec = spec.replacingOccurrences(of: "    scheduler: round-robin\n", with: "    scheduler: round-robin\n    slowstart: 10s\n")
        try sb.startDaemon(spec, extra: ["--metrics-address", "off"])
        #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 }, "\(sb.daemonLogText())")
        #expect(!sb.daemonLogText().contains("slowstart"), "not at a first start")
        sb.killBackend(2)
        #expect(sb.wait(timeout: 3) { sb.health()[DaemonTests.endpoint(2)] == "down" })
        // About 2,000 new connections a second from one client address: its ports must be reusable from
        // TIME_WAIT (the client's namespace only).
        #expect(try sb.exec(sb.client, "sysctl", ["-qw", "net.ipv4.tcp_tw_reuse=1"]).status == 0)
        let load = try sb.startTraffic(["loop", "--target", Sandbox.vip4, "--duration", "15", "--timeout", "1", "--pause", "0.0002", "--buckets"])
        _ = try load.nextLine()
        Thread.sleep(forTimeInterval: 1)
        try sb.reviveBackend(2)
        let summary = try load.finish()
        let buckets = (summary["buckets"] as? [String: [String: Int]] ?? [:]).sorted { Int($0.key)! < Int($1.key)! }
        let rows = buckets.map { second, counts -> (Int, Int, Double) in
            let total = counts.values.reduce(0, +)
            return (Int(second)!, total, Double(counts["b2"] ?? 0) / Double(max(1, total)))
        }
        print("figure: slowstart 10s, share of new connections to the returning backend per second (weight 1 of 3: full share 33%):")
        let firstSecond = rows.first?.0 ?? 0
        for (second, total, share) in rows {
            print("figure:   t+\(second - firstSecond)s  \(total) connections  b2 \(String(format: "%4.1f", share * 100))%")
        }
        #expect(summary["failures"] as? Int == 0, "\(summary)")
        // From its first second with connections to the end: it never takes the full share at once, grows,
        // and reaches it.
        let serving = rows.drop { $0.2 == 0 }.dropLast()  // the last second is partial
        let shares = serving.map(\.2)
        #expect(shares.count >= 10, "\(rows)")
        #expect((shares.first ?? 1) < 0.12, "it starts with a tenth of its share or so: \(shares)")
        #expect(shares.suffix(2).allSatisfy { abs($0 - 1.0 / 3) < 0.04 }, "it ends with its full share: \(shares)")
        let steps = zip(shares, shares.dropFirst()).filter { $1 + 0.03 < $0 }
        #expect(steps.isEmpty, "it never shrinks by more than noise: \(shares)")
        let log = sb.daemonLogText()
        #expect(log.contains("slowstart 20%") && log.contains("slowstart done, full share"), "\(log)")
    }
}
