import Foundation
import IntegrationHarness
import Testing
import TestSupport

/// `nftpool run`'s metrics server (default 127.0.0.1:9742, inside the LB namespace) against real
/// backends: what a scrape says before and after a backend dies, promtool's linter on it, /healthz
/// and /readyz, and Debian's Prometheus server scraping it and answering PromQL.
@Suite(.serialized) struct MetricsEndpointTests {
    static let address = "127.0.0.1:9742"

    /// An HTTP GET from inside the LB namespace: status code and body.
    static func get(_ sb: Sandbox, _ url: String) throws -> (code: Int, body: String) {
        let r = try sb.exec(sb.lb, "curl", ["-s", "--max-time", "5", "-w", "\n%{http_code}", url])
        let lines = r.out.split(separator: "\n", omittingEmptySubsequences: false)
        var body = lines.dropLast().joined(separator: "\n")
        if body.hasSuffix("\n") { body.removeLast() }
        return (Int(lines.last ?? "") ?? 0, body)
    }

    static func scrape(_ sb: Sandbox) throws -> String {
        let r = try get(sb, "http://\(address)/metrics")
        guard r.code == 200 else { throw KernelTestError("/metrics answered \(r.code): \(r.body)") }
        return r.body + "\n"  // the line end get() took off
    }

    static func value(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    static func backend(_ i: Int) -> String { #"{pool="web",backend="\#(DaemonTests.endpoint(i))"}"# }

    /// `promtool check metrics` on `text`: its exit status and everything it said.
    static func promtoolCheck(_ text: String) throws -> (status: Int32, said: String) {
        let r = try Repo.run(URL(fileURLWithPath: "/usr/bin/promtool"), ["check", "metrics"], stdin: text)
        return (r.status, r.out + r.err)
    }

    @Test func scrapesFollowAHealthFlipAndPassPromtool() throws {
        let sb = try Sandbox("metrics")
        try sb.startDaemon(DaemonTests.spec())
        #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 },
                "\(sb.health())\n\(sb.daemonLogText())")
        #expect(try Self.get(sb, "http://\(Self.address)/healthz") == (200, "ok"))
        #expect(try Self.get(sb, "http://\(Self.address)/readyz") == (200, "ok"))

        // The series are registered from the daemon's first status on; probe results count from the start.
        _ = try Self.scrape(sb)
        _ = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "30"])
        var before = ""
        #expect(sb.wait(timeout: 3) {
            before = (try? Self.scrape(sb)) ?? ""
            return (Self.value(before, "nftpool_backend_checks_total" + Self.backend(0).dropLast() + #",outcome="success"}"#) ?? 0) >= 2
        }, "two successful checks counted: \(before)")
        let lint = try Self.promtoolCheck(before)
        #expect(lint.status == 0 && lint.said.isEmpty, "promtool check metrics: \(lint.said)")
        #expect(Self.value(before, "nftpool_backend_up" + Self.backend(0)) == 1)
        #expect(Self.value(before, "nftpool_backend_slots" + Self.backend(0)) == 43, "129 slots over 3")
        #expect(Self.value(before, #"nftpool_pool_backends{pool="web",state="serving"}"#) == 3)
        #expect(Self.value(before, #"nftpool_pool_new_connections_total{pool="web"}"#) == 30, "the pool rule's counter")
        for i in 0..<3 {
            #expect((Self.value(before, "nftpool_backend_forwarded_packets_total" + Self.backend(i)) ?? 0) >= 30, "b\(i): 10 connections, 3 packets each at least")
            #expect((Self.value(before, "nftpool_backend_forwarded_bytes_total" + Self.backend(i)) ?? 0) > 0)
        }
        #expect(Self.value(before, "nftpool_kernel_in_sync") == 1)
        #expect((Self.value(before, "nftpool_netlink_messages_total") ?? 0) > 0)

        sb.killBackend(0)
        #expect(sb.wait(timeout: 3) { sb.health()[DaemonTests.endpoint(0)] == "down" })
        // The status (and so the scrape) follows within half a second.
        var after = ""
        #expect(sb.wait(timeout: 2) {
            after = (try? Self.scrape(sb)) ?? ""
            return Self.value(after, "nftpool_backend_up" + Self.backend(0)) == 0
        }, "\(after)")
        #expect(Self.value(after, "nftpool_backend_slots" + Self.backend(0)) == 0)
        #expect(Self.value(after, "nftpool_backend_slots" + Self.backend(1))! + Self.value(after, "nftpool_backend_slots" + Self.backend(2))! == 129)
        #expect(Self.value(after, "nftpool_backend_transitions_total" + Self.backend(0).dropLast() + #",to="down"}"#) == 1)
        #expect((Self.value(after, "nftpool_backend_checks_total" + Self.backend(0).dropLast() + #",outcome="refused"}"#) ?? 0) >= 2)
        #expect(Self.value(after, #"nftpool_pool_backends{pool="web",state="down"}"#) == 1)
        let inState = Self.value(after, "nftpool_backend_time_in_state_seconds" + Self.backend(0)) ?? -1
        #expect(inState >= 0 && inState < 3, "\(inState)")
        let lintAfter = try Self.promtoolCheck(after)
        #expect(lintAfter.status == 0 && lintAfter.said.isEmpty, "promtool check metrics: \(lintAfter.said)")

        // No serving backend: not ready, still alive.
        sb.killBackend(1)
        sb.killBackend(2)
        #expect(sb.wait(timeout: 3) { (try? Self.get(sb, "http://\(Self.address)/readyz"))?.code == 503 })
        #expect(try Self.get(sb, "http://\(Self.address)/readyz") == (503, "pool web has no serving backend"))
        #expect(try Self.get(sb, "http://\(Self.address)/healthz") == (200, "ok"))
        #expect(try Self.get(sb, "http://\(Self.address)/nothing").code == 404)
    }

    @Test func prometheusScrapesTheDaemonAndPromQLSeesABackendDie() throws {
        let sb = try Sandbox("prometheus")
        try sb.startDaemon(DaemonTests.spec())
        #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 }, "\(sb.daemonLogText())")
        let config = sb.dir.appendingPathComponent("prometheus.yml")
        try """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            scrape_configs:
              - job_name: nftpool
                static_configs: [{targets: ['\(Self.address)']}]
            """.write(to: config, atomically: true, encoding: .utf8)
        let prometheus = Process()
        prometheus.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        prometheus.arguments = ["netns", "exec", sb.lb, "/usr/bin/prometheus", "--config.file", config.path,
                                "--storage.tsdb.path", sb.dir.appendingPathComponent("tsdb").path,
                                "--web.listen-address", "127.0.0.1:9090"]
        let log = sb.dir.appendingPathComponent("prometheus.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        prometheus.standardOutput = try FileHandle(forWritingTo: log)
        prometheus.standardError = try FileHandle(forWritingTo: log)
        try prometheus.run()
        defer {
            kill(prometheus.processIdentifier, SIGKILL)
            prometheus.waitUntilExit()
        }
        let query = #"nftpool_backend_up{backend="\#(DaemonTests.endpoint(0))"}"#
        func up() -> String? {
            let encoded = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            guard let r = try? Self.get(sb, "http://127.0.0.1:9090/api/v1/query?query=\(encoded)"), r.code == 200,
                let json = try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
                let result = (json["data"] as? [String: Any])?["result"] as? [[String: Any]],
                let value = result.first?["value"] as? [Any]
            else { return nil }
            return value.last as? String
        }
        let logText = { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        #expect(sb.wait(timeout: 20) { up() == "1" }, "PromQL \(query) before: \(up() ?? "nothing")\n\(logText().suffix(2000))")
        sb.killBackend(0)
        #expect(sb.wait(timeout: 10) { up() == "0" }, "PromQL \(query) after the kill: \(up() ?? "nothing")")
        print("figure: Prometheus \(query) went from 1 to 0 after the backend was killed")
    }

    @Test func aBadOrBusyMetricsAddressIsOneLineAndNonZero() throws {
        let sb = try Sandbox("metrics-address")
        try sb.writeSpec(DaemonTests.spec())
        let bad = try sb.nftpool(["run", "--netns", sb.lb, "--metrics-address", "localhost:9742", sb.specFile.path])
        #expect(bad.status == 64)
        #expect(bad.err == "--metrics-address: \"localhost:9742\" is not ADDR:PORT (an IP address and a port 1-65535, e.g. 127.0.0.1:9742 or [::1]:9742) or off\n")

        // The address is taken (a daemon of another table in the same namespace): exit 1, one line.
        try sb.startDaemon(DaemonTests.spec())
        #expect(sb.wait(timeout: 5) { (try? Self.get(sb, "http://\(Self.address)/healthz"))?.code == 200 })
        let other = sb.dir.appendingPathComponent("other.yaml")
        try DaemonTests.spec(port: 81).replacingOccurrences(of: "table: dtest", with: "table: dother").write(to: other, atomically: true, encoding: .utf8)
        let busy = try sb.nftpool(["run", "--netns", sb.lb, "--status-file", sb.dir.appendingPathComponent("other.json").path, other.path])
        #expect(busy.status == 1)
        #expect(busy.err == "nftpool run: cannot serve metrics on 127.0.0.1:9742: Address already in use (choose another with --metrics-address ADDR:PORT, or --metrics-address off)\n")
        // `off` runs without a server.
        let off = try sb.nftpool(["run", "--netns", sb.lb, "--metrics-address", "off", "--cleanup-on-exit",
                                  "--status-file", sb.dir.appendingPathComponent("other.json").path, other.path], timeout: 2)
        #expect(off.timedOut, "ran until killed: \(off.err)")
    }
}
