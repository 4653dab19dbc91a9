import Daemon
import Prometheus

/// One pool's series (label pool); registered, set and unregistered on the metrics queue only.
final class PoolSeries: Sendable {
    let byState: [(state: String, gauge: Gauge)]
    let slots: Gauge
    let newConnections: Counter

    /// serving: enabled and passing its checks (or unchecked); down: enabled and failing them.
    static let states = ["serving", "down", "drain", "disabled"]

    init(pool: String, registry: PrometheusCollectorRegistry) {
        let labels = [("pool", pool)]
        byState = Self.states.map { ($0, registry.makeGauge(descriptor: Families.poolBackends, labels: labels + [("state", $0)])) }
        slots = registry.makeGauge(descriptor: Families.poolSlots, labels: labels)
        newConnections = registry.makeCounter(descriptor: Families.poolNewConnections, labels: labels)
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

    func unregister(from registry: PrometheusCollectorRegistry) {
        for g in byState.map(\.gauge) + [slots] { registry.unregisterGauge(g) }
        registry.unregisterCounter(newConnections)
    }
}
