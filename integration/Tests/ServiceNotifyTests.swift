import Foundation
import IntegrationHarness
import Testing

/// `nftpool run` under a service manager: the sd_notify datagrams a fake NOTIFY_SOCKET (servers/notify.py
/// inside the LB namespace, where the daemon runs) receives, as a path and as an abstract socket.
@Suite(.serialized) struct ServiceNotifyTests {
    struct Datagram {
        var at: UInt64
        var message: String
    }

    /// Every datagram until STOPPING=1 (the receiver ends there).
    static func collect(_ receiver: Sandbox.Background) throws -> [Datagram] {
        var out: [Datagram] = []
        while true {
            let line = try receiver.nextLine()
            if line["end"] != nil { return out }
            if let m = line["message"] as? String, let at = line["at"] as? Int { out.append(Datagram(at: UInt64(at), message: m)) }
        }
    }

    @Test(arguments: ["path", "abstract"]) func readyReloadingWatchdogStopping(kind: String) throws {
        let sb = try Sandbox("notify-\(kind)")
        let socket = kind == "path" ? sb.dir.appendingPathComponent("notify.sock").path : "@\(sb.tag)-notify"
        let receiver = try sb.startScript("notify.py", ["--socket", socket, "--seconds", "30"], in: sb.lb)
        #expect(try receiver.nextLine()["ready"] as? Bool == true)
        // 1 s: a ping every 500 ms.
        try sb.startDaemon(DaemonTests.spec(), environment: ["NOTIFY_SOCKET": socket, "WATCHDOG_USEC": "1000000"])
        #expect(sb.wait(timeout: 5) { sb.health().values.filter { $0 == "up" }.count == 3 }, "\(sb.daemonLogText())")
        usleep(1_000_000)
        sb.signalDaemon(SIGHUP)
        #expect(sb.wait(timeout: 3) { sb.daemonLogText().contains("reloaded") })
        usleep(500_000)
        sb.signalDaemon(SIGTERM)
        #expect(sb.waitDaemon() == 0)
        let got = try Self.collect(receiver)

        // The sequence, pings and status updates aside.
        let steps = got.map(\.message).filter { !$0.hasPrefix("WATCHDOG=") && !$0.hasPrefix("STATUS=") }
        #expect(steps.map { $0.split(separator: "\n").first.map(String.init) ?? "" } == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], "\(got.map(\.message))")
        let ready = try #require(got.first { $0.message.hasPrefix("READY=1") })
        #expect(ready.message.hasPrefix("READY=1\nSTATUS=1 pool, "), "\(ready.message)")
        #expect(got.contains { $0.message == "STATUS=1 pool, 3 of 3 backends serving; kernel in sync" }, "\(got.map(\.message))")
        // MONOTONIC_USEC is the daemon's CLOCK_MONOTONIC when the reload began: just before it arrived.
        let reloading = try #require(got.first { $0.message.hasPrefix("RELOADING=1\n") })
        let usec = try #require(reloading.message.split(separator: "\n").last.flatMap { UInt64($0.dropFirst("MONOTONIC_USEC=".count)) })
        #expect(usec <= reloading.at && reloading.at - usec < 500_000, "sent \(usec), received \(reloading.at)")
        // WATCHDOG=1 every half WATCHDOG_USEC (the loop ticks every 100 ms), from start to stop, and
        // never a whole WATCHDOG_USEC apart (systemd would kill the daemon).
        let pings = got.filter { $0.message == "WATCHDOG=1" }.map(\.at)
        let gaps = zip(pings.dropFirst(), pings).map { Double($0 - $1) / 1e6 }
        #expect(pings.count >= 4, "\(pings.count) pings")
        #expect(gaps.allSatisfy { $0 >= 0.49 && $0 < 1.0 }, "gaps between pings: \(gaps)")
        print("figure: sd_notify over \(kind) socket: \(got.count) datagrams, \(pings.count) WATCHDOG=1 pings, gaps \(String(format: "%.3f", gaps.min() ?? 0))-\(String(format: "%.3f", gaps.max() ?? 0)) s")
    }

    @Test func noWatchdogPingsWhenWatchdogPIDNamesAnotherProcess() throws {
        let sb = try Sandbox("notify-pid")
        let socket = sb.dir.appendingPathComponent("notify.sock").path
        let receiver = try sb.startScript("notify.py", ["--socket", socket, "--seconds", "30"], in: sb.lb)
        #expect(try receiver.nextLine()["ready"] as? Bool == true)
        try sb.startDaemon(DaemonTests.spec(), environment: ["NOTIFY_SOCKET": socket, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"])
        #expect(sb.wait(timeout: 5) { sb.daemonLogText().contains("started") })
        usleep(1_000_000)
        sb.signalDaemon(SIGTERM)
        #expect(sb.waitDaemon() == 0)
        let got = try Self.collect(receiver).map(\.message)
        #expect(got.contains { $0.hasPrefix("READY=1") } && got.last == "STOPPING=1", "\(got)")
        #expect(!got.contains("WATCHDOG=1"), "\(got)")
    }
}
