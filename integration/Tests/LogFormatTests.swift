import Foundation
import IntegrationHarness
import Testing

/// `nftpool run`'s log lines as a log shipper and journald see them: `--log-format json` (one object per
/// line, a health transition's fields) and text lines on a standard error that `$JOURNAL_STREAM` names.
@Suite(.serialized) struct LogFormatTests {
    static func lines(_ sb: Sandbox) -> [String] {
        sb.daemonLogText().split(separator: "\n").map(String.init)
    }

    static func objects(_ sb: Sandbox) -> [[String: Any]] {
        lines(sb).compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func transition(_ sb: Sandbox, backend: String, to: String) -> [String: Any]? {
        objects(sb).first { $0["backend"] as? String == backend && $0["to"] as? String == to && $0["from"] != nil }
    }

    @Test func jsonLinesCarryEachTransitionsPoolBackendFromToReasonAndDuration() throws {
        let sb = try Sandbox("logjson")
        try sb.startDaemon(DaemonTests.spec(), extra: ["--log-format", "json"])
        let b0 = DaemonTests.endpoint(0)
        #expect(sb.wait(timeout: 5) { Self.transition(sb, backend: b0, to: "up") != nil }, "\(sb.daemonLogText())")
        usleep(300_000)
        sb.killBackend(0)
        #expect(sb.wait(timeout: 3) { Self.transition(sb, backend: b0, to: "down") != nil }, "\(sb.daemonLogText())")
        sb.signalDaemon(SIGTERM)
        #expect(sb.waitDaemon() == 0)

        // Every line on standard error is one JSON object with ts (RFC 3339, UTC, ms), level and msg.
        let lines = Self.lines(sb)
        #expect(lines.count >= 6, "started, 3 up, 1 down, stopped: \(lines)")
        for line in lines {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            let ts = try #require(o["ts"] as? String, "\(line)")
            #expect(ts.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "\(line)")
            #expect(["info", "notice", "warning", "error"].contains(o["level"] as? String ?? ""), "\(line)")
            #expect(!(o["msg"] as? String ?? "").isEmpty, "\(line)")
        }
        let down = try #require(Self.transition(sb, backend: b0, to: "down"))
        #expect(down["level"] as? String == "notice" && down["pool"] as? String == "web" && down["from"] as? String == "up", "\(down)")
        #expect((down["reason"] as? String ?? "").contains("connection refused"), "\(down)")
        let upFor = try #require(down["duration"] as? Double, "a number: \(down)")
        #expect(upFor >= 0.3 && upFor < 30, "seconds b0 was up: \(down)")
        #expect((down["msg"] as? String ?? "").hasPrefix("pool web backend \(b0): up → down"), "\(down)")
        let up = try #require(Self.transition(sb, backend: b0, to: "up"))
        #expect(up["from"] as? String == "down" && (up["duration"] as? Double).map { $0 >= 0 && $0 < 5 } == true, "\(up)")
        print("log line: \(lines.first { $0.contains("\"to\":\"down\"") } ?? "")")
    }

    /// Under systemd, standard error is journald's stream and `$JOURNAL_STREAM` its device:inode: text
    /// lines start with their syslog priority and carry no time of ours. Here the stream is the log file.
    @Test func journalTextLinesStartWithTheirPriority() throws {
        let sb = try Sandbox("logjournal")
        try sb.startDaemon(DaemonTests.spec(), journal: true)
        #expect(sb.wait(timeout: 5) { Self.lines(sb).filter { $0.contains("→ up") }.count == 3 }, "\(sb.daemonLogText())")
        sb.signalDaemon(SIGTERM)
        #expect(sb.waitDaemon() == 0)
        let lines = Self.lines(sb)
        #expect(lines.first?.hasPrefix("<6>info nftpool: [Daemon] started: 1 pool") == true, "\(lines)")
        #expect(lines.filter { $0.contains("→ up") }.allSatisfy { $0.hasPrefix("<5>notice nftpool: [Daemon] pool web backend ") }, "\(lines)")
        #expect(lines.allSatisfy { $0.wholeMatch(of: /<[2-7]>[a-z]+ nftpool: .*/) != nil }, "\(lines)")
        print("journal line: \(lines.first { $0.contains("→ up") } ?? "")")
    }
}
