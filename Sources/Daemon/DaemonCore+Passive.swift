import Kernel
import Logging
import PoolSpec
import Probes
import Ruleset

/// Passive health: failures of clients' connections, as the kernel logged them (PassiveSignal), counted
/// per backend of each pool with `healthCheck.passive`; `errorLimit` within `within` take the backend down
/// at once, in one transaction with every other backend of the same burst. It comes back only through
/// its active probes' `rise` (the shell restarts them at fastInterval).
extension DaemonCore {
    /// Takes a burst of signals. `upFor` says how long a backend has been up (for the transition's
    /// duration). Returns the log lines and the backends taken down, which the shell hands to the probes.
    public func passiveSignals(_ signals: [PassiveSignal], now: ContinuousClock.Instant,
                               upFor: (BackendRef) -> Duration = { _ in .zero }) -> (lines: [Line], down: [(BackendRef, HealthTracker.Transition)]) {
        guard !signals.isEmpty else { return ([], []) }
        // endpoint ─► the passive pools' backends at it (a backend may serve two pools).
        var watched: [String: [(Pool, Backend)]] = [:]
        for pool in spec.pools where pool.healthCheck?.passive != nil {
            for b in pool.backends where b.state != .disabled { watched[b.endpoint, default: []].append((pool, b)) }
        }
        var down: [(BackendRef, HealthTracker.Transition)] = []
        for signal in signals {
            for (pool, backend) in watched[Backend.endpoint(signal.address, signal.port)] ?? [] {
                let ref = BackendRef(pool, backend)
                guard let passive = pool.healthCheck?.passive, !health.down.contains(ref) else { continue }
                var times = (passiveErrors[ref] ?? []).filter { now - $0 < passive.within }
                times.append(now)
                guard times.count >= passive.errorLimit else {
                    passiveErrors[ref] = times
                    continue
                }
                passiveErrors[ref] = nil
                if let d = pool.healthCheck?.damping { damper.fell(ref, damping: d, at: now) }
                stopRamp(ref)
                health.down.insert(ref)
                if pool.onBackendDown == .closeConnections { pendingClose.insert(ref) }
                let why = passive.errorLimit == 1
                    ? signal.reason
                    : "\(signal.reason), \(passive.errorLimit) failures within \(DurationText.format(passive.within))"
                down.append((ref, HealthTracker.Transition(from: .up, to: .down, reason: why, after: upFor(ref))))
            }
        }
        // Windows of backends that are down or gone need no keeping.
        passiveErrors = passiveErrors.filter { !health.down.contains($0.key) }
        guard !down.isEmpty else { return ([], []) }
        for pool in Set(down.map(\.0.pool)).sorted() {
            rebuild(pool: pool)
        }
        var (outcome, extra) = sync(now: now)
        if down.count > 1 { outcome += " (with \(down.count - 1) other change\(down.count == 2 ? "" : "s"))" }
        let lines = down.map { ref, t in
            Line(level: .notice,
                 text: "pool \(ref.pool) backend \(ref.endpoint): up → down (\(t.reason)) after \(Self.text(t.after)) up; \(outcome)",
                 metadata: .transition(ref, t))
        }
        return (lines + extra, down)
    }
}
