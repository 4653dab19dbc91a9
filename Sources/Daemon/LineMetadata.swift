import Logging
import Probes
import Ruleset

/// The structured fields of DaemonCore's lines (`--log-format json` writes them as the line's fields).
extension Logger.Metadata {
    /// A health transition: `pool`, `backend`, `from`, `to`, `reason`, and `duration`, the seconds spent
    /// in `from` (a number, to the millisecond).
    static func transition(_ ref: BackendRef, _ t: HealthTracker.Transition) -> Logger.Metadata {
        let seconds = Double(t.after.components.seconds) + Double(t.after.components.attoseconds) / 1e18
        return [
            "pool": .string(ref.pool), "backend": .string(ref.endpoint), "from": .string(t.from.rawValue),
            "to": .string(t.to.rawValue), "reason": .string(t.reason),
            "duration": .stringConvertible((seconds * 1000).rounded() / 1000),
        ]
    }

    /// close-connections: `pool`, `backend` and how many connections were `closed`.
    static func closed(_ ref: BackendRef, _ count: Int) -> Logger.Metadata {
        ["pool": .string(ref.pool), "backend": .string(ref.endpoint), "closed": .stringConvertible(count)]
    }
}
