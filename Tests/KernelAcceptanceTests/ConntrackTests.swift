import Foundation
import Testing
import TestSupport

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset

/// close-connections with real conntrack entries: flows from inside a namespace to its own frontends,
/// DNATed by the nat-output chain to a backend on the namespace's loopback (UDP: one datagram makes an
/// entry, no server needed). Judged by what the `conntrack` tool lists.
@Suite(.serialized) struct ConntrackTests {
    static let backend = Backend(address: IPAddress("10.0.1.1")!, port: 8053)

    static func pool(_ name: String, vip: String) -> Pool {
        Pool(
            name: name, frontends: [Frontend(address: IPAddress(vip)!, port: 53, protocol: .udp)],
            onBackendDown: .closeConnections, backends: [backend])
    }

    /// The flows conntrack holds to `vip`:53 (original direction), whatever they were DNATed to.
    static func flows(to vip: String, in ns: ScratchNamespace) throws -> Int {
        let r = try ns.exec("conntrack", ["-L", "-p", "udp", "--orig-dst", vip])
        return r.out.split(separator: "\n").filter { $0.contains("dport=53 ") && $0.contains("sport=8053 ") }.count
    }

    @Test func closingOnePoolsBackendLeavesOtherPoolsSharingItAlone() throws {
        try ScratchNamespace.requireKernelTools()
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/conntrack") else {
            throw KernelTestError("this test needs the conntrack tool (apt-get install conntrack)")
        }
        let ns = try ScratchNamespace("conntrack")
        for command in [
            ["link", "set", "lo", "up"], ["addr", "add", "10.0.0.1/32", "dev", "lo"], ["addr", "add", "10.0.0.2/32", "dev", "lo"],
            ["addr", "add", "10.0.0.3/32", "dev", "lo"], ["addr", "add", "10.0.1.1/32", "dev", "lo"],
        ] {
            #expect(try ns.exec("ip", command).status == 0)
        }
        let a = Self.pool("a", vip: "10.0.0.1"), b = Self.pool("b", vip: "10.0.0.2")
        let kernel = try NetfilterKernel(netns: ns.name)
        try kernel.apply(RulesetBuilder.table(for: Spec(pools: [a, b])))
        // Someone else's DNAT to the same backend (as kube-proxy or docker would have).
        let other = "table ip other {\n\tchain out {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tip daddr 10.0.0.3 udp dport 53 dnat to 10.0.1.1:8053\n\t}\n}\n"
        #expect(try ns.exec("nft", ["-f", "-"], stdin: other).status == 0)
        // Three flows to A, two to B, one through the other table; each redirection is a new socket.
        let send = "for v in 10.0.0.1 10.0.0.1 10.0.0.1 10.0.0.2 10.0.0.2 10.0.0.3; do echo x > /dev/udp/$v/53; done"
        #expect(try ns.exec("bash", ["-c", send]).status == 0)
        #expect(try Self.flows(to: "10.0.0.1", in: ns) == 3)
        #expect(try Self.flows(to: "10.0.0.2", in: ns) == 2)
        #expect(try Self.flows(to: "10.0.0.3", in: ns) == 1)

        let closed = try kernel.deleteConnections(to: [.init(address: Self.backend.address, port: Self.backend.port, frontends: a.frontends)])
        #expect(closed == [3])
        #expect(try Self.flows(to: "10.0.0.1", in: ns) == 0, "pool a's flows are gone")
        #expect(try Self.flows(to: "10.0.0.2", in: ns) == 2, "pool b shares the backend and keeps its flows")
        #expect(try Self.flows(to: "10.0.0.3", in: ns) == 1, "another program's DNAT to the backend is not ours")

        // A frontend of another protocol or port on the same address matches nothing.
        let tcp = Frontend(address: IPAddress("10.0.0.2")!, port: 53, protocol: .tcp)
        let wrongPort = Frontend(address: IPAddress("10.0.0.2")!, port: 54, protocol: .udp)
        #expect(try kernel.deleteConnections(to: [.init(address: Self.backend.address, port: Self.backend.port, frontends: [tcp, wrongPort])]) == [0])
        #expect(try Self.flows(to: "10.0.0.2", in: ns) == 2)
    }
}
