import Foundation
import IntegrationHarness
import Testing

/// Real connections through the kernel: every scheduler and option of the spec, counted at the backends.
/// Each test builds its own sandbox of namespaces (see Sandbox) and tears it down.
@Suite(.serialized) struct TrafficTests {
    struct Backend {
        var index: Int
        var weight = 1
        var state = "enabled"
    }

    /// One pool named `web` on the sandbox VIP. `lines` are extra pool fields, indented for the pool.
    static func spec(
        scheduler: String = "round-robin", family6: Bool = false, proto: String = "tcp", port: Int = 80,
        snat: String = "masquerade", backends: [Backend], lines: [String] = []
    ) -> String {
        var s = """
            table: itest
            pools:
              - name: web
                frontends:
                  - address: \(family6 ? Sandbox.vip6 : Sandbox.vip4)
                    port: \(port)
                    protocol: \(proto)
                scheduler: \(scheduler)
                snat: \(snat)

            """
        for line in lines { s += "    \(line)\n" }
        s += "    backends:\n"
        for b in backends {
            let address = family6 ? Sandbox.backendAddress6(b.index) : Sandbox.backendAddress(b.index)
            s += "      - {address: \"\(address)\", weight: \(b.weight), state: \(b.state)}\n"
        }
        return s
    }

    static func counts(_ result: [String: Any]) -> [String: Int] { result["counts"] as? [String: Int] ?? [:] }
    static func failures(_ result: [String: Any]) -> Int { result["failures"] as? Int ?? -1 }

    /// 300 connections over b0, b1, b2 with none failed: each backend 100 ± 3.
    static func expectEvenOver3(_ r: [String: Any]) {
        #expect(failures(r) == 0, "\(r["errors"] ?? "")")
        let c = counts(r)
        #expect(c.keys.sorted() == ["b0", "b1", "b2"], "\(c)")
        for (name, n) in c { #expect(abs(n - 100) <= 3, "\(name): \(n) of 300") }
    }

    // 1
    @Test func roundRobinSpreadsEvenly() throws {
        let sb = try Sandbox("rr")
        try sb.apply(Self.spec(backends: (0..<3).map { Backend(index: $0) }))
        let r = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "300"])
        Self.expectEvenOver3(r)
        print("figure: round-robin 300 connections: \(Self.counts(r).sorted { $0.key < $1.key })")
    }

    // 2
    @Test func weightsSetTheShares() throws {
        let sb = try Sandbox("weights")
        try sb.apply(Self.spec(backends: [Backend(index: 0, weight: 1), Backend(index: 1, weight: 2), Backend(index: 2, weight: 3)]))
        let r = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "600"])
        #expect(Self.failures(r) == 0)
        let c = Self.counts(r)
        for (i, share) in [1.0 / 6, 2.0 / 6, 3.0 / 6].enumerated() {
            let got = Double(c["b\(i)", default: 0]) / 600
            #expect(abs(got - share) <= 0.03, "b\(i): \(got) against \(share)")
        }
        print("figure: weights 1:2:3, 600 connections: \(c.sorted { $0.key < $1.key })")
    }

    // 3
    @Test func randomStaysNearTheShares() throws {
        let sb = try Sandbox("random")
        try sb.apply(Self.spec(scheduler: "random", backends: (0..<3).map { Backend(index: $0) }))
        let r = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "600"])
        #expect(Self.failures(r) == 0)
        for i in 0..<3 {
            let n = Self.counts(r)["b\(i)", default: 0]
            #expect(abs(n - 200) <= 50, "b\(i): \(n) of 600 (share 200 ± 25%)")
        }
        print("figure: random, 600 connections: \(Self.counts(r).sorted { $0.key < $1.key })")
    }

    // 4
    @Test func sourceHashIsStickyAndMovesOnlyTheDisabledBackendsClients() throws {
        var options = Sandbox.Options()
        options.backends = 4
        options.extraClientAddresses = 200
        let sb = try Sandbox("srchash", options)
        let all = (0..<4).map { Backend(index: $0) }
        try sb.apply(Self.spec(scheduler: "source-hash", backends: all))
        let sources = sb.clientSources.joined(separator: ",")
        let before = try sb.traffic(["count", "--target", Sandbox.vip4, "--sources", sources, "--repeat", "5"])
        #expect(Self.failures(before) == 0)
        let first = try #require(before["by_source"] as? [String: [String]])
        #expect(first.count == 200)
        for (src, names) in first { #expect(Set(names).count == 1, "\(src) reached \(names)") }
        let owner = first.mapValues { $0[0] }
        let perBackend = Dictionary(grouping: owner.values, by: { $0 }).mapValues(\.count)
        #expect(perBackend.count == 4, "every backend has clients: \(perBackend)")

        var changed = all
        changed[1].state = "disabled"
        try sb.apply(Self.spec(scheduler: "source-hash", backends: changed))
        let after = try sb.traffic(["count", "--target", Sandbox.vip4, "--sources", sources, "--repeat", "5"])
        #expect(Self.failures(after) == 0)
        let second = try #require(after["by_source"] as? [String: [String]])
        var moved = 0
        for (src, names) in second {
            #expect(Set(names).count == 1, "\(src) reached \(names)")
            #expect(names[0] != "b1", "\(src) still reaches the disabled backend")
            if names[0] != owner[src] {
                moved += 1
                #expect(owner[src] == "b1", "\(src) moved from \(owner[src] ?? "?") though its backend stayed")
            }
        }
        #expect(moved == perBackend["b1"], "exactly b1's clients move")
        #expect(Double(moved) <= 200 * (0.25 + 0.05), "\(moved) of 200 moved")
        print("figure: source-hash, 200 clients over 4 backends \(perBackend.sorted { $0.key < $1.key }); b1 disabled: \(moved) moved")
    }

    // 5
    @Test func masqueradeServesBackendsThatDoNotRouteThroughUs() throws {
        var options = Sandbox.Options()
        options.backendsRouteViaLB = false
        let sb = try Sandbox("onearm", options)
        let backends = (0..<3).map { Backend(index: $0) }
        try sb.apply(Self.spec(snat: "masquerade", backends: backends))
        let r = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "30"])
        #expect(Self.failures(r) == 0, "\(r["errors"] ?? "")")
        #expect(r["peers"] as? [String: Int] == [Sandbox.lbBackendSide: 30], "backends see the LB's address")

        // The control: without source NAT these backends cannot answer the client.
        try sb.apply(Self.spec(snat: "none", backends: backends))
        let broken = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "3", "--timeout", "0.5"])
        #expect(Self.failures(broken) == 3)
    }

    @Test func snatNoneShowsTheClientAddressToRoutedBackends() throws {
        let sb = try Sandbox("snatnone")
        try sb.apply(Self.spec(snat: "none", backends: (0..<3).map { Backend(index: $0) }))
        let r = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "30"])
        #expect(Self.failures(r) == 0, "\(r["errors"] ?? "")")
        #expect(r["peers"] as? [String: Int] == ["10.10.0.2": 30], "backends see the client itself")
    }

    // 6
    @Test func aClientOnTheLBHostReachesTheVIP() throws {
        let sb = try Sandbox("local")
        try sb.apply(Self.spec(backends: (0..<3).map { Backend(index: $0) }))
        let r = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "30"], in: sb.lb)
        #expect(Self.failures(r) == 0, "\(r["errors"] ?? "")")
        #expect(Self.counts(r) == ["b0": 10, "b1": 10, "b2": 10])
    }

    // 7
    @Test func anIPv6PoolBalancesLikeItsIPv4Twin() throws {
        let sb = try Sandbox("ipv6")
        try sb.apply(Self.spec(family6: true, backends: (0..<3).map { Backend(index: $0) }))
        Self.expectEvenOver3(try sb.traffic(["count", "--target", Sandbox.vip6, "--n", "300"]))
    }

    @Test func aUDPPoolBalancesLikeItsTCPTwin() throws {
        let sb = try Sandbox("udp")
        try sb.apply(Self.spec(proto: "udp", port: 53, backends: (0..<3).map { Backend(index: $0) }))
        Self.expectEvenOver3(try sb.traffic(["count", "--target", Sandbox.vip4, "--port", "53", "--proto", "udp", "--n", "300"]))
    }

    // 8
    @Test func whenAllDownRejectDropOrFailOpen() throws {
        let sb = try Sandbox("alldown")
        let down = (0..<3).map { Backend(index: $0, state: "disabled") }

        try sb.apply(Self.spec(backends: down, lines: ["whenAllDown: reject"]))
        let rejected = try sb.traffic(["connect", "--target", Sandbox.vip4, "--timeout", "2"])
        #expect(rejected["error"] as? String == "refused", "\(rejected)")
        #expect((rejected["elapsed"] as? Double ?? 9) < 0.1, "refused within 100 ms: \(rejected)")
        print("figure: whenAllDown reject refused after \(rejected["elapsed"] ?? "?") s")

        try sb.apply(Self.spec(backends: down, lines: ["whenAllDown: drop"]))
        let dropped = try sb.traffic(["connect", "--target", Sandbox.vip4, "--timeout", "1"])
        #expect(dropped["error"] as? String == "timeout", "\(dropped)")

        try sb.apply(Self.spec(backends: down, lines: ["whenAllDown: fail-open"]))
        let open = try sb.traffic(["connect", "--target", Sandbox.vip4, "--timeout", "2"])
        #expect(open["ok"] as? Bool == true, "\(open)")
    }

    // 9
    @Test func drainKeepsEstablishedConnectionsAndTakesNoNewOnes() throws {
        let sb = try Sandbox("drain")
        var backends = (0..<3).map { Backend(index: $0) }
        try sb.apply(Self.spec(backends: backends))
        let held = try sb.startTraffic(["hold", "--target", Sandbox.vip4, "--interval", "0.05", "--duration", "3"])
        let first = try #require(try held.nextLine()["first"] as? String)
        let drained = Int(first.dropFirst())!
        backends[drained].state = "drain"
        try sb.apply(Self.spec(backends: backends))
        let fresh = try sb.traffic(["count", "--target", Sandbox.vip4, "--n", "60"])
        #expect(Self.failures(fresh) == 0)
        #expect(Self.counts(fresh)[first] == nil, "new connections avoid the drained \(first): \(Self.counts(fresh))")
        let summary = try held.finish()
        #expect(summary["failures"] as? Int == 0, "\(summary)")
        #expect(summary["names"] as? [String] == [first])
        #expect((summary["requests"] as? Int ?? 0) >= 30, "the held connection kept exchanging data: \(summary)")
    }

    // 10
    @Test func reapplyingUnderLoadFailsNoConnection() throws {
        let sb = try Sandbox("reapply")
        // The pool exists before the load starts: until then the VIP is the LB's own, unserved address.
        try sb.apply(Self.spec(backends: (0..<3).map { Backend(index: $0) }))
        let load = try sb.startTraffic(["loop", "--target", Sandbox.vip4, "--duration", "600", "--timeout", "2"])
        #expect(try load.nextLine()["started"] != nil)
        for k in 0..<100 {
            var backends = (0..<3).map { Backend(index: $0, weight: 1 + (k + $0) % 4) }
            if k % 3 == 1 { backends.removeLast() }  // a backend leaves the spec and comes back
            try sb.apply(Self.spec(backends: backends))
        }
        load.stop()
        let summary = try load.finish()
        if summary["failures"] as? Int != 0 { print("re-apply under load failed: \(summary)") }
        #expect(summary["failures"] as? Int == 0, "\(summary)")
        #expect((summary["ok"] as? Int ?? 0) > 100, "\(summary)")
        print("figure: 100 re-applies under load: \(summary["ok"] ?? "?") connections, \(summary["failures"] ?? "?") failed")
    }
}
