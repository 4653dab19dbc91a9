import Foundation
import Testing
import TestSupport

/// deploy/systemd/nftpool.service: systemd-analyze verifies it without a word, and its exposure score
/// (`systemd-analyze security --offline=yes`) is at most 2.0 — Debian's keepalived unit, measured the
/// same way, is 9.6 "UNSAFE".
@Suite struct SystemdUnitTests {
    static let unit = Repo.root.appendingPathComponent("deploy/systemd/nftpool.service")
    static let analyze = URL(fileURLWithPath: "/usr/bin/systemd-analyze")

    static func text() throws -> String { try String(contentsOf: unit, encoding: .utf8) }

    /// The unit with its binary path pointed at the one just built (verify checks that ExecStart and
    /// ExecStartPre exist), in a scratch directory; nothing else changes.
    static func builtCopy() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-unit-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let copy = dir.appendingPathComponent("nftpool.service")
        try text().replacingOccurrences(of: "/usr/local/bin/nftpool", with: Repo.nftpool.path).write(to: copy, atomically: true, encoding: .utf8)
        return copy
    }

    static func exposure(_ unitPath: String) throws -> (Double, String) {
        let r = try Repo.run(analyze, ["security", "--offline=yes", "--no-pager", unitPath])
        let all = r.out + r.err
        guard let line = all.split(separator: "\n").last(where: { $0.contains("Overall exposure level") }),
            let figure = line.split(separator: ":").last?.split(separator: " ").first.flatMap({ Double($0) })
        else { throw KernelTestError("no exposure figure from systemd-analyze security: \(all)") }
        return (figure, String(line))
    }

    @Test func verifiesCleanly() throws {
        try Deploy.require(Self.analyze, package: "systemd")
        let copy = try Self.builtCopy()
        defer { try? FileManager.default.removeItem(at: copy.deletingLastPathComponent()) }
        let r = try Repo.run(Self.analyze, ["verify", copy.path])
        #expect(r.status == 0 && r.out.isEmpty && r.err.isEmpty, "systemd-analyze verify: \(r.out)\(r.err)")

        // The check can fail: an unknown key is reported.
        try (try String(contentsOf: copy, encoding: .utf8) + "[Service]\nNotAKey=1\n").write(to: copy, atomically: true, encoding: .utf8)
        let bad = try Repo.run(Self.analyze, ["verify", copy.path])
        #expect(bad.err.contains("Unknown key 'NotAKey'"), "\(bad.err)")
    }

    @Test func exposureIsAtMostTwo() throws {
        try Deploy.require(Self.analyze, package: "systemd")
        let (ours, line) = try Self.exposure(Self.unit.path)
        print("figure: systemd-analyze security --offline=yes: \(line)")
        #expect(ours <= 2.0, "\(line)")
        let keepalived = "/lib/systemd/system/keepalived.service"
        let (theirs, theirLine) = try Self.exposure(keepalived)
        print("figure: the same for Debian's \(keepalived): \(theirLine)")
        #expect(ours < theirs)
    }

    @Test func declaresWhatTheDaemonReliesOn() throws {
        let lines = Set(try Self.text().split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") })
        for line in [
            "Type=notify", "ExecStartPre=/usr/local/bin/nftpool validate /etc/nftpool/nftpool.yaml",
            "ExecStart=/usr/local/bin/nftpool run /etc/nftpool/nftpool.yaml", "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure", "WatchdogSec=10s", "RuntimeDirectory=nftpool", "RuntimeDirectoryPreserve=yes",
            "CapabilityBoundingSet=CAP_NET_ADMIN", "AmbientCapabilities=CAP_NET_ADMIN", "ProtectSystem=strict",
            "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6",
        ] {
            #expect(lines.contains(line), "\(line)")
        }
        #expect(!lines.contains { $0.contains("CAP_NET_RAW") || $0.contains("CAP_SYS_ADMIN") })
    }
}
