import Daemon
import Foundation
@testable import NftpoolMetrics
@testable import Probes
import Testing
import TestSupport

/// The families DaemonMetrics renders from what the daemon tells it, without a kernel: the status
/// document, probe results, transitions, transactions, reloads.
@Suite struct DaemonMetricsTests {
    /// A status document as the daemon writes it: `pools` × `backends` each, backend i of pool p at
    /// 10.p.(i/250).(i%250+1):80; `down` lists "pool/endpoint" ids failing their checks.
    static func status(pools: Int = 1, backends: Int = 3, down: Set<String> = [], states: [String: String] = [:], inSync: Bool = true) throws -> StatusFile.Document {
        let now = Date().timeIntervalSince1970
        var poolList: [[String: Any]] = []
        for p in 0..<pools {
            let name = "pool\(p)"
            var list: [[String: Any]] = []
            for i in 0..<backends {
                let endpoint = "10.\(p % 250).\(i / 250).\(i % 250 + 1):80"
                let id = "\(name)/\(endpoint)"
                let state = states[id] ?? "enabled"
                let isDown = down.contains(id)
                list.append([
                    "endpoint": endpoint, "state": state, "weight": 1 + i % 3, "health": isDown ? "down" : "up",
                    "reason": isDown ? "tcp: connection refused" : "tcp: connected", "sinceTime": now - 42,
                    "slots": isDown || state != "enabled" ? 0 : 10,
                ])
            }
            poolList.append(["name": name, "slots": 10 * backends, "backends": list])
        }
        let doc: [String: Any] = [
            "table": "t", "pid": 1, "spec": "/x.yaml", "updated": now,
            "kernel": ["inSync": inSync, "refusedAttempts": inSync ? 0 : 3, "repairs": 2, "error": inSync ? NSNull() : "EPERM"],
            "pools": poolList,
        ]
        return try JSONDecoder().decode(StatusFile.Document.self, from: JSONSerialization.data(withJSONObject: doc))
    }

    static func text(_ m: DaemonMetrics) -> String {
        String(decoding: m.queue.sync { m.render() }, as: UTF8.self)
    }

    /// The value of the one sample whose line starts with `series` (name and labels as rendered).
    static func value(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    @Test func rendersEveryBackendAndPoolFamilyFromTheStatus() throws {
        let m = DaemonMetrics(version: "9.9.9", readKernel: false)
        m.published(try Self.status(down: ["pool0/10.0.0.2:80"], states: ["pool0/10.0.0.3:80": "drain"]))
        let t = Self.text(m)
        let b = #"{pool="pool0",backend="10.0.0.1:80"}"#
        #expect(Self.value(t, "nftpool_backend_up" + b) == 1)
        #expect(Self.value(t, #"nftpool_backend_up{pool="pool0",backend="10.0.0.2:80"}"#) == 0)
        #expect(Self.value(t, #"nftpool_backend_admin_state{pool="pool0",backend="10.0.0.3:80",state="drain"}"#) == 1)
        #expect(Self.value(t, #"nftpool_backend_admin_state{pool="pool0",backend="10.0.0.3:80",state="enabled"}"#) == 0)
        #expect(Self.value(t, "nftpool_backend_weight" + b) == 1)
        #expect(Self.value(t, "nftpool_backend_slots" + b) == 10)
        let inState = try #require(Self.value(t, "nftpool_backend_time_in_state_seconds" + b))
        #expect(inState >= 42 && inState < 60)
        #expect(Self.value(t, #"nftpool_pool_backends{pool="pool0",state="serving"}"#) == 1)
        #expect(Self.value(t, #"nftpool_pool_backends{pool="pool0",state="down"}"#) == 1)
        #expect(Self.value(t, #"nftpool_pool_backends{pool="pool0",state="drain"}"#) == 1)
        #expect(Self.value(t, #"nftpool_pool_backends{pool="pool0",state="disabled"}"#) == 0)
        #expect(Self.value(t, #"nftpool_build_info{version="9.9.9"}"#) == 1)
        #expect(Self.value(t, "nftpool_kernel_in_sync") == 1)
        #expect(Self.value(t, "nftpool_foreign_changes_repaired_total") == 2)
        #expect((Self.value(t, "process_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect((Self.value(t, "process_open_fds") ?? 0) >= 3)
        // Every family has help text.
        let families = Set(t.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] })
        let helped = Set(t.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] })
        #expect(families.count >= 25 && families == helped, "\(families.symmetricDifference(helped))")
    }

    @Test func countsProbesByOutcomeTransitionsTransactionsAndReloads() throws {
        let m = DaemonMetrics(version: "1", readKernel: false)
        m.published(try Self.status())
        _ = Self.text(m)  // the series exist from the first update on
        let id = "pool0/10.0.0.1:80", b = #"{pool="pool0",backend="10.0.0.1:80""#
        m.probed(id, .success("tcp: connected"), took: .milliseconds(3))
        m.probed(id, .success("tcp: connected"), took: .milliseconds(30))
        m.probed(id, .failure("tcp: connection refused", .refused), took: .microseconds(200))
        m.probed(id, .failure("timeout after 200ms", .timeout), took: .milliseconds(200))
        m.transition(id, HealthTracker.Transition(from: .up, to: .down, reason: "timeout", after: .seconds(5)))
        m.applied(took: .milliseconds(2), messages: 4)
        m.applied(took: .milliseconds(1), messages: nil)
        m.netlinkFailed()
        m.reloaded(ok: true)
        m.reloaded(ok: false)
        let t = Self.text(m)
        #expect(Self.value(t, "nftpool_backend_checks_total" + b + #",outcome="success"}"#) == 2)
        #expect(Self.value(t, "nftpool_backend_checks_total" + b + #",outcome="refused"}"#) == 1)
        #expect(Self.value(t, "nftpool_backend_checks_total" + b + #",outcome="timeout"}"#) == 1)
        #expect(Self.value(t, "nftpool_backend_check_duration_seconds_count" + b + "}") == 4)
        #expect(Self.value(t, "nftpool_backend_check_duration_seconds_bucket" + b + #",le="0.005"}"#) == 2)
        #expect(Self.value(t, "nftpool_backend_check_duration_seconds_bucket" + b + #",le="0.05"}"#) == 3)
        #expect(Self.value(t, "nftpool_backend_transitions_total" + b + #",to="down"}"#) == 1)
        #expect(Self.value(t, "nftpool_backend_transitions_total" + b + #",to="up"}"#) == 0)
        #expect(Self.value(t, "nftpool_apply_duration_seconds_count") == 2)
        #expect(Self.value(t, "nftpool_netlink_messages_total") == 4)
        #expect(Self.value(t, "nftpool_netlink_errors_total") == 2)
        #expect(Self.value(t, #"nftpool_config_reloads_total{result="success"}"#) == 1)
        #expect(Self.value(t, #"nftpool_config_reloads_total{result="failure"}"#) == 1)
        #expect(Self.value(t, "nftpool_config_last_reload_successful") == 0)
    }

    @Test func aBackendGoneFromTheSpecLeavesTheScrape() throws {
        let m = DaemonMetrics(version: "1", readKernel: false)
        m.published(try Self.status(backends: 3))
        #expect(Self.text(m).contains(#"backend="10.0.0.3:80""#))
        m.published(try Self.status(backends: 2))
        let t = Self.text(m)
        #expect(!t.contains(#"backend="10.0.0.3:80""#))
        #expect(Self.value(t, #"nftpool_backend_up{pool="pool0",backend="10.0.0.2:80"}"#) == 1)
    }

    @Test func healthAndReadiness() throws {
        let m = DaemonMetrics(version: "1", readKernel: false)
        #expect(!m.liveness().ok && !m.readiness().ok)
        let t0 = ContinuousClock.now
        m.loopAlive(at: t0)
        m.published(try Self.status())
        #expect(m.liveness(now: t0 + .seconds(1)).ok)
        #expect(!m.readiness().ok, "not before the first apply")
        m.started()
        #expect(m.readiness() == HealthVerdict(ok: true, text: "ok"))
        let stalled = m.liveness(now: t0 + .seconds(11))
        #expect(!stalled.ok && stalled.text.contains("handled nothing for 11s"), "\(stalled)")

        m.published(try Self.status(down: ["pool0/10.0.0.1:80", "pool0/10.0.0.2:80"], states: ["pool0/10.0.0.3:80": "drain"]))
        #expect(m.readiness() == HealthVerdict(ok: false, text: "pool pool0 has no serving backend"))
        m.published(try Self.status(inSync: false))
        #expect(m.readiness() == HealthVerdict(ok: false, text: "table inet t does not hold what the daemon wants: EPERM"))
    }

    /// Checks the text the way the format asks: one HELP and one TYPE line per family, before its samples,
    /// and a family's samples in one group. Returns the problems found, and the families in order.
    static func exposition(_ text: String) -> (problems: [String], families: [String]) {
        var problems: [String] = [], order: [String] = []
        var types: [String: String] = [:], helped = Set<String>()
        var current: String?
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 3)
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let name = String(words[2])
                if line.hasPrefix("# HELP ") {
                    if !helped.insert(name).inserted { problems.append("a second HELP line for \(name)") }
                } else {
                    if types[name] != nil { problems.append("a second TYPE line for \(name)") }
                    types[name] = String(words[3])
                    order.append(name)
                }
                current = name
                continue
            }
            let series = String(line.prefix { $0 != "{" && $0 != " " })
            var family = series
            if types[series] == nil {
                for suffix in ["_bucket", "_sum", "_count"] where series.hasSuffix(suffix) {
                    let base = String(series.dropLast(suffix.count))
                    if types[base] == "histogram" { family = base }
                }
            }
            if family != current { problems.append("\(series) outside its family's group (after \(current ?? "nothing"))") }
        }
        return (problems, order)
    }

    /// Backends spread over several shards of small registries still come out as one group per family,
    /// with one HELP and one TYPE line each, and promtool finds nothing to say; shards emptied by a
    /// reload and filled again keep it so.
    @Test func shardedFamiliesAreOneGroupEachAndPassPromtool() throws {
        let m = DaemonMetrics(version: "1", readKernel: false)
        m.published(try Self.status(pools: 3, backends: 100, down: ["pool1/10.1.0.7:80"]))
        for p in 0..<3 {
            m.probed("pool\(p)/10.\(p).0.1:80", .failure("refused", .refused), took: .milliseconds(1))
        }
        let t = Self.text(m)
        #expect(m.backendFamilies.placement == (300, 5), "64 backends a shard")
        let check = Self.exposition(t)
        #expect(check.problems.isEmpty, "\(check.problems.prefix(5))")
        #expect(check.families.count >= 25)
        #expect(t.split(separator: "\n").filter { $0.hasPrefix("nftpool_backend_up{") }.count == 300)
        #expect(Self.value(t, #"nftpool_backend_up{pool="pool1",backend="10.1.0.7:80"}"#) == 0)
        #expect(Self.value(t, #"nftpool_backend_checks_total{pool="pool2",backend="10.2.0.1:80",outcome="refused"}"#) == 1)
        let lint = try Repo.run(URL(fileURLWithPath: "/usr/bin/promtool"), ["check", "metrics"], stdin: t)
        #expect(lint.status == 0 && lint.out.isEmpty && lint.err.isEmpty, "promtool check metrics: \(lint.out)\(lint.err)")

        // A reload leaves one pool of 40: the first shard keeps some, the others empty out.
        m.reloaded(ok: true)
        m.published(try Self.status(pools: 1, backends: 40))
        let fewer = Self.text(m)
        #expect(m.backendFamilies.placement.owners == 40)
        #expect(Self.exposition(fewer).problems.isEmpty, "\(Self.exposition(fewer).problems.prefix(5))")
        #expect(fewer.split(separator: "\n").filter { $0.hasPrefix("nftpool_backend_up{") }.count == 40)
        #expect(!fewer.contains(#"pool="pool1""#))
        // And back: the freed places are taken again before a new shard is made.
        m.reloaded(ok: true)
        m.published(try Self.status(pools: 2, backends: 150))
        let more = Self.text(m)
        #expect(m.backendFamilies.placement == (300, 5))
        #expect(Self.exposition(more).problems.isEmpty, "\(Self.exposition(more).problems.prefix(5))")
        #expect(more.split(separator: "\n").filter { $0.hasPrefix("nftpool_backend_up{") }.count == 300)
        let lintMore = try Repo.run(URL(fileURLWithPath: "/usr/bin/promtool"), ["check", "metrics"], stdin: more)
        #expect(lintMore.status == 0 && lintMore.out.isEmpty && lintMore.err.isEmpty, "promtool check metrics: \(lintMore.out)\(lintMore.err)")
    }

    /// The series are registered when the first status is published, not at the first scrape; what the
    /// probes said before they existed is counted then. Results for a backend no status lists are
    /// dropped at the second sync that does not find it.
    @Test func probeResultsFromTheStartAreCounted() throws {
        let m = DaemonMetrics(version: "1", readKernel: false)
        let id = "pool0/10.0.0.1:80", b = #"{pool="pool0",backend="10.0.0.1:80""#
        // Before any status: the probes start right after the first publish, and may be quicker than
        // the registration it queues.
        m.probed(id, .success("tcp: connected"), took: .milliseconds(3))
        m.probed(id, .failure("tcp: connection refused", .refused), took: .milliseconds(1))
        m.transition(id, HealthTracker.Transition(from: .up, to: .down, reason: "refused", after: .seconds(1)))
        m.probed("pool0/10.9.9.9:80", .success("tcp: connected"), took: .milliseconds(3))
        for _ in 0..<(DaemonMetrics.earlyLimit + 10) { m.probed("pool0/10.0.0.2:80", .success("ok"), took: .milliseconds(1)) }
        #expect(m.earlyBackends == 3)
        m.published(try Self.status())
        m.queue.sync {}  // the registration the first status queued
        #expect(m.earlyBackends == 1, "10.9.9.9 is in no status yet")
        m.probed(id, .success("tcp: connected"), took: .milliseconds(3))
        let t = Self.text(m)
        #expect(Self.value(t, "nftpool_backend_checks_total" + b + #",outcome="success"}"#) == 2)
        #expect(Self.value(t, "nftpool_backend_checks_total" + b + #",outcome="refused"}"#) == 1)
        #expect(Self.value(t, "nftpool_backend_check_duration_seconds_count" + b + "}") == 3)
        #expect(Self.value(t, "nftpool_backend_transitions_total" + b + #",to="down"}"#) == 1)
        #expect(Self.value(t, #"nftpool_backend_checks_total{pool="pool0",backend="10.0.0.2:80",outcome="success"}"#) == Double(DaemonMetrics.earlyLimit))
        #expect(m.earlyBackends == 0, "dropped at the second sync without it")
        #expect(!t.contains("10.9.9.9"))
    }

    /// The scrape at 1,000 backends (and 10,000 with NFTPOOL_SCRAPE_10K=1), timed: what the daemon's loop
    /// pays to publish a status, the registration of the series that the first status queues on the
    /// metrics queue, the first scrape once they are registered, and a steady scrape. A scrape that comes
    /// at once after the start waits for the registration: its time is the two added. Everything but
    /// the publish runs on the metrics queue, never on the daemon's loop.
    @Test(arguments: ProcessInfo.processInfo.environment["NFTPOOL_SCRAPE_10K"] == "1" ? [1_000, 10_000] : [1_000])
    func scrapeTimeAndSize(backends: Int) throws {
        let m = DaemonMetrics(version: "1", readKernel: false)
        let doc = try Self.status(pools: backends / 10, backends: 10)
        let publishStart = ContinuousClock.now
        m.published(doc)
        let publish = publishStart.duration(to: .now)
        m.queue.sync {}  // the registration the first status queued
        let registered = publishStart.duration(to: .now)
        let firstStart = ContinuousClock.now
        _ = Self.text(m)
        let first = firstStart.duration(to: .now)
        let againStart = ContinuousClock.now
        m.published(doc)
        let publishAgain = againStart.duration(to: .now)
        for i in 0..<backends { m.probed("pool\(i / 10)/\(doc.pools[i / 10].backends[i % 10].endpoint)", .success("ok"), took: .milliseconds(2)) }
        _ = Self.text(m)
        // The median of five: one scrape's time varies by half on a shared 2-core machine.
        var t = "", times: [Duration] = []
        for _ in 0..<5 {
            let steadyStart = ContinuousClock.now
            t = Self.text(m)
            times.append(steadyStart.duration(to: .now))
        }
        let steady = times.sorted()[2]
        let placed = m.backendFamilies.placement
        print("figure: metrics at \(backends) backends: publish \(publish) on the daemon's loop (first, queues the registration; later \(publishAgain)), registration on the metrics queue \(registered), first scrape \(first) (at once after the start: \(registered + first)), steady scrape \(steady) (median of 5), \(t.utf8.count) bytes, \(t.split(separator: "\n").count) lines, \(placed.shards) shards")
        #expect(publish < .milliseconds(50), "a pointer copy and one queue.async (the first starts a dispatch thread)")
        #expect(publishAgain < .milliseconds(5))
        // Linear now: swift-prometheus's O(n²) took 0.5 s at 1,000 backends and 49-65 s at 10,000.
        #expect(registered + first < .milliseconds(backends))
        #expect(steady < .seconds(backends / 1000))
        #expect(placed.owners == backends && placed.shards == (backends + ShardedRegistry<BackendFamily>.defaultCapacity - 1) / ShardedRegistry<BackendFamily>.defaultCapacity)
        #expect(t.contains(#"nftpool_backend_checks_total{pool="pool0",backend="10.0.0.1:80",outcome="success"} 1"#))
    }
}
