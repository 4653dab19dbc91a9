import Testing

@testable import PoolSpec
@testable import Ruleset

func spec(_ pools: [Pool]) -> Spec { Spec(table: "lb", pools: pools) }

func endpoints(_ table: Table, _ pool: Pool) -> [String] {
    table.set(named: RulesetBuilder.slotMapName(pool))!.elements.map {
        guard case .values(let v)? = $0.data, case .address(let a) = v[0], case .port(let p) = v[1] else { return "?" }
        return "\(a):\(p)"
    }
}

func frontendVerdict(_ table: Table, _ pool: Pool) -> Verdict? {
    guard case .verdict(let v)? = table.set(named: "frontends-v4")!.elements.first?.data else { return nil }
    return v
}

@Suite struct RulesetBuilderTests {
    let three = pool([1, 1, 1], scheduler: .roundRobin)

    @Test func allUpUsesEveryEnabledBackend() {
        let table = RulesetBuilder.table(for: spec([three]))
        #expect(Set(endpoints(table, three)) == Set(three.backends.map(\.endpoint)))
        #expect(frontendVerdict(table, three) == .goto("pool-p"))
    }

    @Test func drainDisabledAndDownBackendsGetNoSlots() {
        var p = three
        p.backends[0].state = .drain
        p.backends[1].state = .disabled
        let table = RulesetBuilder.table(for: spec([p]))
        #expect(Set(endpoints(table, p)) == [p.backends[2].endpoint])
        let down = Health(down: [BackendRef(three, three.backends[2])])
        #expect(Set(endpoints(RulesetBuilder.table(for: spec([three]), health: down), three)) == Set(three.backends[0...1].map(\.endpoint)))
    }

    @Test func whenAllDownDecidesTheFrontendVerdict() {
        let allDown = Health(down: Set(three.backends.map { BackendRef(three, $0) }))
        var p = three
        p.whenAllDown = .reject
        #expect(frontendVerdict(RulesetBuilder.table(for: spec([p]), health: allDown), p) == .goto("all-down-reject"))
        p.whenAllDown = .drop
        #expect(frontendVerdict(RulesetBuilder.table(for: spec([p]), health: allDown), p) == .drop)
        p.whenAllDown = .failOpen
        let open = RulesetBuilder.table(for: spec([p]), health: allDown)
        #expect(frontendVerdict(open, p) == .goto("pool-p"))
        #expect(Set(endpoints(open, p)) == Set(p.backends.map(\.endpoint)))
        // fail-open also covers a pool whose every backend is disabled by the spec
        for i in p.backends.indices { p.backends[i].state = .disabled }
        #expect(frontendVerdict(RulesetBuilder.table(for: spec([p])), p) == .goto("pool-p"))
    }

    @Test func slotMapIsAlwaysFullyPopulatedAndRuleNeverChangesWithHealth() {
        let allDown = Health(down: Set(three.backends.map { BackendRef(three, $0) }))
        let up = RulesetBuilder.table(for: spec([three]))
        for health in [Health.allUp, Health(down: [BackendRef(three, three.backends[0])]), allDown] {
            let t = RulesetBuilder.table(for: spec([three]), health: health)
            #expect(t.set(named: "pool-p-slots")!.elements.count == RulesetBuilder.slotCount(for: three))
            #expect(t.chains == up.chains, "health changes elements only, never rules")
        }
    }

    @Test func snatAndCounterSets() throws {
        var masq = pool([1, 1], scheduler: .roundRobin)
        masq.frontends.append(Frontend(address: masq.frontends[0].address, port: 53, protocol: .udp))
        masq.backends = masq.backends.map { var b = $0; b.port = 8053; return b }
        var fixed = pool([1], scheduler: .sourceHash)
        fixed.name = "q"
        fixed.frontends = [Frontend(address: IPAddress("10.0.0.2")!, port: 80)]
        fixed.snat = .address(IPAddress("10.9.9.9")!)
        let table = RulesetBuilder.table(for: spec([masq, fixed]))
        #expect(table.set(named: "masquerade-v4")!.elements == [Element(key: [.address(IPAddress("10.0.0.1")!)])])
        #expect(table.set(named: "snat-v4")!.elements == [
            Element(key: [.address(IPAddress("10.0.0.2")!)], data: .values([.address(IPAddress("10.9.9.9")!)]))
        ])
        // One counter per backend and protocol, so status can show each backend's traffic.
        #expect(table.set(named: "backends-v4")!.elements.count == 2 * 2 + 1)
        #expect(table.set(named: "pool-p-slots")!.data == .endpoint(.ipv4, .th))
        #expect(table.set(named: "pool-q-slots")!.data == .endpoint(.ipv4, .tcp))
        let rule = try #require(table.chain(named: "pool-q")?.rules.first)
        #expect(NftRenderer.render(rule).hasPrefix("meta l4proto tcp counter dnat ip to jhash ip saddr mod 131 seed 0x"))
    }

    @Test func objectNamesAreUnique() {
        var a = three, b = pool([1, 1], scheduler: .random)
        a.name = "a"
        b.name = "a-slots"
        b.frontends = [Frontend(address: IPAddress("10.0.0.9")!, port: 80)]
        let table = RulesetBuilder.table(for: spec([a, b]))
        #expect(Set(table.sets.map(\.name)).count == table.sets.count)
        #expect(Set(table.chains.map(\.name)).count == table.chains.count)
    }
}

/// Pools' slot tables are built on two threads from 16 pools up: the same table as one by one.
struct ParallelLayoutTests {
    @Test func twoThreadsBuildWhatOneBuilds() {
        let pools = (0..<37).map { p in
            Pool(
                name: "p\(p)", frontends: [Frontend(address: IPAddress("10.0.\(p).1")!, port: 443)],
                scheduler: p % 2 == 0 ? .roundRobin : .sourceHash,
                backends: (0..<(p % 5 + 2)).map { Backend(address: IPAddress("172.16.\(p).\($0 + 1)")!, port: 80, weight: $0 + 1) })
        }
        let s = spec(pools)
        let (layouts, maps) = PoolLayout.all(s, health: .allUp)
        let one = pools.map { PoolLayout($0, table: s.table, health: .allUp) }
        #expect(layouts.map(\.pool) == pools)
        #expect(layouts.map(\.slots) == one.map(\.slots))
        #expect(maps == one.map(\.slotMap))
        #expect(RulesetBuilder.table(for: s).sets.suffix(pools.count) == one.map(\.slotMap)[...])
    }
}
