import Daemon

/// What /healthz and /readyz answer, decided from what the daemon last told its observers. Pure, so
/// each rule is tested with a hand-moved clock.
public struct HealthVerdict: Equatable, Sendable {
    public var ok: Bool
    /// One line per reason, or "ok".
    public var text: String

    /// The loop ticks every 100 ms; one decision (a reload at 10,000 backends) can hold it for a second
    /// or two. Past this the loop is stuck, and restarting the daemon is the cure.
    public static let loopStall: Duration = .seconds(10)
    /// The loop republishes its status every 10 s at least, as a sign of life.
    public static let staleStatus: Double = 30

    /// Liveness: the loop handled an event lately and its last status is recent.
    public static func live(lastLoop: ContinuousClock.Instant?, now: ContinuousClock.Instant, status: StatusFile.Document?, wallNow: Double) -> HealthVerdict {
        var problems: [String] = []
        if let lastLoop {
            let idle = lastLoop.duration(to: now)
            if idle > loopStall { problems.append("the daemon's loop has handled nothing for \(idle.components.seconds)s") }
        } else {
            problems.append("the daemon's loop has not started")
        }
        if let status, wallNow - status.updated > staleStatus {
            problems.append(String(format: "the last status is %.0fs old", wallNow - status.updated))
        }
        return HealthVerdict(ok: problems.isEmpty, text: problems.isEmpty ? "ok" : problems.joined(separator: "\n"))
    }

    /// Readiness: the table is programmed and the kernel holds what the daemon wants, and every pool
    /// has a backend taking new connections.
    public static func ready(started: Bool, status: StatusFile.Document?) -> HealthVerdict {
        guard started, let status else { return HealthVerdict(ok: false, text: "the table is not programmed yet") }
        var problems: [String] = []
        if !status.kernel.inSync {
            problems.append("table inet \(status.table) does not hold what the daemon wants: \(status.kernel.error ?? "not confirmed")")
        }
        for pool in status.pools where !pool.backends.contains(where: Self.serving) {
            problems.append("pool \(pool.name) has no serving backend")
        }
        return HealthVerdict(ok: problems.isEmpty, text: problems.isEmpty ? "ok" : problems.joined(separator: "\n"))
    }

    /// Enabled, and passing its checks (or unchecked): it gets new connections.
    static func serving(_ b: StatusFile.BackendStatus) -> Bool {
        b.state == "enabled" && b.health != "down"
    }
}
