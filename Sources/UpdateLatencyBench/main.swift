// The update-latency benchmark (benchmarks/update-latency.sh runs it, release build, as root):
// with POOLS x BACKENDS loaded into a scratch namespace, the time from a health decision to the kernel's
// ACK of the rewrite, over FLIPS random flips, and the messages each flip sent.
import Foundation
import Kernel
import PoolSpec
import Ruleset

let args = CommandLine.arguments
guard args.count == 5, let pools = Int(args[2]), let per = Int(args[3]), let flips = Int(args[4]) else {
    FileHandle.standardError.write(Data("usage: UpdateLatencyBench NETNS POOLS BACKENDS FLIPS\n".utf8))
    exit(2)
}
let spec = Spec(table: "latency", pools: (0..<pools).map { p in
    Pool(
        name: "p\(p)", frontends: [Frontend(address: IPAddress("10.\(p / 250).\(p % 250).1")!, port: 443)],
        backends: (0..<per).map { b in
            Backend(address: IPAddress("172.\(16 + b / 250).\(p % 250).\(b % 250 + 1)")!, port: UInt16(8000 + p / 250))
        })
})
do {
    let kernel = try NetfilterKernel(netns: args[1])
    var health = Health()
    let clock = ContinuousClock()
    let loadStart = clock.now
    var table = RulesetBuilder.table(for: spec, health: health)
    try kernel.apply(table)
    let load = loadStart.duration(to: clock.now)
    var times: [Double] = [], builds: [Double] = [], messages: [Int] = []
    func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
    for _ in 0..<flips {
        let pool = spec.pools.randomElement()!
        let ref = BackendRef(pool, pool.backends.randomElement()!)
        let start = clock.now
        if health.down.contains(ref) { health.down.remove(ref) } else { health.down.insert(ref) }
        // As the daemon: the wanted table updated in place, planned against the one last applied.
        let applied = table
        RulesetBuilder.update(&table, spec: spec, pool: pool, health: health)
        let built = clock.now
        let report = try kernel.apply(table, after: applied)
        let took = start.duration(to: clock.now)
        times.append(ms(took))
        builds.append(ms(start.duration(to: built)))
        messages.append(report.messages)
    }
    let drift = try kernel.diff(RulesetBuilder.table(for: spec, health: health))
    times.sort()
    builds.sort()
    func pct(_ p: Int, _ xs: [Double] = times) -> String { String(format: "%.2f", xs[min(xs.count - 1, xs.count * p / 100)]) }
    print("| \(pools) x \(per) | \(flips) | \(pct(50)) | \(pct(99)) | \(String(format: "%.2f", times.last!)) | \(pct(50, builds)) | \(Set(messages).sorted().map(String.init).joined(separator: ", ")) | \(drift.isEmpty ? "none" : "\(drift.count) lines") | \(String(format: "%.2f", ms(load) / 1000)) |")
} catch {
    FileHandle.standardError.write(Data("\(error)\n".utf8))
    exit(1)
}
