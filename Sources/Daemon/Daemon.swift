import Dispatch
import Foundation
import Kernel
import Logging
import PoolSpec
import Probes
import Ruleset

/// `nftpool run`: applies the spec, probes every backend, and on every health change sends one netlink
/// batch that rewrites only the slots that change. SIGHUP re-reads the spec (an invalid one is logged and
/// the running one kept); SIGTERM/SIGINT stop the daemon and leave the kernel's rules in place (the data
/// path keeps working) unless `cleanupOnExit`.
public final class Daemon {
    public struct Options: Sendable {
        public var specPath: String
        public var netns: String?
        public var force = false
        public var cleanupOnExit = false
        /// Where the daemon publishes health for `nftpool status`; nil: StatusFile.defaultPath(table).
        public var statusPath: String?

        public init(specPath: String, netns: String? = nil) {
            self.specPath = specPath
            self.netns = netns
        }
    }

    enum Event: Sendable {
        /// Transitions are waiting in the inbox.
        case transitions
        /// Twice a second: publish the status if it changed.
        case tick
        case reload
        case stop(String)
    }

    /// Transitions as they come from the probe tasks. The loop takes them all at once, so a burst (a
    /// start, a switch failing) becomes one transaction and one status write, not one per backend.
    final class Inbox: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [(String, HealthTracker.Transition)] = []

        /// True when the inbox was empty: the loop needs waking.
        func push(_ id: String, _ t: HealthTracker.Transition) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            items.append((id, t))
            return items.count == 1
        }

        func drain() -> [(String, HealthTracker.Transition)] {
            lock.lock()
            defer { lock.unlock() }
            defer { items = [] }
            return items
        }
    }

    let options: Options
    var logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until SIGTERM/SIGINT. Throws a KernelError when the first apply is refused; a spec error
    /// at start is thrown as SpecErrors.
    public func run() async throws {
        var spec = try SpecDecoder.load(path: options.specPath)
        Self.raiseDescriptorLimit()
        let kernel = try NetfilterKernel(netns: options.netns)
        let (events, sink) = AsyncStream<Event>.makeStream()
        let signals = Self.watchSignals(sink)
        defer { signals.forEach { $0.cancel() } }

        // Where health starts: adopting an earlier run's table keeps the kernel's membership (nothing is
        // flushed, no connection dropped); a first start begins with checked backends down until they pass
        // `rise` probes (a backend without a check counts as up).
        let ownership = try kernel.ownership(of: spec.table)
        if ownership == .foreign && !options.force {
            throw KernelError.notOurs(table: spec.table)
        }
        let held = ownership == .ours ? try kernel.slotEndpoints(of: spec.table) : nil
        var health = Health(down: Self.initiallyDown(spec, held: held))
        var table = RulesetBuilder.table(for: spec, health: health)
        let report = try kernel.apply(table, force: options.force)
        logger.info(
            "\(held == nil ? "started" : "adopted table inet \(spec.table)"): \(Self.summary(spec, health)); \(Self.sent(report))")

        let prober = Prober()
        let inbox = Inbox()
        let monitor = HealthMonitor(prober: prober) { id, transition in
            if inbox.push(id, transition) { sink.yield(.transitions) }
        }
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(500))
                sink.yield(.tick)
            }
        }
        defer { ticker.cancel() }
        var statusDirty = false
        var refs = watch(spec, health: health, monitor: monitor)
        let status = StatusFile(path: options.statusPath ?? StatusFile.defaultPath(table: spec.table))
        await status.write(spec: spec, specPath: options.specPath, table: table, health: health, monitor: monitor)

        for await event in events {
            switch event {
            case .tick:
                guard statusDirty else { continue }
                statusDirty = false
            case .transitions:
                let start = ContinuousClock.now
                var changes: [(BackendRef, HealthTracker.Transition)] = []
                for (id, t) in inbox.drain() {
                    guard let ref = refs[id] else { continue }
                    if t.to == .down { health.down.insert(ref) } else { health.down.remove(ref) }
                    changes.append((ref, t))
                }
                guard !changes.isEmpty else { continue }
                var next = table
                for pool in Set(changes.map(\.0.pool)).sorted() {
                    next = RulesetBuilder.updating(next, spec: spec, pool: pool, health: health)
                }
                var outcome: String
                do {
                    let report = try kernel.apply(next, after: table)
                    table = next
                    outcome = "\(Self.sent(report)) in \(Self.text(start.duration(to: .now)))"
                    if changes.count > 1 { outcome += " (with \(changes.count - 1) other change\(changes.count == 2 ? "" : "s"))" }
                } catch {
                    outcome = "but the kernel refused the change: \(error)"
                }
                for (ref, t) in changes {
                    logger.notice(
                        "pool \(ref.pool) backend \(ref.endpoint): \(t.from.rawValue) → \(t.to.rawValue) (\(t.reason)) after \(Self.text(t.after)) \(t.from.rawValue); \(outcome)")
                }
                statusDirty = true
                var closing: [(ref: BackendRef, target: NetfilterKernel.ConnectionTarget)] = []
                for (ref, t) in changes where t.to == .down {
                    guard let pool = spec.pools.first(where: { $0.name == ref.pool }), pool.onBackendDown == .closeConnections,
                        let backend = pool.backends.first(where: { $0.endpoint == ref.endpoint })
                    else { continue }
                    closing.append((ref, .init(address: backend.address, port: backend.port, frontends: pool.frontends)))
                }
                if !closing.isEmpty {
                    do {
                        let closed = try kernel.deleteConnections(to: closing.map(\.target))
                        for (i, (ref, _)) in closing.enumerated() {
                            let n = closed[i]
                            logger.notice("pool \(ref.pool) backend \(ref.endpoint): closed \(n) connection\(n == 1 ? "" : "s") (onBackendDown: close-connections)")
                        }
                    } catch {
                        logger.error("cannot close the connections of \(closing.map(\.ref.description).joined(separator: ", ")): \(error)")
                    }
                }
                // The status file follows on the next tick: one write per half second at most.
                continue
            case .reload:
                do {
                    let next = try SpecDecoder.load(path: options.specPath)
                    guard next.table == spec.table else {
                        logger.error("reload: the table name changed (\(spec.table) → \(next.table)); restart nftpool to move to another table. Keeping the running spec")
                        continue
                    }
                    let kept = Set(next.pools.flatMap { p in p.backends.map { BackendRef(p, $0) } })
                    let known = Set(refs.values)
                    var down = health.down.intersection(kept)
                    for pool in next.pools where pool.healthCheck != nil {
                        for b in pool.backends where !known.contains(BackendRef(pool, b)) { down.insert(BackendRef(pool, b)) }
                    }
                    let newHealth = Health(down: down)
                    let newTable = RulesetBuilder.table(for: next, health: newHealth)
                    let report = try kernel.apply(newTable)
                    spec = next
                    health = newHealth
                    table = newTable
                    refs = watch(spec, health: health, monitor: monitor)
                    logger.notice("reloaded \(options.specPath): \(Self.summary(spec, health)); \(Self.sent(report))")
                } catch let errors as SpecErrors {
                    for e in errors.errors { logger.error("reload: \(e.description)") }
                    logger.error("reload: the new spec is invalid; keeping the running one")
                } catch {
                    logger.error("reload: the kernel refused the new spec, keeping the running one: \(error)")
                }
            case .stop(let signal):
                monitor.stopAll()
                await prober.shutdown()
                if options.cleanupOnExit {
                    _ = try? kernel.delete(tableNamed: spec.table)
                    logger.notice("\(signal): stopped; deleted table inet \(spec.table) (--cleanup-on-exit)")
                } else {
                    logger.notice("\(signal): stopped; table inet \(spec.table) stays in the kernel, traffic keeps flowing")
                }
                status.remove()
                return
            }
            await status.write(spec: spec, specPath: options.specPath, table: table, health: health, monitor: monitor)
        }
    }

    /// Starts or keeps a probe loop per checked backend (not disabled ones); returns probe id → backend.
    func watch(_ spec: Spec, health: Health, monitor: HealthMonitor) -> [String: BackendRef] {
        var refs: [String: BackendRef] = [:]
        for pool in spec.pools {
            guard let check = pool.healthCheck else { continue }
            for backend in pool.backends where backend.state != .disabled {
                let ref = BackendRef(pool, backend)
                let id = ref.description
                refs[id] = ref
                let target = ProbeTarget(address: backend.address, port: check.port ?? backend.port, check: check)
                let down = health.down.contains(ref)
                monitor.watch(id, target: target, initial: down ? .down : .up, reason: down ? "not yet checked" : "serving")
            }
        }
        monitor.retain(only: Set(refs.keys))
        return refs
    }

    static func initiallyDown(_ spec: Spec, held: [String: Set<String>]?) -> Set<BackendRef> {
        var down = Set<BackendRef>()
        for pool in spec.pools where pool.healthCheck != nil {
            let serving = held?[RulesetBuilder.slotMapName(pool)]
            for backend in pool.backends {
                if let serving {
                    if !serving.contains(backend.endpoint) { down.insert(BackendRef(pool, backend)) }
                } else {
                    down.insert(BackendRef(pool, backend))
                }
            }
        }
        return down
    }

    /// Every probe in flight and every kept http(s) probe connection is a descriptor: with thousands of
    /// backends the usual soft limit of 1024 (systemd's default) runs out, so take the hard limit.
    static func raiseDescriptorLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// SIGHUP, SIGTERM and SIGINT as events. A process may inherit them blocked (a parent's mask survives
    /// exec), so they are unblocked first.
    static func watchSignals(_ sink: AsyncStream<Event>.Continuation) -> [DispatchSourceSignal] {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGHUP, SIGTERM, SIGINT] { sigaddset(&set, s) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        return [(SIGHUP, "SIGHUP"), (SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")].map { number, name in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { sink.yield(number == SIGHUP ? .reload : .stop(name)) }
            source.resume()
            return source
        }
    }

    static func summary(_ spec: Spec, _ health: Health) -> String {
        let backends = spec.pools.reduce(0) { $0 + $1.backends.count }
        let up = spec.pools.reduce(0) { n, pool in n + pool.backends.filter { health.isEligible($0, in: pool) }.count }
        return "\(spec.pools.count) pool\(spec.pools.count == 1 ? "" : "s"), \(up) of \(backends) backends taking new connections"
    }

    static func sent(_ report: NetfilterKernel.ApplyReport) -> String {
        report.messages == 0 ? "kernel already up to date, nothing sent" : "one transaction of \(report.messages) messages"
    }

    static func text(_ d: Duration) -> String {
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return ms < 1000 ? String(format: "%.1fms", ms) : String(format: "%.1fs", ms / 1000)
    }
}
