import PoolSpec
import Ruleset

/// Flap damping (`healthCheck.damping`), pure: remembers each backend's recent falls and decides whether
/// a rise serves at once or is held down, and for how long. A hold doubles with each fall during or after
/// the previous one while the backend keeps flapping, up to `maxHold`; `within` without a fall forgets it.
struct FlapDamper {
    struct Record {
        var falls: [ContinuousClock.Instant] = []
        /// The last hold given; the next one is twice as long.
        var lastHold: Duration?
        /// Held down until then (its probes say up).
        var heldUntil: ContinuousClock.Instant?
    }

    private(set) var records: [BackendRef: Record] = [:]

    /// The backend fell (by its probes or passive health). A fall while held cancels the release.
    mutating func fell(_ ref: BackendRef, damping: Damping, at now: ContinuousClock.Instant) {
        var r = records[ref] ?? Record()
        if let last = r.falls.last, now - last >= damping.within { r = Record() }
        r.falls = r.falls.filter { now - $0 < damping.within } + [now]
        r.heldUntil = nil
        records[ref] = r
    }

    /// The backend's probes say up again: nil to serve now, or how long to hold it down.
    mutating func rose(_ ref: BackendRef, damping: Damping, at now: ContinuousClock.Instant) -> Duration? {
        guard var r = records[ref] else { return nil }
        r.falls = r.falls.filter { now - $0 < damping.within }
        guard r.falls.count >= damping.falls else {
            records[ref] = r.falls.isEmpty ? nil : r
            return nil
        }
        let hold = r.lastHold.map { min($0 * 2, damping.maxHold) } ?? damping.hold
        r.lastHold = hold
        r.heldUntil = now + hold
        records[ref] = r
        return hold
    }

    /// Held backends whose hold is over: they serve now.
    mutating func due(at now: ContinuousClock.Instant) -> [BackendRef] {
        let refs = records.filter { $0.value.heldUntil.map { $0 <= now } ?? false }.map(\.key)
        for ref in refs { records[ref]?.heldUntil = nil }
        return refs.sorted { $0.description < $1.description }
    }

    func heldUntil(_ ref: BackendRef) -> ContinuousClock.Instant? { records[ref]?.heldUntil }

    var isHolding: Bool { records.values.contains { $0.heldUntil != nil } }

    /// Forgets backends that are gone or whose probes start over (a reload, a runtime disable).
    mutating func retain(_ keep: (BackendRef) -> Bool) {
        records = records.filter { keep($0.key) }
    }

    mutating func forget(_ ref: BackendRef) { records[ref] = nil }
}
