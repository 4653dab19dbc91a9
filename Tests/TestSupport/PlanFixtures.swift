import PoolSpec

/// Specs of a given size for plan and latency tests: `pools` pools of `backends` backends each, one
/// frontend per pool, every address distinct.
public enum PlanFixtures {
    public static func spec(pools: Int, backends: Int) -> Spec {
        Spec(table: "big", pools: (0..<pools).map { p in
            Pool(
                name: "p\(p)", frontends: [Frontend(address: IPAddress("10.\(p / 250).\(p % 250).1")!, port: 443)],
                backends: (0..<backends).map { b in
                    Backend(address: IPAddress("172.16.\(p % 250).\(b + 1)")!, port: UInt16(8000 + p / 250))
                })
        })
    }
}
