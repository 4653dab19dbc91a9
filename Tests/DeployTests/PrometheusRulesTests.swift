import Foundation
import Testing
import TestSupport

/// deploy/prometheus: the alert rules load (`promtool check rules`) and fire when and only when their
/// unit tests say (`promtool test rules`), and every alert has such a test.
@Suite struct PrometheusRulesTests {
    static let dir = Repo.root.appendingPathComponent("deploy/prometheus")
    static let promtool = URL(fileURLWithPath: "/usr/bin/promtool")

    @Test func rulesLoadAndTheirTestsPass() throws {
        try Deploy.require(Self.promtool, package: "prometheus")
        let check = try Repo.run(Self.promtool, ["check", "rules", Self.dir.appendingPathComponent("nftpool-alerts.yaml").path])
        #expect(check.status == 0 && check.out.contains("SUCCESS: 4 rules found"), "\(check.out)\(check.err)")
        let test = try Repo.run(Self.promtool, ["test", "rules", Self.dir.appendingPathComponent("nftpool-alerts.test.yaml").path])
        #expect(test.status == 0 && test.out.contains("SUCCESS"), "\(test.out)\(test.err)")
    }

    @Test func everyAlertIsTestedFiringAndNotFiring() throws {
        let rules = try String(contentsOf: Self.dir.appendingPathComponent("nftpool-alerts.yaml"), encoding: .utf8)
        let tests = try String(contentsOf: Self.dir.appendingPathComponent("nftpool-alerts.test.yaml"), encoding: .utf8)
        let alerts = rules.split(separator: "\n").compactMap { line -> String? in
            let t = line.trimmingCharacters(in: .whitespaces)
            return t.hasPrefix("- alert: ") ? String(t.dropFirst(9)) : nil
        }
        #expect(alerts == ["NftpoolPoolNoServingBackend", "NftpoolBackendFlapping", "NftpoolKernelTableOutOfSync", "NftpoolReloadFailing"])
        for alert in alerts {
            let cases = tests.components(separatedBy: "alertname: \(alert)\n").dropFirst()
            #expect(cases.contains { $0.hasPrefix("        exp_alerts: []") }, "\(alert): a case where it does not fire")
            #expect(cases.contains { $0.hasPrefix("        exp_alerts:\n") }, "\(alert): a case where it fires")
        }
    }

    /// The test can fail: a rules test expecting the wrong thing is refused by promtool.
    @Test func promtoolRefusesAWrongExpectation() throws {
        try Deploy.require(Self.promtool, package: "prometheus")
        let tests = try String(contentsOf: Self.dir.appendingPathComponent("nftpool-alerts.test.yaml"), encoding: .utf8)
        let wrong = tests.replacingOccurrences(of: "pool: api\n              state: serving", with: "pool: web\n              state: serving")
        #expect(wrong != tests)
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-rules-\(getpid())")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.copyItem(at: Self.dir.appendingPathComponent("nftpool-alerts.yaml"), to: tmp.appendingPathComponent("nftpool-alerts.yaml"))
        try wrong.write(to: tmp.appendingPathComponent("t.yaml"), atomically: true, encoding: .utf8)
        let r = try Repo.run(Self.promtool, ["test", "rules", tmp.appendingPathComponent("t.yaml").path])
        #expect(r.status != 0 && (r.out + r.err).contains("FAILED"), "\(r.out)\(r.err)")
    }
}
