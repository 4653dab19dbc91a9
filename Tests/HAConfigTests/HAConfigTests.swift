import Foundation
import Testing

@testable import HAConfig
import PoolSpec
import TestSupport

/// The examples with an `ha` section, and the directory of their golden files.
let haExamples = Repo.exampleNames.filter { $0.hasPrefix("ha-") }
func haGoldenDirectory(_ example: String, _ node: String) -> URL {
    Repo.rulesets.appendingPathComponent(example).appendingPathComponent(node)
}
func loadExample(_ name: String) throws -> Spec {
    try SpecDecoder.load(path: Repo.rulesets.appendingPathComponent("\(name).yaml").path, readingCAFiles: false)
}

/// Golden copies use these directories (what a packaged install would).
let goldenConfigDirectory = "/etc/nftpool/ha"

/// ha-config's text for every node of every rulesets/ha-*.yaml equals rulesets/ha-*/NODE/*.
/// After an intended change: `NFTPOOL_UPDATE_GOLDEN=1 swift test --filter HAConfigTests`, then read the diff.
@Suite struct HAConfigGoldenTests {
    @Test func thereIsAnHAExample() {
        #expect(haExamples.contains("ha-pair"))
    }

    @Test(arguments: haExamples)
    func filesEqualGolden(example: String) throws {
        let spec = try loadExample(example)
        for node in try #require(spec.ha).nodes {
            let files = try HAConfig.generate(spec, node: node.name, configDirectory: goldenConfigDirectory)
            let dir = haGoldenDirectory(example, node.name)
            let pairs = [
                (HAConfig.keepalivedFile, files.keepalived), (HAConfig.conntrackdFile, files.conntrackd),
                (HAConfig.notifyScriptFile, files.notifyScript),
            ]
            if ProcessInfo.processInfo.environment["NFTPOOL_UPDATE_GOLDEN"] == "1" {
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                for (name, text) in pairs { try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8) }
            }
            for (name, text) in pairs {
                let golden = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
                #expect(text == golden, "\(example)/\(node.name)/\(name) differs from its golden file")
            }
        }
    }
}

/// A two-node spec to vary: IPv4 VRRP unless told.
func haSpec(nodes: String? = nil, frontends: String = "10.50.0.10", snat: String = "10.60.0.100", advert: String = "200ms") throws -> Spec {
    let nodeLines = nodes ?? """
            - {name: lb-a, address: 10.50.0.2, syncAddress: 10.70.0.1, priority: 150}
            - {name: lb-b, address: 10.50.0.3, syncAddress: 10.70.0.2, priority: 100}
        """
    let family6 = !frontends.contains(".")
    return try SpecDecoder.decode("""
        table: lb
        pools:
          - name: api
            frontends: [{address: "\(frontends)", port: 6443}]
            snat: \(family6 ? "none" : snat)
            backends: [{address: "\(family6 ? "fd60::11" : "10.60.0.11")"}]
        ha:
          interface: eth0
          snatAddress: \(snat)
          routerId: 7
          advertInterval: \(advert)
          sync: {interface: eth2}
          nodes:
        \(nodeLines)
        """)
}

@Suite struct HAConfigTextTests {
    @Test func advertIntervalInSeconds() {
        #expect(HAConfig.seconds(.milliseconds(200)) == "0.2")
        #expect(HAConfig.seconds(.milliseconds(10)) == "0.01")
        #expect(HAConfig.seconds(.milliseconds(1050)) == "1.05")
        #expect(HAConfig.seconds(.seconds(40)) == "40")
    }

    /// Both peers listed, 3 nodes: conntrackd multicast (UDP reaches one peer), group per routerId.
    @Test func threeNodesUseMulticast() throws {
        let spec = try haSpec(nodes: """
                - {name: lb-a, address: 10.50.0.2, syncAddress: 10.70.0.1, priority: 150}
                - {name: lb-b, address: 10.50.0.3, syncAddress: 10.70.0.2, priority: 100}
                - {name: lb-c, address: 10.50.0.4, syncAddress: 10.70.0.3, priority: 50}
            """)
        let files = try HAConfig.generate(spec, node: "lb-b", configDirectory: "/etc/x")
        #expect(files.keepalived.contains("    unicast_src_ip 10.50.0.3\n    unicast_peer {\n        10.50.0.2\n        10.50.0.4\n    }\n"))
        #expect(files.conntrackd.contains("    Multicast {\n        IPv4_address 225.0.0.7\n        IPv4_interface 10.70.0.2\n        Group 3780\n        Interface eth2\n"))
        #expect(!files.conntrackd.contains("UDP {"))
        let two = try HAConfig.generate(try haSpec(), node: "lb-b", configDirectory: "/etc/x")
        #expect(two.conntrackd.contains("        IPv4_address 10.70.0.2\n        IPv4_Destination_Address 10.70.0.1\n        Port 3780\n        Interface eth2\n"))
    }

    @Test func threeNodesWithIPv6SyncAreRefused() throws {
        let spec = try haSpec(nodes: """
                - {name: lb-a, address: 10.50.0.2, syncAddress: "fd70::1", priority: 150}
                - {name: lb-b, address: 10.50.0.3, syncAddress: "fd70::2", priority: 100}
                - {name: lb-c, address: 10.50.0.4, syncAddress: "fd70::3", priority: 50}
            """)
        #expect(throws: HAConfig.Failure.unusable("ha.nodes: with 3 or more nodes conntrackd needs multicast, which nftpool generates for IPv4 sync addresses only; give the nodes IPv4 syncAddress values")) {
            try HAConfig.generate(spec, node: "lb-a", configDirectory: "/etc/x")
        }
        let pair6 = try haSpec(nodes: """
                - {name: lb-a, address: 10.50.0.2, syncAddress: "fd70::1", priority: 150}
                - {name: lb-b, address: 10.50.0.3, syncAddress: "fd70::2", priority: 100}
            """)
        let files = try HAConfig.generate(pair6, node: "lb-a", configDirectory: "/etc/x")
        #expect(files.conntrackd.contains("        IPv6_address fd70::1\n        IPv6_Destination_Address fd70::2\n"))
    }

    /// virtual_ipaddress holds the instance's family (its adverts'); the other family is excluded but moves alike.
    @Test func otherFamilyAddressesAreExcludedVIPs() throws {
        let nodes6 = """
                - {name: lb-a, address: "fd50::2", syncAddress: 10.70.0.1, priority: 150}
                - {name: lb-b, address: "fd50::3", syncAddress: 10.70.0.2, priority: 100}
            """
        let v6VRRP = try SpecDecoder.decode("""
            table: lb
            pools:
              - name: api
                frontends: [{address: 10.50.0.10, port: 6443}]
                snat: 10.60.0.100
                backends: [{address: 10.60.0.11}]
              - name: api6
                frontends: [{address: "fd50::10", port: 6443}]
                snat: none
                backends: [{address: "fd60::11"}]
            ha:
              interface: eth0
              snatAddress: 10.60.0.100
              routerId: 7
              advertInterval: 200ms
              sync: {interface: eth2}
              nodes:
            \(nodes6)
            """)
        let files = try HAConfig.generate(v6VRRP, node: "lb-a", configDirectory: "/etc/x")
        #expect(files.keepalived.contains("    unicast_src_ip fd50::2\n"))
        #expect(files.keepalived.contains("    virtual_ipaddress {\n        fd50::10/128 dev eth0\n    }\n"))
        #expect(files.keepalived.contains("    virtual_ipaddress_excluded {\n        10.50.0.10/32 dev eth0\n        10.60.0.100/32 dev eth0\n    }\n"))
        // keepalived refuses an instance without one VIP of its own family ("No VIP specified").
        #expect(throws: HAConfig.Failure.unusable("ha.nodes: the nodes' addresses are IPv6 but no frontend address and not snatAddress is; keepalived needs at least one floating IPv6 address in the family of its adverts")) {
            try HAConfig.generate(try haSpec(nodes: nodes6), node: "lb-a", configDirectory: "/etc/x")
        }
    }

    @Test func refusals() throws {
        let spec = try haSpec()
        #expect(throws: HAConfig.Failure.noHA) { try HAConfig.generate(try loadExample("kube-apiserver"), node: "lb-a", configDirectory: "/x") }
        #expect(throws: HAConfig.Failure.unknownNode("x", known: ["lb-a", "lb-b"])) {
            try HAConfig.generate(spec, node: "x", configDirectory: "/x")
        }
        #expect(HAConfig.Failure.unknownNode("x", known: ["lb-a", "lb-b"]).description == "--node: no node \"x\" in ha.nodes (lb-a, lb-b)")
        #expect(HAConfig.Failure.noHA.description == "ha: this spec has no ha section")
        #expect(throws: HAConfig.Failure.unusable("--dir: etc/x must be an absolute path")) {
            try HAConfig.generate(spec, node: "lb-a", configDirectory: "etc/x")
        }
        #expect(throws: HAConfig.Failure.self) { try HAConfig.generate(spec, node: "lb-a", configDirectory: "/etc/my dir") }
        let long = "/" + String(repeating: "r", count: 90)
        #expect(throws: HAConfig.Failure.unusable("--runtime-dir: \(long)/conntrackd.lb.lb-a.ctl is longer than a UNIX socket path may be (107 bytes)")) {
            try HAConfig.generate(spec, node: "lb-a", configDirectory: "/x", runtimeDirectory: long)
        }
    }

    /// Every runtime file under the runtime directory, named by table and node; a trailing / is ignored.
    @Test func runtimePaths() throws {
        let p = HAConfig.Paths(configDirectory: "/etc/ha/", runtimeDirectory: "/run/x/", table: "lb", node: "lb-a")
        #expect(p.trackFile == "/run/x/lb.lb-a.track" && p.notifyFifo == "/run/x/lb.lb-a.notify")
        #expect(p.daemonPidFile == "/run/x/lb.lb-a.pid" && p.conntrackdSocket == "/run/x/conntrackd.lb.lb-a.ctl")
        #expect(p.conntrackdLock == "/run/x/conntrackd.lb.lb-a.lock" && p.notifyScript == "/etc/ha/nftpool-notify.sh")
        let files = try HAConfig.generate(try haSpec(), node: "lb-a", configDirectory: "/etc/ha", runtimeDirectory: "/run/x")
        let all = files.keepalived + files.conntrackd + files.notifyScript
        for path in [p.trackFile, p.notifyFifo, p.daemonPidFile, p.conntrackdSocket, p.conntrackdLock] {
            #expect(all.contains(path), "\(path)")
        }
        #expect(!all.contains("/var/run") && !all.contains("/var/lock"))
    }

    /// The trap in HA-NOTES: `conntrackd -t` on the backup flushes the replica.
    @Test func notifyScriptNeverPurges() throws {
        let files = try HAConfig.generate(try haSpec(), node: "lb-a", configDirectory: "/etc/ha")
        let commands = files.notifyScript.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
        #expect(!commands.contains { $0.contains(" -t") || $0.contains(" -c") })
        #expect(commands.contains { $0.contains("conntrackd -C \"$CONF\" -n") })
    }
}
