import PoolSpec

/// Reading a table's slot maps and frontend verdicts back into health: Ruleset owns the names and the
/// layout, so the daemon and `status` read membership through here, never by set-name strings.
public enum SlotMembership {
    /// The sets adoption reads, declared as `RulesetBuilder` writes them for `spec`.
    public static func sets(for spec: Spec) -> [NamedSet] {
        let table = RulesetBuilder.table(for: spec)
        let wanted = Set(["frontends-v4", "frontends-v6"] + spec.pools.map(RulesetBuilder.slotMapName))
        return table.sets.filter { wanted.contains($0.name) }.map { var s = $0; s.elements = []; return s }
    }

    /// Slots held per backend endpoint in a slot map.
    public static func held(in set: NamedSet?) -> [String: Int] { held(slots: set?.elements ?? []) }

    /// Slots held per backend endpoint, from a slot map's elements.
    static func held(slots: [Element]) -> [String: Int] {
        var held: [String: Int] = [:]
        for element in slots {
            if case .values(let v)? = element.data, v.count == 2, case .address(let a) = v[0], case .port(let p) = v[1] {
                held[Backend.endpoint(a, p), default: 0] += 1
            }
        }
        return held
    }

    /// Slots held per backend of `pool` in `table` (0 for a pool whose frontends do not dispatch to it).
    public static func held(_ pool: Pool, in table: Table) -> [String: Int] {
        held(pool, in: table, verdicts: verdicts(of: table))
    }

    /// The same for every pool of `spec`, by pool name: the frontend verdicts are gathered once, not
    /// once per pool (status is written twice a second, and tables hold thousands of pools).
    public static func held(_ spec: Spec, in table: Table) -> [String: [String: Int]] {
        let v = verdicts(of: table)
        return Dictionary(uniqueKeysWithValues: spec.pools.map { ($0.name, held($0, in: table, verdicts: v)) })
    }

    static func held(_ pool: Pool, in table: Table, verdicts: [[Value]: ElementData?]) -> [String: Int] {
        guard dispatches(pool, verdicts: verdicts) else { return [:] }
        return held(in: table.set(named: RulesetBuilder.slotMapName(pool)))
    }

    /// The health a daemon starts from when it adopts a table an earlier run left (`elements` as read
    /// back by the sets of `sets(for:)`; nil: no table). A checked backend counts as up only if a slot of
    /// its pool sends to it and none of the pool's frontends in the kernel dispatches elsewhere: an
    /// all-down pool (frontends on reject or drop) has every backend in its slots, so the slots alone
    /// would wake dead backends. A slot map of another size (the pool gained a backend, or a weight
    /// changed) still says who was serving; frontends new to the spec say nothing. A pool without a slot
    /// map (new to the table) starts down. Backends without checks are always up.
    public static func adoptedDown(_ spec: Spec, elements: [String: [Element]]?) -> Set<BackendRef> {
        var down = Set<BackendRef>()
        let v = verdicts((elements?["frontends-v4"] ?? []) + (elements?["frontends-v6"] ?? []))
        for pool in spec.pools where pool.healthCheck != nil {
            let slots = elements?[RulesetBuilder.slotMapName(pool)]
            let serving = slots.map { dispatchesElsewhere(pool, verdicts: v) ? [:] : held(slots: $0) } ?? [:]
            for backend in pool.backends where serving[backend.endpoint] == nil {
                down.insert(BackendRef(pool, backend))
            }
        }
        return down
    }

    /// Frontend key ─► verdict, from the frontends maps' elements.
    static func verdicts(_ frontends: [Element]) -> [[Value]: ElementData?] {
        Dictionary(frontends.map { ($0.key, $0.data) }, uniquingKeysWith: { a, _ in a })
    }

    static func verdicts(of table: Table) -> [[Value]: ElementData?] {
        verdicts(table.sets.filter { $0.name.hasPrefix("frontends-") }.flatMap(\.elements))
    }

    static func key(_ fe: Frontend) -> [Value] { [.address(fe.address), .proto(fe.protocol), .port(fe.port)] }

    /// Every frontend of the pool is present and goes to the pool's chain.
    static func dispatches(_ pool: Pool, verdicts: [[Value]: ElementData?]) -> Bool {
        pool.frontends.allSatisfy { verdicts[key($0)] == .verdict(.goto(RulesetBuilder.chainName(pool))) }
    }

    /// Some frontend of the pool that is in the kernel goes elsewhere than the pool's chain (reject,
    /// drop, or a hand edit).
    static func dispatchesElsewhere(_ pool: Pool, verdicts: [[Value]: ElementData?]) -> Bool {
        pool.frontends.contains { fe in
            guard let v = verdicts[key(fe)] else { return false }
            return v != .verdict(.goto(RulesetBuilder.chainName(pool)))
        }
    }
}

/// The sets whose per-element counters count traffic towards each backend (after DNAT, in forward
/// and output), and how their keys name a backend.
public enum BackendCounterSets {
    /// The declarations (no elements); the same in every table nftpool writes.
    public static let sets: [NamedSet] = RulesetBuilder.table(for: Spec(table: "x", pools: [])).sets
        .filter { $0.name.hasPrefix("backends-") }

    /// address . protocol . port ─► the backend's endpoint text (protocols summed by the caller).
    public static func endpoint(of key: [Value]) -> String? {
        guard key.count == 3, case .address(let a) = key[0], case .port(let p) = key[2] else { return nil }
        return Backend.endpoint(a, p)
    }
}
