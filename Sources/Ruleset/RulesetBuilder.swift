import Dispatch
import PoolSpec

/// Spec + health ─► the one table nftpool wants in the kernel. Pure and deterministic: the same input gives
/// the same table, byte for byte, in every process and on every machine.
public enum RulesetBuilder {
    /// The table comment; it is also nftpool's ownership mark.
    public static let ownerComment = "managed by nftpool; changes made by hand are overwritten"
    public static let rejectChain = "all-down-reject"
    /// With `ha` only: drops packets of connections this node has no state for yet (takeover window).
    public static let haGuardChain = "ha-takeover-guard"
    static func floatingSetName(_ family: IPFamily) -> String { "floating-\(suffix(family))" }
    static func passiveSetName(_ family: IPFamily) -> String { "passive-\(suffix(family))" }

    /// The NFLOG group a table's passive-health rules log to: from its name, so that two daemons' tables
    /// in one namespace use two groups, and every node renders the same rule.
    public static func passiveLogGroup(table: String) -> UInt16 {
        UInt16(1000 + StableHash.hash64(table) % 60_000)
    }

    /// Auto-sized tables hold at least max(128, 8 × backends) slots, so that when a backend goes down its
    /// slots spread over the others finely enough (imbalance ~ backends/slots).
    static let minimumSlots = 128
    static let slotsPerBackend = 8
    /// Auto sizing stops growing the table here; beyond it shares are rounded to within one slot.
    static let autoSlotCap = 8192

    public static func table(for spec: Spec, health: Health = .allUp) -> Table {
        let (pools, slotMaps) = PoolLayout.all(spec, health: health)

        var sets: [NamedSet] = []
        for family in [IPFamily.ipv4, .ipv6] {
            let fam = pools.filter { $0.pool.family == family }
            let masq = Set(fam.filter { $0.pool.snat == .masquerade }.flatMap { $0.pool.frontends.map(\.address) })
            sets.append(
                NamedSet(
                    name: "masquerade-\(suffix(family))", key: .types([.address(family)]),
                    elements: masq.sorted().map { Element(key: [.address($0)]) }))
        }
        for family in [IPFamily.ipv4, .ipv6] {
            var snat: [IPAddress: IPAddress] = [:]
            for layout in pools where layout.pool.family == family {
                if case .address(let to) = layout.pool.snat {
                    for fe in layout.pool.frontends { snat[fe.address] = to }
                }
            }
            sets.append(
                NamedSet(
                    name: "snat-\(suffix(family))", key: .types([.address(family)]), data: .types([.address(family)]),
                    elements: snat.keys.sorted().map { Element(key: [.address($0)], data: .values([.address(snat[$0]!)])) }
                ))
        }
        for family in [IPFamily.ipv4, .ipv6] {
            var keys = Set<BackendKey>()
            for layout in pools where layout.pool.family == family {
                for be in layout.pool.backends {
                    for proto in layout.protocols { keys.insert(BackendKey(address: be.address, proto: proto, port: be.port)) }
                }
            }
            sets.append(
                NamedSet(
                    name: "backends-\(suffix(family))", key: .types([.address(family), .inetProto, .inetService]),
                    counter: true, elements: keys.sorted().map { Element(key: [.address($0.address), .proto($0.proto), .port($0.port)]) }))
        }
        for family in [IPFamily.ipv4, .ipv6] {
            let elements = pools.filter { $0.pool.family == family }.flatMap { layout in
                layout.pool.frontends.map {
                    Element(key: [.address($0.address), .proto($0.protocol), .port($0.port)], data: .verdict(layout.verdict))
                }
            }
            sets.append(
                NamedSet(
                    name: "frontends-\(suffix(family))", key: .types([.address(family), .inetProto, .inetService]),
                    data: .verdict, elements: elements.sorted { $0.key.lexicographicallyPrecedes($1.key) }))
        }
        if let ha = spec.ha {
            // Every address that moves with the VIPs: the frontends and the floating SNAT address.
            let floating = Set(spec.pools.flatMap { $0.frontends.map(\.address) } + [ha.snatAddress])
            for family in [IPFamily.ipv4, .ipv6] {
                sets.append(
                    NamedSet(
                        name: floatingSetName(family), key: .types([.address(family)]),
                        elements: floating.filter { $0.family == family }.sorted().map { Element(key: [.address($0)]) }))
            }
        }
        let passive = spec.pools.filter { $0.healthCheck?.passive != nil }
        if !passive.isEmpty {
            // The backends whose failures count, by the reply tuple's source (address . port).
            for family in [IPFamily.ipv4, .ipv6] {
                let keys = Set(passive.filter { $0.family == family }.flatMap { p in p.backends.map { [Value.address($0.address), .port($0.port)] } })
                sets.append(
                    NamedSet(
                        name: passiveSetName(family), key: .types([.address(family), .inetService]),
                        elements: keys.sorted { $0.lexicographicallyPrecedes($1) }.map { Element(key: $0) }))
            }
        }
        sets += slotMaps

        let dispatch = [Rule.dispatch(.ipv4, map: "frontends-v4"), .dispatch(.ipv6, map: "frontends-v6")]
        let count = [Rule.countBackends(.ipv4, set: "backends-v4"), .countBackends(.ipv6, set: "backends-v6")]
        var chains = [
            Chain(name: "nat-prerouting", base: BaseChain(kind: .nat, hook: .prerouting, priority: -100), rules: dispatch),
            Chain(name: "nat-output", base: BaseChain(kind: .nat, hook: .output, priority: -100), rules: dispatch),
            Chain(
                name: "nat-postrouting", base: BaseChain(kind: .nat, hook: .postrouting, priority: 100),
                rules: [
                    .masquerade(.ipv4, set: "masquerade-v4"), .masquerade(.ipv6, set: "masquerade-v6"),
                    .snat(.ipv4, map: "snat-v4"), .snat(.ipv6, map: "snat-v6"),
                ]),
            Chain(name: "filter-forward", base: BaseChain(kind: .filter, hook: .forward, priority: 0), rules: count),
            Chain(name: "filter-output", base: BaseChain(kind: .filter, hook: .output, priority: 0), rules: count),
            Chain(name: rejectChain, rules: [.rejectWithTCPReset, .reject]),
        ]
        let passivePools = spec.pools.filter { $0.healthCheck?.passive != nil }
        if !passivePools.isEmpty {
            let log = PassiveLog(group: passiveLogGroup(table: spec.table))
            let rules: [Rule] = [IPFamily.ipv4, .ipv6].flatMap { f in
                [Rule.passiveReset(f, set: passiveSetName(f), log: log), .passiveUnreachable(f, set: passiveSetName(f), log: log)]
            }
            // Forward: clients elsewhere. Input: clients on this host (their replies are un-NATed after
            // filter input, so the backend is still the source there, as in forward).
            chains[chains.firstIndex { $0.name == "filter-forward" }!].rules += rules
            chains.append(Chain(name: "filter-input", base: BaseChain(kind: .filter, hook: .input, priority: 0), rules: rules))
        }
        if spec.ha != nil {
            // After conntrack (-200), before dnat (-100): sees loose pickups before they are NATed.
            chains.append(
                Chain(
                    name: haGuardChain, base: BaseChain(kind: .filter, hook: .prerouting, priority: -150),
                    rules: [.dropUnsynced(.ipv4, set: floatingSetName(.ipv4)), .dropUnsynced(.ipv6, set: floatingSetName(.ipv6))]))
        }
        chains += pools.map(\.chain)
        return Table(name: spec.table, comment: ownerComment, sets: sets, chains: chains)
    }

    /// `table(for: spec, health:)` computed from `previous` (the table of the same spec under other health)
    /// by rebuilding only one pool's slot map and its frontends' verdicts: a health flip costs one pool's
    /// work, not the whole table's.
    public static func updating(_ previous: Table, spec: Spec, pool name: String, health: Health) -> Table {
        guard let pool = spec.pools.first(where: { $0.name == name }) else { return previous }
        var table = previous
        update(&table, spec: spec, pool: pool, health: health)
        return table
    }

    /// `updating`, in place. At 10,000 pools a flip must not touch what it does not change: the frontends
    /// map (one element per frontend of every pool) is searched, not scanned, and written only where a
    /// verdict changes, so it keeps sharing storage with the table last applied, and the plan compares
    /// it by identity rather than element by element.
    public static func update(_ table: inout Table, spec: Spec, pool: Pool, health: Health) {
        let layout = PoolLayout(pool, table: spec.table, health: health)
        let verdict = ElementData.verdict(layout.verdict)
        let keys = pool.frontends.map { [Value.address($0.address), .proto($0.protocol), .port($0.port)] }
        let slotMap = slotMapName(pool), frontends = "frontends-\(suffix(pool.family))"
        var left = 2
        for i in table.sets.indices where left > 0 {
            if table.sets[i].name == slotMap {
                table.sets[i] = layout.slotMap
                left -= 1
            } else if table.sets[i].name == frontends {
                for key in keys {
                    guard let j = index(of: key, in: table.sets[i].elements), table.sets[i].elements[j].data != verdict else { continue }
                    table.sets[i].elements[j].data = verdict
                }
                left -= 1
            }
        }
    }

    /// Where `key` is among `elements`, sorted by key as `table(for:health:)` makes them (a binary
    /// search), or by a scan if they are not.
    static func index(of key: [Value], in elements: [Element]) -> Int? {
        var low = 0, high = elements.count
        while low < high {
            let mid = (low + high) / 2
            if elements[mid].key.lexicographicallyPrecedes(key) { low = mid + 1 } else { high = mid }
        }
        if low < elements.count, elements[low].key == key { return low }
        return elements.firstIndex { $0.key == key }
    }

    public static func chainName(_ pool: Pool) -> String { "pool-\(pool.name)" }
    public static func slotMapName(_ pool: Pool) -> String { "pool-\(pool.name)-slots" }

    /// The size of a pool's slot map. It depends on the spec only, never on health, so the dnat rule
    /// (`... mod N map @slots`) never changes when backends come and go.
    public static func slotCount(for pool: Pool) -> Int {
        if case .fixed(let n) = pool.slots { return n }
        let weights = pool.backends.map(\.weight)
        let divisor = weights.reduce(0) { gcd($0, $1) }
        let exact = weights.reduce(0, +) / divisor  // smallest table with exact weighted shares
        let wanted = min(max(minimumSlots, slotsPerBackend * pool.backends.count), autoSlotCap)
        switch pool.scheduler {
        case .sourceHash:
            return Primes.next(atLeast: max(wanted, min(exact, autoSlotCap), pool.backends.count))
        case .roundRobin, .random:
            guard exact <= autoSlotCap else { return max(autoSlotCap, pool.backends.count) }
            return exact * ((wanted + exact - 1) / exact)
        }
    }

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    static func suffix(_ family: IPFamily) -> String { family == .ipv4 ? "v4" : "v6" }
}

/// A backends-set key as a struct: sorting 10,000 of them as `[Value]` arrays was a tenth of a
/// no-change apply. Its order is the arrays' (address, then protocol, then port).
struct BackendKey: Hashable, Comparable {
    let address: IPAddress
    let proto: L4Protocol
    let port: UInt16

    static func < (a: BackendKey, b: BackendKey) -> Bool {
        if a.address != b.address { return a.address < b.address }
        if a.proto != b.proto { return a.proto < b.proto }
        return a.port < b.port
    }
}

/// One pool's share of the table: its slot map, its chain and the verdict its frontends dispatch to.
struct PoolLayout {
    let pool: Pool
    let protocols: [L4Protocol]
    let slots: [Int]
    let verdict: Verdict
    let seed: UInt32

    init(_ pool: Pool, table: String, health: Health) {
        self.pool = pool
        protocols = Set(pool.frontends.map(\.protocol)).sorted()
        seed = StableHash.hash32("\(table)/\(pool.name)")
        let members = pool.backends.map { SlotTable.Member(key: $0.endpoint, weight: $0.weight) }
        let eligible = pool.backends.map { health.isEligible($0, in: pool) }
        let anyEligible = eligible.contains(true)
        let share = health.ramp.isEmpty ? nil : pool.backends.map { health.ramp[BackendRef(pool, $0)] ?? 1 }
        slots = SlotTable.build(
            members: members, eligible: anyEligible ? eligible : members.map { _ in true },
            size: RulesetBuilder.slotCount(for: pool), kind: pool.scheduler == .sourceHash ? .maglev : .spread,
            share: anyEligible ? share : nil)
        switch (anyEligible, pool.whenAllDown) {
        case (true, _), (false, .failOpen): verdict = .goto(RulesetBuilder.chainName(pool))
        case (false, .reject): verdict = .goto(RulesetBuilder.rejectChain)
        case (false, .drop): verdict = .drop
        }
    }

    var slotMap: NamedSet {
        NamedSet(
            name: RulesetBuilder.slotMapName(pool), key: .slotIndex(modulus: slots.count),
            data: .endpoint(pool.family, PortHeader.of(protocols)), size: slots.count,
            elements: slots.enumerated().map { index, owner in
                let be = pool.backends[owner]
                return Element(key: [.index(index)], data: .values([.address(be.address), .port(be.port)]))
            })
    }

    var chain: Chain {
        let selector: SlotSelector
        switch pool.scheduler {
        case .roundRobin: selector = .numgenInc
        case .random: selector = .numgenRandom
        case .sourceHash: selector = .jhash(pool.hash, seed: seed)
        }
        let rules = protocols.map { proto in
            Rule.dnat(
                SlotDNAT(
                    family: pool.family, proto: proto, selector: selector, modulus: slots.count,
                    map: RulesetBuilder.slotMapName(pool), comment: "pool \(pool.name)"))
        }
        return Chain(name: RulesetBuilder.chainName(pool), rules: rules)
    }
}

extension PoolLayout {
    /// Every pool's layout and slot map, in spec order, built on two threads (pools dealt alternately):
    /// the slot tables are most of building a table of many pools, and each pool's is its own.
    static func all(_ spec: Spec, health: Health) -> (layouts: [PoolLayout], slotMaps: [NamedSet]) {
        let pools = spec.pools, table = spec.table
        guard pools.count >= 16 else {
            let layouts = pools.map { PoolLayout($0, table: table, health: health) }
            return (layouts, layouts.map(\.slotMap))
        }
        let threads = 2
        var parts: [[(PoolLayout, NamedSet)]] = Array(repeating: [], count: threads)
        parts.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let out = buffer  // each thread writes its own index only
            DispatchQueue.concurrentPerform(iterations: threads) { part in
                out[part] = stride(from: part, to: pools.count, by: threads).map { i in
                    let layout = PoolLayout(pools[i], table: table, health: health)
                    return (layout, layout.slotMap)
                }
            }
        }
        var layouts: [PoolLayout] = [], slotMaps: [NamedSet] = []
        layouts.reserveCapacity(pools.count)
        slotMaps.reserveCapacity(pools.count)
        for i in pools.indices {
            let (layout, map) = parts[i % threads][i / threads]
            layouts.append(layout)
            slotMaps.append(map)
        }
        return (layouts, slotMaps)
    }
}
