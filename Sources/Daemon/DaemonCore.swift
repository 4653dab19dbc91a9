import Foundation
import Kernel
import Logging
import PoolSpec
import Probes
import Ruleset

/// The daemon's decisions, driven by events and nothing else: start (adopt or create), health changes,
/// reloads, foreign changes to the table, and retry ticks. It keeps what the kernel should hold
/// (`desired`, from the spec and the probes' health) apart from what our last confirmed commit left
/// (`applied`): a refused update is retried with backoff until they match, and close-connections runs
/// only once the kernel has stopped routing to the backend. The run loop (`Daemon`) is a thin shell
/// around it; tests drive it against `FakeKernel`.
public final class DaemonCore {
    public struct Line: Equatable, Sendable, CustomStringConvertible {
        public var level: Logger.Level
        public var text: String
        /// Structured fields for `--log-format json` (a transition's pool, backend, from, to, …).
        public var metadata: Logger.Metadata = [:]
        public var description: String { "\(level): \(text)" }
    }

    /// The kernel refused what we asked; we try again until it takes it.
    public struct Failure: Equatable, Sendable {
        public var since: ContinuousClock.Instant
        public var attempts: Int
        public var next: ContinuousClock.Instant
        public var error: String
    }

    /// The spec as it runs: the file's, with the operators' runtime overrides laid over it.
    public internal(set) var spec: Spec
    /// The spec as the file says (what a reload compares against).
    public internal(set) var fileSpec: Spec
    /// `nftpool backend drain|disable|enable|weight` changes still in force.
    public internal(set) var overrides: RuntimeOverrides
    /// What the probes say (desired health).
    public internal(set) var health = Health()
    /// The table the kernel should hold.
    public internal(set) var desired: Table {
        didSet { desiredRevision &+= 1 }
    }
    /// Changes whenever `desired` is assigned: a cheap "has the wanted table changed" for the shell.
    public private(set) var desiredRevision = 0
    /// The table our last confirmed commit left; nil until the first one.
    public private(set) var applied: Table?
    public private(set) var failure: Failure?
    /// Backends of close-connections pools that went down, closed once the kernel stops routing to them.
    public internal(set) var pendingClose = Set<BackendRef>()
    /// Foreign changes found and restored.
    public private(set) var repairs = 0

    var recentRepairs: [ContinuousClock.Instant] = []
    /// Backends that have served since the daemon started (or were serving in the table it adopted):
    /// slowstart is for a backend that comes back, not for one's first rise.
    var everServed = Set<BackendRef>()
    /// Slowstart: when each ramping backend came back.
    var rampStarted: [BackendRef: ContinuousClock.Instant] = [:]
    /// Flap damping: recent falls and holds.
    var damper = FlapDamper()
    /// Passive health: each backend's recent failures, within its pool's `passive.within`.
    var passiveErrors: [BackendRef: [ContinuousClock.Instant]] = [:]
    /// Set once our first apply landed: from then on the table is ours, and a same-named table without
    /// our mark (someone deleted ours and made their own in one transaction) is a hand edit to undo.
    var owns = false
    var reclaim: Bool { force || owns }
    static let repairsPerSecond = 5

    let kernel: any KernelClient
    let force: Bool
    static let firstRetry: Duration = .milliseconds(100)
    static let maxRetry: Duration = .seconds(5)

    /// `overrides`: what operators changed at run time before a restart (RuntimeStateFile); those naming
    /// a backend the spec no longer has are dropped (`droppedOverrides`).
    public init(spec: Spec, kernel: any KernelClient, force: Bool = false, overrides: RuntimeOverrides = .init()) {
        var kept = overrides
        droppedOverrides = kept.prune(for: spec)
        self.fileSpec = spec
        self.overrides = kept
        self.spec = kept.applied(to: spec)
        self.kernel = kernel
        self.force = force
        desired = RulesetBuilder.table(for: self.spec, health: Health())
    }

    /// Overrides given at start that named backends the spec does not have.
    public let droppedOverrides: [String]

    /// The kernel holds what we want, as far as our own commits know.
    public var inSync: Bool { failure == nil && applied == desired }

    /// Adopts an earlier run's table (health from its frontends and slots: nothing flushed, no dead
    /// backend woken) or creates the table. Throws when the kernel refuses: nothing is running yet.
    public func start() throws(KernelError) -> [Line] {
        let ownership = try kernel.ownership(of: spec.table)
        if ownership == .foreign && !force { throw KernelError.notOurs(table: spec.table) }
        let elements = ownership == .ours ? try kernel.elements(of: spec.table, sets: SlotMembership.sets(for: spec)) : nil
        health = Health(down: SlotMembership.adoptedDown(spec, elements: elements))
        desired = RulesetBuilder.table(for: spec, health: health)
        let report = try kernel.apply(desired, force: force)
        applied = desired
        owns = true
        everServed = Set(spec.pools.flatMap { p in p.backends.filter { health.isEligible($0, in: p) }.map { BackendRef(p, $0) } })
        let what = ownership == .ours ? "adopted table inet \(spec.table)" : "started"
        return [Line(level: .info, text: "\(what): \(Self.summary(spec, health)); \(Self.sent(report))")]
    }

    /// Probe transitions, taken as one burst: one transaction, one line per transition.
    public func healthChanged(_ changes: [(ref: BackendRef, transition: HealthTracker.Transition)], now: ContinuousClock.Instant) -> [Line] {
        var pools = Set<String>()
        // Slowstart spares a returning backend only if others were serving before this burst.
        let servingBefore = Set(spec.pools.filter { $0.slowstart != nil }.flatMap { p in p.backends.map { BackendRef(p, $0) } }.filter(isServing))
        /// Rises that flap damping holds down: how long, and whether it is the first hold (logged as news).
        var held: [BackendRef: (hold: Duration, first: Bool, damping: Damping)] = [:]
        for (ref, t) in changes {
            // A transition still queued from before a reload may name a backend that is gone or no
            // longer checked: it says nothing about the spec now running.
            guard let pool = spec.pools.first(where: { $0.name == ref.pool }), let check = pool.healthCheck,
                pool.backends.contains(where: { $0.endpoint == ref.endpoint })
            else { continue }
            if t.to == .down {
                if let d = check.damping { damper.fell(ref, damping: d, at: now) }
                stopRamp(ref)
                health.down.insert(ref)
                if pool.onBackendDown == .closeConnections { pendingClose.insert(ref) }
            } else {
                if let d = check.damping {
                    let before = damper.records[ref]?.lastHold
                    if let hold = damper.rose(ref, damping: d, at: now) {
                        held[ref] = (hold, before == nil, d)
                        continue  // stays down: released by tick when the hold is over
                    }
                }
                health.down.remove(ref)
                pendingClose.remove(ref)
                if everServed.contains(ref) { startRamp(ref, in: pool, now: now, servingBefore: servingBefore) }
                everServed.insert(ref)
            }
            pools.insert(ref.pool)
        }
        guard !pools.isEmpty || !held.isEmpty else { return [] }
        var outcome = "nothing sent", extra: [Line] = []
        if !pools.isEmpty {
            for pool in pools.sorted() { desired = RulesetBuilder.updating(desired, spec: spec, pool: pool, health: health) }
            (outcome, extra) = sync(now: now)
            if pools.count > 1 || changes.count - held.count > 1 {
                let others = changes.count - held.count - 1
                if others > 0 { outcome += " (with \(others) other change\(others == 1 ? "" : "s"))" }
            }
        }
        let lines = changes.compactMap { ref, t -> Line? in
            guard spec.pools.contains(where: { $0.name == ref.pool }) else { return nil }
            if let h = held[ref] {
                // Logged as news once, when damping starts holding it; later holds of the same flapping spell quietly.
                return Line(
                    level: h.first ? .warning : .info,
                    text: "pool \(ref.pool) backend \(ref.endpoint): \(t.from.rawValue) → \(t.to.rawValue) (\(t.reason)) after \(Self.text(t.after)) \(t.from.rawValue), but flapping (\(h.damping.falls)+ falls within \(DurationText.format(h.damping.within))): held down for \(DurationText.format(h.hold))",
                    metadata: .transition(ref, t).merging(["held": .stringConvertible(Self.seconds(h.hold))]) { $1 })
            }
            return Line(level: .notice, text: "pool \(ref.pool) backend \(ref.endpoint): \(t.from.rawValue) → \(t.to.rawValue) (\(t.reason)) after \(Self.text(t.after)) \(t.from.rawValue); \(outcome)", metadata: .transition(ref, t))
        }
        return lines + extra
    }

    /// A check as the probes see it (ProbeTarget drops the same fields): whether a reload restarts them.
    static func probing(_ check: HealthCheck?) -> HealthCheck? {
        check.map { var c = $0; c.passive = nil; c.damping = nil; return c }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// A new spec (SIGHUP). Health carries over for backends it keeps; new checked backends start down.
    /// A spec the kernel refuses is not taken: the running one stays.
    public func reload(_ next: Spec, now: ContinuousClock.Instant) -> [Line] {
        guard next.table == spec.table else {
            return [Line(level: .error, text: "reload: the table name changed (\(spec.table) → \(next.table)); restart nftpool to move to another table. Keeping the running spec")]
        }
        let file = next
        let previous = spec
        var kept = overrides
        let gone = kept.prune(for: file)
        let next = kept.applied(to: file)
        let known = Set(spec.pools.flatMap { p in p.healthCheck == nil ? [] : p.backends.map { BackendRef(p, $0) } })
        var down = Set<BackendRef>()
        for pool in next.pools where pool.healthCheck != nil {
            for b in pool.backends {
                let ref = BackendRef(pool, b)
                if health.down.contains(ref) || !known.contains(ref) { down.insert(ref) }
            }
        }
        // Ramps under way go on where the backend is still there and still slow-started.
        let slow = Set(next.pools.filter { $0.slowstart != nil }.flatMap { p in p.backends.map { BackendRef(p, $0) } })
        let newHealth = Health(down: down, ramp: health.ramp.filter { slow.contains($0.key) && !down.contains($0.key) })
        let table = RulesetBuilder.table(for: next, health: newHealth)
        do {
            let report = try kernel.apply(table, force: reclaim)
            spec = next
            fileSpec = file
            overrides = kept
            health = newHealth
            rampStarted = rampStarted.filter { newHealth.ramp[$0.key] != nil }
            // A pool whose check changed starts its probes over (down until rise): its holds go too.
            let sameCheck = Set(next.pools.filter { p in Self.probing(previous.pools.first { $0.name == p.name }?.healthCheck) == Self.probing(p.healthCheck) }.map(\.name))
            damper.retain { ref in sameCheck.contains(ref.pool) && next.pools.contains { $0.name == ref.pool && $0.healthCheck?.damping != nil && $0.backends.contains { $0.endpoint == ref.endpoint } } }
            let present = Set(next.pools.flatMap { p in p.backends.map { BackendRef(p, $0) } })
            passiveErrors = passiveErrors.filter { present.contains($0.key) }
            everServed.formIntersection(present)
            desired = table
            applied = table
            failure = nil
            pendingClose = pendingClose.filter { !isServing($0) }
            return [Line(level: .notice, text: "reloaded: \(Self.summary(spec, health)); \(Self.sent(report))")]
                + gone.map { Line(level: .warning, text: "reload: backend \($0) is no longer in the spec; its runtime override is dropped") }
                + closeConnections()
        } catch {
            return [Line(level: .error, text: "reload: the kernel refused the new spec, keeping the running one: \(error)")]
        }
    }

    /// Someone else changed the table (an nftables event, or the periodic generation check saw a
    /// commit it cannot account for): compare with what we want and restore it.
    public func kernelChanged(by who: String, now: ContinuousClock.Instant) -> [Line] {
        // A retry is already due: it plans from a read-back and restores this too. Escalating its backoff
        // on every event of a burst would push the restore past the burst by seconds.
        if failure != nil {
            applied = nil
            return []
        }
        let differences: [String]
        do {
            differences = try kernel.diff(desired, force: reclaim)
        } catch {
            return [Line(level: .error, text: "table inet \(spec.table) was changed by \(who) and cannot be restored: \(error)")]
                + fail(error, now: now)
        }
        guard !differences.isEmpty else { return [] }
        applied = nil  // the kernel no longer holds our last commit: plan against a read-back
        recentRepairs = recentRepairs.filter { now - $0 < .seconds(1) } + [now]
        if recentRepairs.count > Self.repairsPerSecond {
            // Another writer restores its own version each time we restore ours: back off (the retry
            // doubles up to 5 s) instead of two programs rewriting the table as fast as they can.
            let error = "another writer keeps changing the table (\(recentRepairs.count) repairs within a second; last by \(who))"
            fail(error, now: now)
            return [Line(level: .error, text: "table inet \(spec.table): \(error); restoring again in \(Self.text(failure!.next - now))")]
        }
        let shown = differences.prefix(5).joined(separator: "; ") + (differences.count > 5 ? "; and \(differences.count - 5) more" : "")
        let (outcome, extra) = sync(now: now)
        if failure == nil { repairs += 1 }
        return [Line(level: .warning, text: "table inet \(spec.table) was changed by \(who): \(differences.count) difference\(differences.count == 1 ? "" : "s") (\(shown)); restoring: \(outcome)")] + extra
    }

    /// Time passes: a refused update is retried when its backoff is over.
    public func tick(now: ContinuousClock.Instant) -> [Line] {
        var lines = releaseHeld(now: now) + advanceRamps(now: now)
        guard let f = failure, now >= f.next else { return lines }
        lines += retry(f, now: now)
        return lines
    }

    /// Flap damping: backends whose hold is over serve again, in one transaction.
    func releaseHeld(now: ContinuousClock.Instant) -> [Line] {
        guard damper.isHolding else { return [] }
        let due = damper.due(at: now).filter { ref in health.down.contains(ref) && spec.pools.contains { $0.name == ref.pool } }
        guard !due.isEmpty else { return [] }
        for ref in due {
            health.down.remove(ref)
            if let pool = spec.pools.first(where: { $0.name == ref.pool }) { startRamp(ref, in: pool, now: now) }
        }
        for pool in Set(due.map(\.pool)).sorted() { desired = RulesetBuilder.updating(desired, spec: spec, pool: pool, health: health) }
        let (outcome, extra) = sync(now: now)
        return due.map { Line(level: .notice, text: "pool \($0.pool) backend \($0.endpoint): hold over (flap damping), taking new connections; \(outcome)") } + extra
    }

    func retry(_ f: Failure, now: ContinuousClock.Instant) -> [Line] {
        let (outcome, extra) = sync(now: now)
        let level: Logger.Level = failure == nil ? .notice : .warning
        return [Line(level: level, text: "retry \(f.attempts) of the refused update: \(outcome)")] + extra
    }

    /// Sends what differs between `applied` and `desired`. Returns the outcome for the log line and
    /// the lines of the connections it closed.
    func sync(now: ContinuousClock.Instant) -> (String, [Line]) {
        let start = ContinuousClock.now
        do {
            let report = try applied.map { previous throws(KernelError) in try kernel.apply(desired, after: previous) }
                ?? kernel.apply(desired, force: reclaim)
            applied = desired
            let recovered = failure.map { " after \($0.attempts) refused attempt\($0.attempts == 1 ? "" : "s")" } ?? ""
            failure = nil
            return ("\(Self.sent(report)) in \(Self.text(start.duration(to: .now)))\(recovered)", closeConnections())
        } catch {
            // The retry plans from a read-back: whatever made the kernel refuse may have changed it.
            applied = nil
            _ = fail(error, now: now)
            return ("but the kernel refused the change (\(error)); retrying in \(Self.text(failure!.next - now))", [])
        }
    }

    @discardableResult
    func fail(_ error: Any, now: ContinuousClock.Instant) -> [Line] {
        let attempts = (failure?.attempts ?? 0) + 1
        var delay = Self.firstRetry
        for _ in 1..<attempts where delay < Self.maxRetry { delay *= 2 }
        failure = Failure(since: failure?.since ?? now, attempts: attempts, next: now + min(delay, Self.maxRetry), error: "\(error)")
        return []
    }

    /// Closes the connections of backends that went down, now that the kernel no longer routes to them
    /// (a backend still holding slots, as every backend of a fail-open pool with none up does, keeps them).
    func closeConnections() -> [Line] {
        let refs = pendingClose.filter { ref in
            guard !isServing(ref) else { return false }
            guard let applied, let pool = spec.pools.first(where: { $0.name == ref.pool }) else { return true }
            return SlotMembership.held(pool, in: applied)[ref.endpoint, default: 0] == 0
        }.sorted { $0.description < $1.description }
        pendingClose = []
        var targets: [(ref: BackendRef, target: NetfilterKernel.ConnectionTarget)] = []
        for ref in refs {
            guard let pool = spec.pools.first(where: { $0.name == ref.pool }),
                let b = pool.backends.first(where: { $0.endpoint == ref.endpoint })
            else { continue }
            // Only flows that came through this pool's frontends: another pool sharing the backend, or
            // kube-proxy's own DNAT to it, keeps its connections.
            targets.append((ref, .init(address: b.address, port: b.port, frontends: pool.frontends)))
        }
        guard !targets.isEmpty else { return [] }
        do {
            let closed = try kernel.deleteConnections(to: targets.map(\.target))
            return zip(targets, closed).map { t, n in
                return Line(level: .notice, text: "pool \(t.ref.pool) backend \(t.ref.endpoint): closed \(n) connection\(n == 1 ? "" : "s") (onBackendDown: close-connections)", metadata: .closed(t.ref, n))
            }
        } catch {
            pendingClose.formUnion(refs)  // tried again after the next commit
            return [Line(level: .error, text: "cannot close the connections of \(targets.map(\.ref.description).joined(separator: ", ")): \(error)")]
        }
    }

    /// Enabled and passing its checks (or unchecked): the backend takes new connections.
    func isServing(_ ref: BackendRef) -> Bool {
        guard let pool = spec.pools.first(where: { $0.name == ref.pool }),
            let b = pool.backends.first(where: { $0.endpoint == ref.endpoint })
        else { return false }
        return health.isEligible(b, in: pool)
    }

    public static func summary(_ spec: Spec, _ health: Health) -> String {
        let backends = spec.pools.reduce(0) { $0 + $1.backends.count }
        let up = spec.pools.reduce(0) { n, pool in n + pool.backends.filter { health.isEligible($0, in: pool) }.count }
        return "\(spec.pools.count) pool\(spec.pools.count == 1 ? "" : "s"), \(up) of \(backends) backends taking new connections"
    }

    static func sent(_ report: NetfilterKernel.ApplyReport) -> String {
        report.messages == 0 ? "kernel already up to date, nothing sent" : "one transaction of \(report.messages) messages"
    }

    public static func text(_ d: Duration) -> String {
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return ms < 1000 ? String(format: "%.1fms", ms) : String(format: "%.1fs", ms / 1000)
    }
}
