import Testing

@testable import PoolSpec

/// A valid two-node spec; each test changes one thing and expects exactly the error lines it causes.
let haYAML = """
    table: lb
    pools:
      - name: api
        frontends:
          - address: 10.50.0.10
            port: 6443
        snat: 10.60.0.100
        backends:
          - address: 10.60.0.11
    ha:
      interface: eth0
      backendInterface: eth1
      snatAddress: 10.60.0.100
      routerId: 51
      advertInterval: 200ms
      sync: {interface: eth2}
      nodes:
        - {name: lb-a, address: 10.50.0.2, syncAddress: 10.70.0.1, priority: 150}
        - {name: lb-b, address: 10.50.0.3, syncAddress: 10.70.0.2, priority: 100}
    """

/// The HA spec with `old` replaced by `new` (which must occur exactly once).
func haEdited(_ old: String, _ new: String) -> String {
    precondition(haYAML.components(separatedBy: old).count == 2, "\(old) must occur once")
    return haYAML.replacingOccurrences(of: old, with: new)
}

@Suite struct HAValidationTests {
    @Test func validHASpecDecodesWithDefaults() throws {
        let spec = try SpecDecoder.decode(haYAML)
        let ha = try #require(spec.ha)
        #expect(ha.interface == "eth0" && ha.backendInterface == "eth1" && ha.sync.interface == "eth2")
        #expect(ha.snatAddress == IPAddress("10.60.0.100")! && ha.routerId == 51)
        #expect(ha.advertInterval == .milliseconds(200) && ha.yieldWhenAllDown == false)
        #expect(ha.nodes == [
            HANode(name: "lb-a", address: IPAddress("10.50.0.2")!, syncAddress: IPAddress("10.70.0.1")!, priority: 150),
            HANode(name: "lb-b", address: IPAddress("10.50.0.3")!, syncAddress: IPAddress("10.70.0.2")!, priority: 100),
        ])
        let noBackendInterface = try SpecDecoder.decode(haEdited("  backendInterface: eth1\n", "  yieldWhenAllDown: true\n"))
        #expect(noBackendInterface.ha?.backendInterface == "eth0")
        #expect(noBackendInterface.ha?.yieldWhenAllDown == true)
    }

    @Test func noHASectionIsASingleNode() throws {
        #expect(try SpecDecoder.decode(validYAML).ha == nil)
    }

    @Test func unknownAndMissingFields() {
        #expect(errors(haEdited("routerId: 51", "routerID: 51")) == [
            "ha.routerID: unknown field (did you mean \"routerId\"?)",
            "ha.routerId: required",
        ])
        #expect(errors(haEdited("  snatAddress: 10.60.0.100\n", "")) == ["ha.snatAddress: required"])
        #expect(errors(haEdited("sync: {interface: eth2}", "sync: {iface: eth2}")) == [
            "ha.sync.iface: unknown field; known fields here: interface",
            "ha.sync.interface: required",
        ])
        #expect(errors(haEdited("priority: 100}", "priority: 100, weight: 1}")) == [
            "ha.nodes[1].weight: unknown field; known fields here: name, address, syncAddress, priority"
        ])
    }

    @Test func interfaceNames() {
        #expect(errors(haEdited("interface: eth0", "interface: abcdefghijklmnop")) == [
            "ha.interface: \"abcdefghijklmnop\" is not an interface name: Linux names are 1 to 15 characters"
        ])
        #expect(errors(haEdited("interface: eth0", "interface: abcdefghijklmno")) == [])  // 15: the longest
        #expect(errors(haEdited("interface: eth0", "interface: \"\"")) == [
            "ha.interface: \"\" is not an interface name: Linux names are 1 to 15 characters"
        ])
        #expect(errors(haEdited("backendInterface: eth1", "backendInterface: \"..\"")) == [
            "ha.backendInterface: \"..\" is not an interface name"
        ])
        #expect(errors(haEdited("backendInterface: eth1", "backendInterface: eth1/2")) == [
            "ha.backendInterface: \"eth1/2\" is not an interface name: it holds '/'"
        ])
        #expect(errors(haEdited("sync: {interface: eth2}", "sync: {interface: \"eth 2\"}")) == [
            "ha.sync.interface: \"eth 2\" is not an interface name: it holds whitespace, control or non-ASCII characters"
        ])
        #expect(errors(haEdited("sync: {interface: eth2}", "sync: {interface: \"eth#2\"}")) == [
            "ha.sync.interface: \"eth#2\" is not an interface name: it holds '#'"
        ])
    }

    @Test func routerIdRange() {
        #expect(errors(haEdited("routerId: 51", "routerId: 0")) == ["ha.routerId: 0 is out of range (1-255)"])
        #expect(errors(haEdited("routerId: 51", "routerId: 256")) == ["ha.routerId: 256 is out of range (1-255)"])
        #expect(errors(haEdited("routerId: 51", "routerId: 255")) == [])
    }

    @Test func advertIntervalRangeAndCentiseconds() {
        #expect(errors(haEdited("advertInterval: 200ms", "advertInterval: 5ms")) == [
            "ha.advertInterval: 5ms is out of range (10ms-40s)"
        ])
        #expect(errors(haEdited("advertInterval: 200ms", "advertInterval: 41s")) == [
            "ha.advertInterval: 41s is out of range (10ms-40s)"
        ])
        #expect(errors(haEdited("advertInterval: 200ms", "advertInterval: 205ms")) == [
            "ha.advertInterval: 205ms is not a whole number of centiseconds (VRRPv3 counts in 10ms)"
        ])
        #expect(errors(haEdited("advertInterval: 200ms", "advertInterval: 10ms")) == [])
        #expect(errors(haEdited("advertInterval: 200ms", "advertInterval: 40s")) == [])
        #expect(errors(haEdited("advertInterval: 200ms", "advertInterval: fast")) == [
            "ha.advertInterval: \"fast\" is not a duration (write e.g. 500ms, 2s, 1m or 1m30s)"
        ])
    }

    @Test func priorities() {
        #expect(errors(haEdited("priority: 100}", "priority: 255}")) == [
            "ha.nodes[1].priority: 255 is out of range (1-254)"
        ])
        #expect(errors(haEdited("priority: 100}", "priority: 0}")) == [
            "ha.nodes[1].priority: 0 is out of range (1-254)"
        ])
        #expect(errors(haEdited("priority: 100}", "priority: 150}")) == [
            "ha.nodes[1].priority: 150 is also the priority of nodes[0]; priorities must differ so that every node elects the same master"
        ])
    }

    @Test func nodeNames() {
        #expect(errors(haEdited("name: lb-b", "name: lb-a")) == [
            "ha.nodes[1].name: \"lb-a\" is already the name of nodes[0]"
        ])
        #expect(errors(haEdited("name: lb-b", "name: LB_B")) == [
            "ha.nodes[1].name: \"LB_B\" must match [a-z0-9][a-z0-9-]* (lowercase letters, digits and '-')"
        ])
        let long = String(repeating: "b", count: 33)
        #expect(errors(haEdited("name: lb-b", "name: \(long)")) == [
            "ha.nodes[1].name: \"\(long)\" is longer than 32 characters"
        ])
    }

    @Test func atLeastTwoNodes() {
        #expect(errors(haEdited("\n    - {name: lb-b, address: 10.50.0.3, syncAddress: 10.70.0.2, priority: 100}", "")) == [
            "ha.nodes: 1 node; ha needs at least 2"
        ])
        #expect(errors(haEdited("  nodes:\n", "  nodes: []\n  x:\n")).contains("ha.nodes: 0 nodes; ha needs at least 2"))
    }

    @Test func addressesUnicastOneFamilyDistinct() {
        #expect(errors(haEdited("address: 10.50.0.3", "address: 224.0.0.18")) == [
            "ha.nodes[1].address: \"224.0.0.18\" is not a unicast address"
        ])
        #expect(errors(haEdited("address: 10.50.0.3", "address: fd00::3")) == [
            "ha.nodes[1].address: fd00::3 is IPv6 but nodes[0].address is IPv4; VRRP peers speak one family"
        ])
        #expect(errors(haEdited("syncAddress: 10.70.0.2", "syncAddress: fd70::2")) == [
            "ha.nodes[1].syncAddress: fd70::2 is IPv6 but nodes[0].syncAddress is IPv4; conntrackd's peers speak one family"
        ])
        #expect(errors(haEdited("address: 10.50.0.3", "address: 10.50.0.2")) == [
            "ha.nodes[1].address: 10.50.0.2 is already the address of nodes[0]"
        ])
        #expect(errors(haEdited("syncAddress: 10.70.0.2", "syncAddress: 10.70.0.1")) == [
            "ha.nodes[1].syncAddress: 10.70.0.1 is already the sync address of nodes[0]"
        ])
        #expect(errors(haEdited("snatAddress: 10.60.0.100", "snatAddress: 255.255.255.255")) == [
            "ha.snatAddress: \"255.255.255.255\" is not a unicast address"
        ])
        // An IPv6 sync link beside IPv4 VRRP is fine: each field is one family of its own.
        let v6Sync = haEdited("syncAddress: 10.70.0.1", "syncAddress: fd70::1")
            .replacingOccurrences(of: "syncAddress: 10.70.0.2", with: "syncAddress: fd70::2")
        #expect(errors(v6Sync) == [])
    }

    @Test func floatingAddressesAreNoNodesOwn() {
        #expect(errors(haEdited("snatAddress: 10.60.0.100", "snatAddress: 10.70.0.2")).contains(
            "ha.snatAddress: 10.70.0.2 is also nodes[1].syncAddress; the floating address must be no node's own address"))
        #expect(errors(haEdited("address: 10.50.0.10", "address: 10.50.0.2")) == [
            "pools[0].frontends[0].address: 10.50.0.2 is ha.nodes[0].address; a frontend moves between nodes and cannot be a node's own address"
        ])
    }

    @Test func snatMustFloat() {
        let masquerade = "pools[0].snat: with ha, must be none or ha.snatAddress (10.60.0.100), not masquerade (the default when snat is absent): masquerade picks this node's own address, so a connection synced to another node would still send backends' replies to the dead node"
        #expect(errors(haEdited("    snat: 10.60.0.100\n", "")) == [masquerade])
        #expect(errors(haEdited("    snat: 10.60.0.100\n", "    snat: masquerade\n")) == [masquerade])
        #expect(errors(haEdited("    snat: 10.60.0.100\n", "    snat: none\n")) == [])
        #expect(errors(haEdited("    snat: 10.60.0.100\n", "    snat: 10.60.0.101\n")) == [
            "pools[0].snat: with ha, must be none or ha.snatAddress (10.60.0.100), not 10.60.0.101: only ha.snatAddress moves with the VIPs, so a connection synced to another node would still send backends' replies to the dead node's address"
        ])
    }

    /// The snatAddress serves pools of its own family only; another family's pool must say none.
    @Test func snatAddressFamilyMustMatchItsPools() {
        let v6Pool = haYAML.replacingOccurrences(of: "ha:\n", with: """
              - name: api6
                frontends: [{address: "fd50::10", port: 6443}]
                backends: [{address: "fd60::11"}]
            ha:

            """)
        #expect(errors(v6Pool) == [
            "pools[1].snat: with ha, must be none (ha.snatAddress 10.60.0.100 is IPv4, this pool IPv6), not masquerade (the default when snat is absent): masquerade picks this node's own address, so a connection synced to another node would still send backends' replies to the dead node"
        ])
        #expect(errors(v6Pool.replacingOccurrences(of: "backends: [{address: \"fd60::11\"}]", with: "snat: none\n    backends: [{address: \"fd60::11\"}]")) == [])
    }

    /// Every mistake in one pass: pool, ha fields, nodes and the rules between them.
    @Test func everyErrorAtOnce() {
        let bad = """
            pools:
              - name: api
                frontends: [{address: 10.50.0.10, port: 6443}]
                snat: masquerade
                backends: [{address: 10.60.0.11}]
              - name: API
                frontends: [{address: 10.50.0.11, port: 6443}]
                backends: [{address: 10.60.0.11, weight: 0}]
            ha:
              interface: "eth0/1"
              backendInterface: averyveryverylongname
              snatAddress: 10.60.0.300
              routerId: 300
              advertInterval: 15ms
              sync: {interface: ".."}
              yieldWhenAllDown: maybe
              nodes:
                - {name: lb-a, address: 10.50.0.2, syncAddress: 10.70.0.1, priority: 150}
                - {name: lb-a, address: 10.50.0.2, syncAddress: 10.70.0.1, priority: 150}
                - {name: Lb-c, address: "fd00::1", syncAddress: 10.70.0.3, priority: 300}
            """
        #expect(errors(bad) == [
            "pools[1].name: \"API\" must match [a-z0-9][a-z0-9-]* (lowercase letters, digits and '-')",
            "pools[1].backends[0].weight: 0 is out of range (1-1000)",
            "ha.interface: \"eth0/1\" is not an interface name: it holds '/'",
            "ha.backendInterface: \"averyveryverylongname\" is not an interface name: Linux names are 1 to 15 characters",
            "ha.snatAddress: \"10.60.0.300\" is not an IPv4 or IPv6 address",
            "ha.routerId: 300 is out of range (1-255)",
            "ha.advertInterval: 15ms is not a whole number of centiseconds (VRRPv3 counts in 10ms)",
            "ha.sync.interface: \"..\" is not an interface name",
            "ha.nodes[2].name: \"Lb-c\" must match [a-z0-9][a-z0-9-]* (lowercase letters, digits and '-')",
            "ha.nodes[2].priority: 300 is out of range (1-254)",
            "ha.nodes[1].name: \"lb-a\" is already the name of nodes[0]",
            "ha.nodes[1].priority: 150 is also the priority of nodes[0]; priorities must differ so that every node elects the same master",
            "ha.nodes[1].address: 10.50.0.2 is already the address of nodes[0]",
            "ha.nodes[1].syncAddress: 10.70.0.1 is already the sync address of nodes[0]",
            "ha.yieldWhenAllDown: must be true or false, not \"maybe\"",
            "pools[0].snat: with ha, must be none or ha.snatAddress, not masquerade (the default when snat is absent): masquerade picks this node's own address, so a connection synced to another node would still send backends' replies to the dead node",
        ])
    }

    /// Wrong types anywhere in ha are one error each, never a crash.
    @Test func wrongTypes() {
        let base = validYAML + "\n"
        #expect(errors(base + "ha: 3") == ["ha: must be a mapping of fields, not \"3\""])
        #expect(errors(base + "ha: {interface: [eth0], snatAddress: {}, routerId: \"51\", advertInterval: null, sync: eth2, nodes: {a: b}}") == [
            "ha.interface: must be a string, not a list",
            "ha.snatAddress: must be a string, not a mapping",
            "ha.routerId: must be a number from 1 to 255, not the string \"51\"",
            "ha.advertInterval: must be a duration such as 500ms, 2s or 1m, not null",
            "ha.sync: must be a mapping of fields, not \"eth2\"",
            "ha.nodes: must be a list, not a mapping",
            "pools[0].snat: with ha, must be none or ha.snatAddress, not masquerade (the default when snat is absent): masquerade picks this node's own address, so a connection synced to another node would still send backends' replies to the dead node",
        ])
        #expect(errors(base + "ha: {interface: eth0, snatAddress: 10.0.0.9, routerId: 1, advertInterval: 1s, sync: {interface: eth1}, nodes: [3, [], {priority: 1.5}]}").contains(
            "ha.nodes[2].priority: must be a number from 1 to 254, not \"1.5\""))
    }
}
