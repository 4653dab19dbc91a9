import Daemon
import Prometheus

/// One pool's series (label pool), in one shard of a ShardedRegistry; registered, set and unregistered
/// on the metrics queue only.
final class PoolSeries: Sendable {
    let byState: [(state: String, gauge: Gauge)]
    let slots: Gauge
    let newConnections: Counter
    let shard: ShardedRegistry<PoolFamily>.Shard

    /// serving: enabled and passing its checks (or unchecked); down: enabled and failing them.
    static let states = ["serving", "down", "drain", "disabled"]

    init(pool: String, shard: ShardedRegistry<PoolFamily>.Shard) {
        let labels = [("pool", pool)]
        self.shard = shard
        byState = Self.states.map { ($0, shard.makeGauge(.backends, labels: labels + [("state", $0)])) }
        slots = shard.makeGauge(.slots, labels: labels)
        newConnections = shard.makeCounter(.newConnections, labels: labels)
    }

    func set(_ pool: StatusFile.PoolStatus) {
        var counts: [String: Int] = [:]
        for b in pool.backends {
            let state = b.state != "enabled" ? b.state : (HealthVerdict.serving(b) ? "serving" : "down")
            counts[state, default: 0] += 1
        }
        for (state, gauge) in byState { gauge.set(to: Double(counts[state] ?? 0)) }
        slots.set(to: Double(pool.slots))
    }

    func unregister() {
        for (_, g) in byState { shard[.backends].unregisterGauge(g) }
        shard[.slots].unregisterGauge(slots)
        shard[.newConnections].unregisterCounter(newConnections)
    }
}

/// The per-pool families, in the order the scrape shows them.
enum PoolFamily: Int, ShardedFamily {
    case backends, slots, newConnections

    var descriptor: MetricNameDescriptor {
        switch self {
        case .backends: Families.poolBackends
        case .slots: Families.poolSlots
        case .newConnections: Families.poolNewConnections
        }
    }
}
