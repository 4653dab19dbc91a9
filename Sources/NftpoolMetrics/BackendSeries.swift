import Daemon
import NIOConcurrencyHelpers
import Probes
import Prometheus

/// One backend's series (labels pool, backend), in one shard of a ShardedRegistry. Registered and
/// unregistered on the metrics queue only: registering costs the registry a copy of the shard's family,
/// which must not land on a probe's event loop.
/// Probe results are recorded from the event loops; an outcome seen for the first time waits in
/// `pending` until the metrics queue next syncs the series (a scrape, or the registration that follows
/// the daemon's first status and each reload) and registers its counter.
final class BackendSeries: Sendable {
    let labels: [(String, String)]
    /// Where its series live.
    let shard: ShardedRegistry<BackendFamily>.Shard
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

    /// Registers the series in `shard` (from `ShardedRegistry.place`).
    init(pool: String, endpoint: String, shard: ShardedRegistry<BackendFamily>.Shard) {
        let labels = [("pool", pool), ("backend", endpoint)]
        self.labels = labels
        self.shard = shard
        up = shard.makeGauge(.up, labels: labels)
        admin = Self.adminStates.map { ($0, shard.makeGauge(.adminState, labels: labels + [("state", $0)])) }
        weight = shard.makeGauge(.weight, labels: labels)
        slots = shard.makeGauge(.slots, labels: labels)
        timeInState = shard.makeGauge(.timeInState, labels: labels)
        transitions = [HealthTracker.State.up, .down].map { ($0, shard.makeCounter(.transitions, labels: labels + [("to", $0.rawValue)])) }
        checkDuration = shard.makeDurationHistogram(.checkDuration, labels: labels, buckets: Families.checkBuckets)
        forwardedPackets = shard.makeCounter(.forwardedPackets, labels: labels)
        forwardedBytes = shard.makeCounter(.forwardedBytes, labels: labels)
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
    func registerPending() {
        let pending = checks.withLockedValue { c in
            let p = c.pending
            c.pending = [:]
            return p
        }
        for (outcome, count) in pending {
            let counter = shard.makeCounter(.checks, labels: labels + [("outcome", outcome.rawValue)])
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

    func unregister() {
        shard[.up].unregisterGauge(up)
        for (_, g) in admin { shard[.adminState].unregisterGauge(g) }
        shard[.weight].unregisterGauge(weight)
        shard[.slots].unregisterGauge(slots)
        shard[.timeInState].unregisterGauge(timeInState)
        for (_, c) in transitions { shard[.transitions].unregisterCounter(c) }
        for c in checks.withLockedValue({ Array($0.counters.values) }) { shard[.checks].unregisterCounter(c) }
        shard[.checkDuration].unregisterDurationHistogram(checkDuration)
        shard[.forwardedPackets].unregisterCounter(forwardedPackets)
        shard[.forwardedBytes].unregisterCounter(forwardedBytes)
    }
}

/// The per-backend families, in the order the scrape shows them.
enum BackendFamily: Int, ShardedFamily {
    case up, adminState, weight, slots, checks, checkDuration, transitions, timeInState, forwardedPackets, forwardedBytes

    var descriptor: MetricNameDescriptor {
        switch self {
        case .up: Families.backendUp
        case .adminState: Families.backendAdminState
        case .weight: Families.backendWeight
        case .slots: Families.backendSlots
        case .checks: Families.backendChecks
        case .checkDuration: Families.backendCheckDuration
        case .transitions: Families.backendTransitions
        case .timeInState: Families.backendTimeInState
        case .forwardedPackets: Families.backendForwardedPackets
        case .forwardedBytes: Families.backendForwardedBytes
        }
    }
}
