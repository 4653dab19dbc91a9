import Foundation
import Testing

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset
import TestSupport

/// Passive health against the real kernel: the table's rules log a backend's resets to the NFLOG group the
/// listener binds, and nothing else reaches it.
@Suite(.serialized) struct PassiveHealthTests {
    static let spec = """
        table: passive
        pools:
          - name: web
            frontends: [{address: 10.99.0.1, port: 80}]
            healthCheck: {type: tcp, passive: {errorLimit: 1}}
            backends: [{address: 10.98.0.2, port: 81}, {address: 10.98.0.3, port: 82}]
          - name: other
            frontends: [{address: 10.99.0.2, port: 80}]
            backends: [{address: 10.98.0.4, port: 83}]
        """

    func signals(_ listener: PassiveHealthListener, atLeast n: Int, within seconds: Double = 2) -> [PassiveSignal] {
        var all: [PassiveSignal] = []
        let deadline = Date().addingTimeInterval(seconds)
        while all.count < n && Date() < deadline { all += listener.next() }
        return all
    }

    @Test func aResetFromAPassivePoolsBackendReachesTheListenerAndNothingElseDoes() throws {
        try ScratchNamespace.requireKernelTools()
        // The LB with a client on it (the VIPs on lo), and a backend host behind a veth with nothing
        // listening: its kernel answers each SYN with a reset.
        let ns = try ScratchNamespace("passive")
        let hosts = try ScratchNamespace("passive-b")
        #expect(try Repo.run(URL(fileURLWithPath: "/usr/sbin/ip"), ["link", "add", "pv0", "netns", ns.name, "type", "veth", "peer", "name", "pv1", "netns", hosts.name]).status == 0)
        for a in ["10.99.0.1/32", "10.99.0.2/32"] { #expect(try ns.exec("ip", ["addr", "add", a, "dev", "lo"]).status == 0) }
        for c in [["link", "set", "lo", "up"], ["link", "set", "pv0", "up"], ["addr", "add", "10.98.0.1/24", "dev", "pv0"]] {
            #expect(try ns.exec("ip", c).status == 0)
        }
        for c in [["link", "set", "lo", "up"], ["link", "set", "pv1", "up"], ["addr", "add", "10.98.0.2/24", "dev", "pv1"],
                  ["addr", "add", "10.98.0.3/24", "dev", "pv1"], ["addr", "add", "10.98.0.4/24", "dev", "pv1"]] {
            #expect(try hosts.exec("ip", c).status == 0)
        }
        let spec = try SpecDecoder.decode(Self.spec)
        let table = RulesetBuilder.table(for: spec)
        try NetfilterKernel(netns: ns.name).apply(table)
        let group = RulesetBuilder.passiveLogGroup(table: "passive")
        let listener = try NetfilterKernel.inNamespace(ns.name) { () throws(KernelError) in try PassiveHealthListener(group: group) }

        // A second listener for the same group is refused, and says so.
        #expect(throws: KernelError.self) { try NetfilterKernel.inNamespace(ns.name) { () throws(KernelError) in try PassiveHealthListener(group: group) } }

        // Three connection attempts through the VIP: round-robin over two backends, none listening.
        for _ in 0..<3 {
            _ = try ns.exec("python3", ["-c", "import socket; s=socket.socket(); s.settimeout(1)\ntry: s.connect(('10.99.0.1', 80))\nexcept Exception: pass"])
        }
        let got = signals(listener, atLeast: 3)
        #expect(got.count == 3, "\(got)")
        #expect(Set(got.map { "\($0.address):\($0.port)" }) == ["10.98.0.2:81", "10.98.0.3:82"], "\(got)")
        #expect(got.allSatisfy { $0.kind == .reset })

        // A pool without passive, and a reset not on a DNATed flow, are not logged.
        _ = try ns.exec("python3", ["-c", "import socket; s=socket.socket(); s.settimeout(1)\ntry: s.connect(('10.99.0.2', 80))\nexcept Exception: pass"])
        _ = try ns.exec("python3", ["-c", "import socket; s=socket.socket(); s.settimeout(1)\ntry: s.connect(('10.98.0.2', 81))\nexcept Exception: pass"])
        #expect(signals(listener, atLeast: 1, within: 0.6).isEmpty)

        // The rate limit holds a burst to its budget: 200 resets at once log about burst (50) plus what
        // the rate refills meanwhile, not 200.
        _ = try ns.exec("python3", ["-c", """
            import socket
            for _ in range(200):
                s = socket.socket(); s.settimeout(1)
                try: s.connect(('10.99.0.1', 80))
                except Exception: pass
                s.close()
            """])
        let burst = signals(listener, atLeast: 200, within: 1)
        #expect(burst.count >= 50 && burst.count < 200, "rate-limited in the kernel: \(burst.count) of 200 logged")
        print("figure: passive log rule, 200 resets in a burst: \(burst.count) logged (limit 200/second burst 50)")
    }

    @Test func headersAreReadAsTheKernelSendsThem() throws {
        // IPv4 TCP RST|ACK from 10.0.0.5:6443.
        var tcp4 = [UInt8](repeating: 0, count: 40)
        tcp4[0] = 0x45; tcp4[9] = 6
        tcp4.replaceSubrange(12..<16, with: [10, 0, 0, 5])
        tcp4[20] = 0x19; tcp4[21] = 0x2b; tcp4[33] = 0x14
        #expect(PassiveHealthListener.signal(inPacket: tcp4) == PassiveSignal(address: IPAddress("10.0.0.5")!, port: 6443, kind: .reset))
        var synAck = tcp4
        synAck[33] = 0x12
        #expect(PassiveHealthListener.signal(inPacket: synAck) == nil, "no RST bit: not a failure")

        // ICMP port unreachable quoting a UDP packet to 10.0.0.7:53.
        var icmp4 = [UInt8](repeating: 0, count: 20 + 8 + 20 + 8)
        icmp4[0] = 0x45; icmp4[9] = 1; icmp4[20] = 3; icmp4[21] = 3
        icmp4[28] = 0x45; icmp4[37] = 17
        icmp4.replaceSubrange(44..<48, with: [10, 0, 0, 7])
        icmp4[50] = 0; icmp4[51] = 53
        #expect(PassiveHealthListener.signal(inPacket: icmp4) == PassiveSignal(address: IPAddress("10.0.0.7")!, port: 53, kind: .unreachable(code: 3)))

        // IPv6 TCP RST from [fd00::5]:443, and ICMPv6 unreachable quoting a packet to [fd00::6]:80.
        var tcp6 = [UInt8](repeating: 0, count: 60)
        tcp6[0] = 0x60; tcp6[6] = 6; tcp6[8] = 0xfd; tcp6[23] = 5
        tcp6[40] = 0x01; tcp6[41] = 0xbb; tcp6[53] = 0x04
        #expect(PassiveHealthListener.signal(inPacket: tcp6) == PassiveSignal(address: IPAddress("fd00::5")!, port: 443, kind: .reset))
        var icmp6 = [UInt8](repeating: 0, count: 40 + 8 + 40 + 8)
        icmp6[0] = 0x60; icmp6[6] = 58; icmp6[40] = 1; icmp6[41] = 4
        icmp6[48] = 0x60; icmp6[54] = 6; icmp6[72] = 0xfd; icmp6[87] = 6
        icmp6[90] = 0; icmp6[91] = 80
        #expect(PassiveHealthListener.signal(inPacket: icmp6) == PassiveSignal(address: IPAddress("fd00::6")!, port: 80, kind: .unreachable(code: 4)))

        // Truncated or foreign packets are nothing, never a crash.
        for n in 0..<tcp4.count { _ = PassiveHealthListener.signal(inPacket: Array(tcp4.prefix(n))) }
        for n in 0..<icmp6.count { _ = PassiveHealthListener.signal(inPacket: Array(icmp6.prefix(n))) }
        #expect(PassiveHealthListener.signal(inPacket: [0x50, 1, 2]) == nil)
    }
}
