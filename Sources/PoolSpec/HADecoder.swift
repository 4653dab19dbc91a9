/// Decoding of the `ha` section (docs/DESIGN.md, "High availability"): every field read, every rule
/// checked, each error on its own path, all of them reported together with the rest of the spec's.
extension SpecDecoder {
    static let haFields = [
        "interface", "backendInterface", "snatAddress", "routerId", "advertInterval", "sync", "nodes",
        "yieldWhenAllDown",
    ]

    /// `pools`: what decoded of them, for the rules between `ha` and the pools (which still report when
    /// some of `ha` did not decode).
    static func readHA(_ node: SpecNode, _ path: String, pools: [Pool?], _ r: inout FieldReader) -> HA? {
        let before = r.errors.count
        guard let f = r.mapping(node, path, allowed: haFields) else { return nil }
        func p(_ key: String) -> String { FieldReader.join(path, key) }

        let interface = r.required(f, "interface", path) { HARules.interfaceName(&$0, $1, $2) }
        let backendInterface = f["backendInterface"].map { HARules.interfaceName(&r, $0, p("backendInterface")) }
        let snatAddress = r.required(f, "snatAddress", path) { $0.address($1, $2) }
        let routerId = r.required(f, "routerId", path) { $0.integer($1, $2, in: 1...255) }
        let advertInterval = r.required(f, "advertInterval", path) { HARules.advertInterval(&$0, $1, $2) }
        var sync: HASync?
        if let n = f["sync"] {
            if let sf = r.mapping(n, p("sync"), allowed: ["interface"]) {
                sync = r.required(sf, "interface", p("sync")) { HARules.interfaceName(&$0, $1, $2) }
                    .map { HASync(interface: $0) }
            }
        } else {
            r.fail(p("sync"), "required: {interface: NAME}, the link conntrackd replicates connections over")
        }
        var nodes: [HANode?] = []
        if let n = f["nodes"] {
            if let items = r.sequence(n, p("nodes")) {
                if items.count < 2 {
                    r.fail(p("nodes"), "\(items.count) node\(items.count == 1 ? "" : "s"); ha needs at least 2")
                }
                nodes = items.enumerated().map { readHANode($1, p("nodes[\($0)]"), &r) }
                HARules.checkNodes(nodes, p("nodes"), &r)
            }
        } else {
            r.fail(p("nodes"), "required: a list of 2 or more nodes")
        }
        let yieldWhenAllDown = f["yieldWhenAllDown"].map { r.bool($0, p("yieldWhenAllDown")) } ?? false

        guard r.errors.count == before, let interface, let snatAddress, let routerId, let advertInterval,
            let sync, let yieldWhenAllDown, nodes.allSatisfy({ $0 != nil })
        else {
            // Rules across fields still report on what decoded.
            if let snatAddress { HARules.checkSNATAddress(snatAddress, nodes, path, &r) }
            HARules.checkAgainstPools(snatAddress: snatAddress, nodes: nodes, pools, &r)
            return nil
        }
        let ha = HA(
            interface: interface, backendInterface: (backendInterface ?? nil) ?? interface,
            snatAddress: snatAddress, routerId: routerId, advertInterval: advertInterval, sync: sync,
            nodes: nodes.map { $0! }, yieldWhenAllDown: yieldWhenAllDown)
        HARules.checkSNATAddress(snatAddress, nodes, path, &r)
        HARules.checkAgainstPools(snatAddress: snatAddress, nodes: nodes, pools, &r)
        return r.errors.count == before ? ha : nil
    }

    private static func readHANode(_ node: SpecNode, _ path: String, _ r: inout FieldReader) -> HANode? {
        let before = r.errors.count
        guard let f = r.mapping(node, path, allowed: ["name", "address", "syncAddress", "priority"]) else {
            return nil
        }
        let name = r.required(f, "name", path) { r, n, p in
            r.string(n, p).flatMap { SpecRules.checkPoolName($0, p, &r) }
        }
        let address = r.required(f, "address", path) { $0.address($1, $2) }
        let syncAddress = r.required(f, "syncAddress", path) { $0.address($1, $2) }
        let priority = r.required(f, "priority", path) { $0.integer($1, $2, in: 1...254) }
        guard r.errors.count == before, let name, let address, let syncAddress, let priority else { return nil }
        return HANode(name: name, address: address, syncAddress: syncAddress, priority: priority)
    }
}

/// The `ha` rules that span fields, and those between `ha` and the pools.
enum HARules {
    /// Linux's dev_valid_name: 1..15 bytes (IFNAMSIZ 16 with its NUL), not "." or "..", no '/', ':' or
    /// whitespace. keepalived.conf and conntrackd.conf hold the name as one bare word, so their comment
    /// characters ('#', '!'), quotes, braces and anything outside printable ASCII are refused too.
    static func interfaceName(_ r: inout FieldReader, _ node: SpecNode, _ path: String) -> String? {
        guard let name = r.string(node, path) else { return nil }
        guard !name.isEmpty, name.utf8.count <= 15 else {
            r.fail(path, "\(FieldReader.show(name)) is not an interface name: Linux names are 1 to 15 characters")
            return nil
        }
        guard name != ".", name != ".." else {
            r.fail(path, "\(FieldReader.show(name)) is not an interface name")
            return nil
        }
        let refused = Set("/:#!\"'{}\\;")
        if let bad = name.unicodeScalars.first(where: { $0.value <= 0x20 || $0.value >= 0x7F || refused.contains(Character($0)) }) {
            let what = bad.value <= 0x20 || bad.value >= 0x7F ? "whitespace, control or non-ASCII characters" : "'\(Character(bad))'"
            r.fail(path, "\(FieldReader.show(name)) is not an interface name: it holds \(what)")
            return nil
        }
        return name
    }

    /// VRRPv3 carries the interval in centiseconds (12 bits): 10ms..40s in whole centiseconds here.
    static func advertInterval(_ r: inout FieldReader, _ node: SpecNode, _ path: String) -> Duration? {
        guard let d = r.duration(node, path) else { return nil }
        let ms = d.milliseconds
        guard (10...40_000).contains(ms) else {
            r.fail(path, "\(DurationText.format(d)) is out of range (10ms-40s)")
            return nil
        }
        guard ms % 10 == 0 else {
            r.fail(path, "\(DurationText.format(d)) is not a whole number of centiseconds (VRRPv3 counts in 10ms)")
            return nil
        }
        return d
    }

    /// Names, priorities, addresses and sync addresses distinct; each address field of one family.
    static func checkNodes(_ nodes: [HANode?], _ path: String, _ r: inout FieldReader) {
        var names: [String: Int] = [:]
        var priorities: [Int: Int] = [:]
        var addresses: [IPAddress: Int] = [:]
        var syncAddresses: [IPAddress: Int] = [:]
        let family = nodes.lazy.compactMap { $0?.address.family }.first
        let syncFamily = nodes.lazy.compactMap { $0?.syncAddress.family }.first
        let firstIndex = nodes.firstIndex { $0 != nil } ?? 0
        for (i, node) in nodes.enumerated() {
            guard let node else { continue }
            let p = "\(path)[\(i)]"
            if let j = names[node.name] {
                r.fail("\(p).name", "\"\(node.name)\" is already the name of nodes[\(j)]")
            } else {
                names[node.name] = i
            }
            if let j = priorities[node.priority] {
                r.fail("\(p).priority", "\(node.priority) is also the priority of nodes[\(j)]; priorities must differ so that every node elects the same master")
            } else {
                priorities[node.priority] = i
            }
            if let family, node.address.family != family {
                r.fail("\(p).address", "\(node.address) is \(node.address.family.rawValue) but nodes[\(firstIndex)].address is \(family.rawValue); VRRP peers speak one family")
            } else if let j = addresses[node.address] {
                r.fail("\(p).address", "\(node.address) is already the address of nodes[\(j)]")
            } else {
                addresses[node.address] = i
            }
            if let syncFamily, node.syncAddress.family != syncFamily {
                r.fail("\(p).syncAddress", "\(node.syncAddress) is \(node.syncAddress.family.rawValue) but nodes[\(firstIndex)].syncAddress is \(syncFamily.rawValue); conntrackd's peers speak one family")
            } else if let j = syncAddresses[node.syncAddress] {
                r.fail("\(p).syncAddress", "\(node.syncAddress) is already the sync address of nodes[\(j)]")
            } else {
                syncAddresses[node.syncAddress] = i
            }
        }
    }

    /// The floating SNAT address is not any node's own address (keepalived would delete it from the
    /// node that is not master).
    static func checkSNATAddress(_ snat: IPAddress, _ nodes: [HANode?], _ path: String, _ r: inout FieldReader) {
        for (i, node) in nodes.enumerated() {
            guard let node else { continue }
            if node.address == snat || node.syncAddress == snat {
                let field = node.address == snat ? "address" : "syncAddress"
                r.fail("\(path).snatAddress", "\(snat) is also nodes[\(i)].\(field); the floating address must be no node's own address")
            }
        }
    }

    /// With ha, connections move between nodes: every pool's source NAT must move with them, and no
    /// frontend may be a node's own address.
    static func checkAgainstPools(snatAddress snat: IPAddress?, nodes: [HANode?], _ pools: [Pool?], _ r: inout FieldReader) {
        let own = Dictionary(
            nodes.enumerated().flatMap { i, n in
                n.map { [($0.address, "ha.nodes[\(i)].address"), ($0.syncAddress, "ha.nodes[\(i)].syncAddress")] } ?? []
            },
            uniquingKeysWith: { a, _ in a })
        for (i, pool) in pools.enumerated() {
            guard let pool else { continue }
            let path = "pools[\(i)].snat"
            let floating: String
            switch snat {
            case nil: floating = "none or ha.snatAddress"
            case let snat? where snat.family == pool.family: floating = "none or ha.snatAddress (\(snat))"
            case let snat?: floating = "none (ha.snatAddress \(snat) is \(snat.family.rawValue), this pool \(pool.family.rawValue))"
            }
            switch pool.snat {
            case .none:
                break
            case .address(let a) where a == snat || snat == nil:  // no snatAddress: its own error says so
                break
            case .masquerade:
                r.fail(path, "with ha, must be \(floating), not masquerade (the default when snat is absent): masquerade picks this node's own address, so a connection synced to another node would still send backends' replies to the dead node")
            case .address(let a):
                r.fail(path, "with ha, must be \(floating), not \(a): only ha.snatAddress moves with the VIPs, so a connection synced to another node would still send backends' replies to the dead node's address")
            }
            for (k, fe) in pool.frontends.enumerated() {
                if let field = own[fe.address] {
                    r.fail("pools[\(i)].frontends[\(k)].address", "\(fe.address) is \(field); a frontend moves between nodes and cannot be a node's own address")
                } else if fe.address == snat {
                    r.fail("pools[\(i)].frontends[\(k)].address", "\(fe.address) is ha.snatAddress; the frontends and the SNAT address must differ")
                }
            }
        }
    }
}
