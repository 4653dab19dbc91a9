import PoolSpec
import Ruleset

/// Slowstart (`slowstart: DURATION` per pool): a backend that comes back takes its slots in steps, one
/// small transaction each, instead of every new connection's share at once. Steps of at least a second, at
/// most ten: 10s gives 10%, 20%, … 100% a second apart. Which slots it takes is fixed (SlotTable), so each
/// step only adds slots, and the other backends keep the rest of theirs.
extension DaemonCore {
    static func rampSteps(_ duration: Duration) -> Int {
        max(1, min(10, Int(duration / .seconds(1))))
    }

    /// The share after `elapsed` of a ramp over `duration`; nil once it is whole.
    static func rampShare(elapsed: Duration, over duration: Duration) -> Double? {
        let steps = rampSteps(duration)
        let step = Int(elapsed / (duration / steps)) + 1
        return step >= steps ? nil : Double(step) / Double(steps)
    }

    /// The backend serves again: with slowstart, from the first step. Not when no other backend of the pool
    /// takes its full share (a first start, or the pool coming back from all down): there is nobody to
    /// spare it from.
    func startRamp(_ ref: BackendRef, in pool: Pool, now: ContinuousClock.Instant, servingBefore: Set<BackendRef>? = nil) {
        guard let duration = pool.slowstart, let share = Self.rampShare(elapsed: .zero, over: duration) else { return }
        let others = servingBefore ?? Set(pool.backends.map { BackendRef(pool, $0) }.filter { $0 != ref && isServing($0) })
        guard others.contains(where: { $0.pool == pool.name && $0 != ref && health.ramp[$0] == nil }) else { return }
        rampStarted[ref] = now
        health.ramp[ref] = share
    }

    func stopRamp(_ ref: BackendRef) {
        rampStarted[ref] = nil
        health.ramp[ref] = nil
    }

    /// Moves every ramping backend to its current step: one transaction for all that moved.
    func advanceRamps(now: ContinuousClock.Instant) -> [Line] {
        guard !rampStarted.isEmpty else { return [] }
        var moved: [(BackendRef, Double?)] = []
        for (ref, began) in rampStarted {
            guard let pool = spec.pools.first(where: { $0.name == ref.pool }), let duration = pool.slowstart,
                pool.backends.contains(where: { $0.endpoint == ref.endpoint })
            else {
                stopRamp(ref)
                continue
            }
            let share = Self.rampShare(elapsed: now - began, over: duration)
            guard share != health.ramp[ref] else { continue }
            if share == nil { rampStarted[ref] = nil }
            health.ramp[ref] = share
            moved.append((ref, share))
        }
        guard !moved.isEmpty else { return [] }
        for pool in Set(moved.map(\.0.pool)).sorted() { rebuild(pool: pool) }
        let (outcome, extra) = sync(now: now)
        return moved.sorted { $0.0.description < $1.0.description }.map { ref, share in
            Line(level: share == nil ? .notice : .info,
                 text: "pool \(ref.pool) backend \(ref.endpoint): slowstart \(share.map { String(format: "%.0f%%", $0 * 100) } ?? "done, full share"); \(outcome)")
        } + extra
    }
}
