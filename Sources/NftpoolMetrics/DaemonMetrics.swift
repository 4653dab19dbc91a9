import Daemon
import Dispatch
import Foundation
import Kernel
import NIOConcurrencyHelpers
import Probes
import Prometheus
import Ruleset

/// The daemon's metrics: a DaemonObserver that keeps what the daemon tells it, and renders the
/// Prometheus text on its own serial queue. The daemon's loop only stores a document; probes record
/// into their backend's series (a lock and an atomic). Registering series, the kernel's counters, /proc
/// and the text itself are all done on the queue, so neither a scrape nor a slow client can hold up a
/// health flip.
///
/// Series are registered on the queue as soon as the daemon publishes its first status (and again
/// after each reload), not at the first scrape: the backend and pool families live in ShardedRegistry,
/// where registering n backends costs O(n) rather than swift-prometheus's O(n²) for one family in one
/// registry (32-65 s of one core at 10,000 backends before; see docs/operations.md for the figures now).
/// Probe results and transitions that come before their backend's series exist wait in `early`
/// (at most `earlyLimit` each) and are counted when the series are made, so every result since the
/// daemon started is counted.
public final class DaemonMetrics: DaemonObserver {
    struct Seen {
        var status: StatusFile.Document?
        var lastLoop: ContinuousClock.Instant?
        var started = false
        /// The next published status may bring backends without series (the first one, or the first
        /// after a reload): sync the series on the queue then, rather than at the next scrape.
        var syncWanted = true
    }

    /// What a backend's probes said before its series were registered.
    struct Early {
        var results: [(ProbeResult, Duration)] = []
        var transitions: [HealthTracker.Transition] = []
        /// A sync already found the backend missing from the status: the next one drops this.
        var aged = false

        mutating func keep(_ result: ProbeResult, took: Duration) {
            if results.count < DaemonMetrics.earlyLimit { results.append((result, took)) }
        }

        mutating func keep(_ transition: HealthTracker.Transition) {
            if transitions.count < DaemonMetrics.earlyLimit { transitions.append(transition) }
        }
    }

    struct Backends {
        /// Probe id (`pool/endpoint`) → series.
        var series: [String: BackendSeries] = [:]
        var early: [String: Early] = [:]
    }

    /// Per backend kept before its series exist, of results and of transitions each (a probe every
    /// 100 ms for 6 s); more are not counted.
    static let earlyLimit = 64

    /// The daemon's own families (apply, netlink, reloads, build, process, ha); the backend and pool
    /// families are in `backendFamilies` and `poolFamilies`.
    let registry = PrometheusCollectorRegistry()
    let backendFamilies = ShardedRegistry<BackendFamily>()
    let poolFamilies = ShardedRegistry<PoolFamily>()
    private let seen = NIOLockedValueBox(Seen())
    /// Read from the probes' event loops, changed on the queue.
    private let backends = NIOLockedValueBox(Backends())
    /// Touched on the queue only (boxed to stay Sendable).
    private let pools = NIOLockedValueBox<[String: PoolSeries]>([:])
    /// With `ha`: made at the first document that has an ha section.
    private let ha = NIOLockedValueBox<HASeries?>(nil)
    private let repairsSeen = NIOLockedValueBox(0)
    /// The last render's size in bytes (on the queue).
    private let lastSize = NIOLockedValueBox(0)
    let queue = DispatchQueue(label: "nftpool-metrics")
    /// Reads the counters in the daemon's namespace (the process is in it); nil in tests without a kernel.
    private let readKernel: Bool

    private let applyDuration: DurationHistogram
    private let netlinkMessages: Counter
    private let netlinkErrors: Counter
    private let repairs: Counter
    private let inSync: Gauge
    private let reloadSuccess: Counter
    private let reloadFailure: Counter
    private let lastReloadOK: Gauge
    private let lastReloadTime: Gauge
    private let cpu: Counter
    private let resident: Gauge
    private let virtual: Gauge
    private let startTime: Gauge
    private let openFDs: Gauge
    private let maxFDs: Gauge

    public init(version: String, readKernel: Bool = true) {
        self.readKernel = readKernel
        let r = registry
        applyDuration = r.makeDurationHistogram(descriptor: Families.applyDuration, buckets: [
            .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ])
        netlinkMessages = r.makeCounter(descriptor: Families.netlinkMessages)
        netlinkErrors = r.makeCounter(descriptor: Families.netlinkErrors)
        repairs = r.makeCounter(descriptor: Families.repairs)
        inSync = r.makeGauge(descriptor: Families.kernelInSync)
        reloadSuccess = r.makeCounter(descriptor: Families.reloads, labels: [("result", "success")])
        reloadFailure = r.makeCounter(descriptor: Families.reloads, labels: [("result", "failure")])
        lastReloadOK = r.makeGauge(descriptor: Families.lastReloadSuccessful)
        lastReloadOK.set(to: 1)
        lastReloadTime = r.makeGauge(descriptor: Families.lastReloadSuccessTime)
        lastReloadTime.set(to: Date().timeIntervalSince1970)
        r.makeGauge(descriptor: Families.buildInfo, labels: [("version", version)]).set(to: 1)
        cpu = r.makeCounter(descriptor: Families.processCPU)
        resident = r.makeGauge(descriptor: Families.processResident)
        virtual = r.makeGauge(descriptor: Families.processVirtual)
        startTime = r.makeGauge(descriptor: Families.processStart)
        openFDs = r.makeGauge(descriptor: Families.processOpenFDs)
        maxFDs = r.makeGauge(descriptor: Families.processMaxFDs)
    }

    // MARK: DaemonObserver (the daemon's loop and the probes' event loops)

    public func started() {
        seen.withLockedValue { $0.started = true }
    }

    public func loopAlive(at now: ContinuousClock.Instant) {
        seen.withLockedValue { $0.lastLoop = now }
    }

    /// Keeps the document; the first one (and the first after a reload) also queues the series' sync,
    /// so that the first scrape finds them registered.
    public func published(_ status: StatusFile.Document) {
        let sync = seen.withLockedValue { s -> Bool in
            s.status = status
            defer { s.syncWanted = false }
            return s.syncWanted
        }
        if sync { queue.async { self.syncSeries() } }
    }

    public func probed(_ id: String, _ result: ProbeResult, took: Duration) {
        let series = backends.withLockedValue { b -> BackendSeries? in
            if let s = b.series[id] { return s }
            b.early[id, default: Early()].keep(result, took: took)
            return nil
        }
        series?.record(result, took: took)
    }

    public func transition(_ id: String, _ transition: HealthTracker.Transition) {
        let series = backends.withLockedValue { b -> BackendSeries? in
            if let s = b.series[id] { return s }
            b.early[id, default: Early()].keep(transition)
            return nil
        }
        series?.record(transition)
    }

    public func applied(took: Duration, messages: Int?) {
        applyDuration.record(took)
        if let messages {
            netlinkMessages.increment(by: Int64(messages))
        } else {
            netlinkErrors.increment()
        }
    }

    public func netlinkFailed() {
        netlinkErrors.increment()
    }

    public func reloaded(ok: Bool) {
        (ok ? reloadSuccess : reloadFailure).increment()
        lastReloadOK.set(to: ok ? 1 : 0)
        if ok { lastReloadTime.set(to: Date().timeIntervalSince1970) }
        seen.withLockedValue { $0.syncWanted = true }
    }

    /// Backends whose early results wait for their series (for tests).
    var earlyBackends: Int { backends.withLockedValue { $0.early.count } }

    // MARK: health endpoints (any thread: they read what was kept)

    public func liveness(now: ContinuousClock.Instant = .now) -> HealthVerdict {
        let s = seen.withLockedValue { $0 }
        return HealthVerdict.live(lastLoop: s.lastLoop, now: now, status: s.status, wallNow: Date().timeIntervalSince1970)
    }

    public func readiness() -> HealthVerdict {
        let s = seen.withLockedValue { $0 }
        return HealthVerdict.ready(started: s.started, status: s.status)
    }

    // MARK: the queue

    /// The Prometheus text as of now. Call it on `queue` (the server does); blocking reads of the kernel
    /// and /proc happen here.
    public func render() -> [UInt8] {
        dispatchPrecondition(condition: .onQueue(queue))
        let status = syncSeries()
        if let status {
            let wall = Date().timeIntervalSince1970
            let series = backends.withLockedValue { $0.series }
            for pool in status.pools {
                for b in pool.backends {
                    guard let s = series[BackendRef(pool: pool.name, endpoint: b.endpoint).description] else { continue }
                    s.timeInState.set(to: b.sinceTime.map { max(0, wall - $0) } ?? 0)
                }
            }
            if readKernel { readCounters(status, series) }
        }
        if let p = ProcessStats.read() {
            cpu.reset()
            cpu.increment(by: p.cpuSeconds)
            resident.set(to: p.residentBytes)
            virtual.set(to: p.virtualBytes)
            if let start = p.startTime { startTime.set(to: start) }
            openFDs.set(to: p.openFDs)
            maxFDs.set(to: p.maxFDs)
        }
        var out: [UInt8] = []
        // The last text's size and a little more: 21.5 MB at 10,000 backends, grown by doubling otherwise.
        out.reserveCapacity(lastSize.withLockedValue { $0 + $0 / 16 })
        registry.emit(into: &out)
        poolFamilies.emit(into: &out)
        backendFamilies.emit(into: &out)
        lastSize.withLockedValue { $0 = out.count }
        return out
    }

    /// Brings the series in line with the newest document: registers new backends and pools (and the
    /// counters of outcomes first seen), counts what came before a backend's series, unregisters gone
    /// ones, sets the gauges. On the queue.
    @discardableResult
    func syncSeries() -> StatusFile.Document? {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let status = seen.withLockedValue({ $0.status }) else { return nil }
        inSync.set(to: status.kernel.inSync ? 1 : 0)
        let before = repairsSeen.withLockedValue { r in
            defer { r = status.kernel.repairs }
            return r
        }
        if status.kernel.repairs > before { repairs.increment(by: Int64(status.kernel.repairs - before)) }

        if let state = status.ha {
            let series = ha.withLockedValue { h in
                if h == nil { h = HASeries(registry: registry) }
                return h!
            }
            series.set(state, registry: registry)
        }

        var current = backends.withLockedValue { $0.series }
        var wanted = Set<String>()
        var listed: [(series: BackendSeries, status: StatusFile.BackendStatus)] = []
        listed.reserveCapacity(current.count)
        for pool in status.pools {
            for b in pool.backends {
                let id = BackendRef(pool: pool.name, endpoint: b.endpoint).description
                wanted.insert(id)
                if let s = current[id] {
                    listed.append((s, b))
                } else {
                    let s = BackendSeries(pool: pool.name, endpoint: b.endpoint, shard: backendFamilies.place(id))
                    current[id] = s
                    listed.append((s, b))
                }
            }
        }
        for (id, s) in current where !wanted.contains(id) {
            current[id] = nil
            s.unregister()
            backendFamilies.release(id)
        }
        let next = current
        let early = backends.withLockedValue { b -> [(BackendSeries, Early)] in
            b.series = next
            var counted: [(BackendSeries, Early)] = []
            for (id, e) in b.early {
                if let s = next[id] {
                    counted.append((s, e))
                    b.early[id] = nil
                } else if e.aged {
                    b.early[id] = nil
                } else {
                    b.early[id]!.aged = true
                }
            }
            return counted
        }
        for (s, e) in early {
            for (result, took) in e.results { s.record(result, took: took) }
            for t in e.transitions { s.record(t) }
        }
        for (s, b) in listed {
            s.set(b)
            s.registerPending()
        }

        pools.withLockedValue { pools in
            let names = Set(status.pools.map(\.name))
            for (name, s) in pools where !names.contains(name) {
                s.unregister()
                poolFamilies.release(name)
                pools[name] = nil
            }
            for pool in status.pools {
                let s = pools[pool.name] ?? PoolSeries(pool: pool.name, shard: poolFamilies.place(pool.name))
                pools[pool.name] = s
                s.set(pool)
            }
        }
        return status
    }

    /// The kernel's per-backend and per-pool counters, read now in the process's namespace. A failed
    /// read leaves the last values (and counts a netlink error).
    private func readCounters(_ status: StatusFile.Document, _ series: [String: BackendSeries]) {
        do {
            let kernel = try NetfilterKernel()
            var byEndpoint: [String: NetfilterKernel.Counter] = [:]
            for (element, c) in (try kernel.counters(of: status.table, sets: BackendCounterSets.sets) ?? [:]).values.joined() {
                guard let endpoint = BackendCounterSets.endpoint(of: element.key) else { continue }
                byEndpoint[endpoint, default: .init(packets: 0, bytes: 0)].packets += c.packets
                byEndpoint[endpoint, default: .init(packets: 0, bytes: 0)].bytes += c.bytes
            }
            let chains = try kernel.chainCounters(of: status.table) ?? [:]
            for pool in status.pools {
                for b in pool.backends {
                    guard let s = series[BackendRef(pool: pool.name, endpoint: b.endpoint).description] else { continue }
                    let c = byEndpoint[b.endpoint] ?? .init(packets: 0, bytes: 0)
                    Self.set(s.forwardedPackets, c.packets)
                    Self.set(s.forwardedBytes, c.bytes)
                }
                if let s = pools.withLockedValue({ $0[pool.name] }) {
                    Self.set(s.newConnections, chains["pool-\(pool.name)"]?.packets ?? 0)
                }
            }
        } catch {
            netlinkErrors.increment()
        }
    }

    /// A counter whose value the kernel keeps: set, not added to (a recreated table starts again at 0,
    /// which Prometheus reads as a counter reset).
    private static func set(_ counter: Counter, _ value: UInt64) {
        counter.reset()
        counter.increment(by: Int64(clamping: value))
    }
}
