import Daemon
import NIOConcurrencyHelpers
import Probes
import Prometheus

/// One backend's series (labels pool, backend). Registered and unregistered on the metrics queue only:
/// registering costs the registry a copy of the family, which must not land on a probe's event loop.
/// Probe results are recorded from the event loops; an outcome seen for the first time waits in
/// `pending` until the next scrape registers its counter.
final class BackendSeries: Sendable {
    let labels: [(String, String)]
    let up: Gauge
    let admin: [(state: String, gauge: Gauge)]
    let weight: Gauge
    let slots: Gauge
    let timeInState: Gauge
    let transitions: [(to: HealthTracker.State, counter: Counter)]
    let checkDuration: DurationHistogram
    let forwardedPackets: Counter
    let forwardedBytes: Counter
    private let checks = NIOLockedValueBox<(counters: [ProbeResult.Outcome: Counter], pending: [ProbeResult.Outcome: Int64])>(([:], [:]))

    static let adminStates = ["enabled", "drain", "disabled"]

    init(pool: String, endpoint: String, registry: PrometheusCollectorRegistry) {
        let labels = [("pool", pool), ("backend", endpoint)]
        self.labels = labels
        up = registry.makeGauge(descriptor: Families.backendUp, labels: labels)
        admin = Self.adminStates.map { ($0, registry.makeGauge(descriptor: Families.backendAdminState, labels: labels + [("state", $0)])) }
        weight = registry.makeGauge(descriptor: Families.backendWeight, labels: labels)
        slots = registry.makeGauge(descriptor: Families.backendSlots, labels: labels)
        timeInState = registry.makeGauge(descriptor: Families.backendTimeInState, labels: labels)
        transitions = [HealthTracker.State.up, .down].map { ($0, registry.makeCounter(descriptor: Families.backendTransitions, labels: labels + [("to", $0.rawValue)])) }
        checkDuration = registry.makeDurationHistogram(descriptor: Families.backendCheckDuration, labels: labels, buckets: Families.checkBuckets)
        forwardedPackets = registry.makeCounter(descriptor: Families.backendForwardedPackets, labels: labels)
        forwardedBytes = registry.makeCounter(descriptor: Families.backendForwardedBytes, labels: labels)
    }

    /// From a probe's event loop: a lock and an atomic, nothing more.
    func record(_ result: ProbeResult, took: Duration) {
        checkDuration.record(took)
        let counter = checks.withLockedValue { c -> Counter? in
            if let counter = c.counters[result.outcome] { return counter }
            c.pending[result.outcome, default: 0] += 1
            return nil
        }
        counter?.increment()
    }

    func record(_ transition: HealthTracker.Transition) {
        transitions.first { $0.to == transition.to }?.counter.increment()
    }

    /// On the metrics queue: registers the counters of outcomes first seen since the last call.
    func registerPending(in registry: PrometheusCollectorRegistry) {
        let pending = checks.withLockedValue { c in
            let p = c.pending
            c.pending = [:]
            return p
        }
        for (outcome, count) in pending {
            let counter = registry.makeCounter(descriptor: Families.backendChecks, labels: labels + [("outcome", outcome.rawValue)])
            counter.increment(by: count)
            checks.withLockedValue { $0.counters[outcome] = counter }
        }
    }

    func set(_ b: StatusFile.BackendStatus) {
        up.set(to: b.health == "down" ? 0 : 1)
        for (state, gauge) in admin { gauge.set(to: state == b.state ? 1 : 0) }
        weight.set(to: Double(b.weight))
        slots.set(to: Double(b.slots))
    }

    func unregister(from registry: PrometheusCollectorRegistry) {
        for g in [up, weight, slots, timeInState] + admin.map(\.gauge) { registry.unregisterGauge(g) }
        for c in [forwardedPackets, forwardedBytes] + transitions.map(\.counter) { registry.unregisterCounter(c) }
        for c in checks.withLockedValue({ Array($0.counters.values) }) { registry.unregisterCounter(c) }
        registry.unregisterDurationHistogram(checkDuration)
    }
}
