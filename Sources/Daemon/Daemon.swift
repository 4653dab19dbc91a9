import Dispatch
import Foundation
import HAConfig
import Kernel
import Logging
import NIOConcurrencyHelpers
import PoolSpec
import Probes
import Ruleset

/// `nftpool run`: the shell around `DaemonCore`. It owns the clocks, the probes, the signals and the
/// nftables event subscription, turns each into an event for the core, and logs and publishes what
/// the core decides. SIGHUP re-reads the spec; SIGTERM/SIGINT stop the daemon and leave the kernel's
/// rules in place unless `cleanupOnExit`.
public final class Daemon {
    public struct Options: Sendable {
        public var specPath: String
        /// The spec as validated at start (standard input can be read only once).
        public var spec: Spec
        /// The `ip netns` name the daemon runs in, for `status` (the process is already inside it).
        public var netns: String?
        public var force = false
        public var cleanupOnExit = false
        /// Where the daemon publishes health for `nftpool status`; nil: StatusFile.defaultPath.
        public var statusPath: String?
        /// With a spec's `ha` section: this node's name (nil: the node whose address is local) and the
        /// runtime directory shared with keepalived (`nftpool ha-config --runtime-dir`).
        public var node: String?
        public var runtimeDirectory = HAConfig.defaultRuntimeDirectory
        /// How often the ruleset generation is checked, in case an nftables event was missed.
        public var generationCheck: Duration = .seconds(1)
        /// Where runtime overrides (`nftpool backend …`) are kept; nil: RuntimeStateFile.defaultPath.
        public var statePath: String?
        /// Told what the daemon does (metrics, sd_notify); see DaemonObserver.
        public var observers: [any DaemonObserver] = []

        public init(specPath: String, spec: Spec, netns: String? = nil) {
            self.specPath = specPath
            self.spec = spec
            self.netns = netns
        }
    }

    enum Event: Sendable {
        /// Transitions are waiting in the inbox.
        case transitions
        case tick
        case signal(SignalWatch.Signal)
        case kernel(RulesetMonitor.Event)
        case monitorFailed(String)
        case role(HANodeLink.Role, Int)
        /// A peer's beat and how long ago it arrived.
        case peer(HAPeerBeat, Duration)
        /// Clients' connections failing, as the kernel logged them (passive health).
        case passive([PassiveSignal])
        /// A request on the control socket (`nftpool backend …`, `nftpool status`).
        case control(ControlMessage.Request, ControlSocket.Responder)
    }

    /// Transitions as they come from the probes. The loop takes them all at once, so a burst (a start,
    /// a switch failing) becomes one transaction and one status write, not one per backend.
    final class Inbox: Sendable {
        private let items = NIOLockedValueBox<[(String, HealthTracker.Transition)]>([])

        /// True when the inbox was empty: the loop needs waking.
        func push(_ id: String, _ t: HealthTracker.Transition) -> Bool {
            items.withLockedValue { $0.append((id, t)); return $0.count == 1 }
        }

        func drain() -> [(String, HealthTracker.Transition)] {
            items.withLockedValue { let all = $0; $0 = []; return all }
        }
    }

    let options: Options
    var logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until SIGTERM/SIGINT. Throws a KernelError when the first apply is refused, and
    /// DaemonLock.Failure when another daemon runs the table.
    public func run() async throws {
        let (events, sink) = AsyncStream<Event>.makeStream()
        _ = SignalWatch { sink.yield(.signal($0)) }
        let lock = try DaemonLock(table: options.spec.table)
        defer { withExtendedLifetime(lock) {} }
        let observers = options.observers
        for o in observers { try o.prepare() }
        Self.raiseDescriptorLimit()
        var link: HANodeLink?
        if let ha = options.spec.ha {
            let node = try HANodeLink.node(ha, named: options.node).get()
            link = HANodeLink(node: node, paths: HAConfig.Paths(
                configDirectory: "/", runtimeDirectory: options.runtimeDirectory, table: options.spec.table, node: node.name))
            try link!.begin()
        }
        defer { link?.end() }
        let kernel = try NetfilterKernel()

        // Subscribe before the first apply, and count generations from before it, so that no foreign
        // change after it goes unseen (nftables.service flushing at boot, say).
        let table = options.spec.table
        let stopMonitor = NIOLockedValueBox(false)
        do {
            let monitor = try RulesetMonitor(table: table, ownPort: kernel.portID)
            Thread {
                while !stopMonitor.withLockedValue({ $0 }) {
                    for e in monitor.next() { sink.yield(.kernel(e)) }
                }
            }.start()
        } catch {
            sink.yield(.monitorFailed("\(error)"))
        }
        defer { stopMonitor.withLockedValue { $0 = true } }
        var ledger = GenerationLedger(generation: (try? kernel.generation()) ?? 0)

        let stateFile = RuntimeStateFile(path: options.statePath ?? RuntimeStateFile.defaultPath(table: table, netns: options.netns))
        let (stored, unusable) = stateFile.load(table: table)
        if let unusable { logger.error("\(unusable)") }
        let core = DaemonCore(spec: options.spec, kernel: observers.isEmpty ? kernel : ObservedKernel(kernel, observers: observers),
                              force: options.force, overrides: stored)
        for gone in core.droppedOverrides { logger.warning("runtime override for \(gone) dropped: the backend is no longer in the spec") }
        if !core.overrides.isEmpty {
            logger.notice("runtime overrides from \(stateFile.path): \(core.overrides.backends.keys.sorted().joined(separator: ", "))")
        }
        log(try core.start())
        /// Keeps the overrides on disk whenever they change; why not (also logged) when they cannot be.
        var savedOverrides = stored
        func saveOverrides() -> String? {
            guard core.overrides != savedOverrides else { return nil }
            do {
                try stateFile.save(core.overrides, table: table)
                savedOverrides = core.overrides
                return nil
            } catch {
                logger.error("runtime overrides not saved: \(error); a restart would lose them")
                return error.description
            }
        }
        _ = saveOverrides()
        var role = (HANodeLink.Role.unknown, 0, ContinuousClock.now)
        var statusDirty = false
        var track: Int?
        var gate = link.map { HAGate(table: table, ha: options.spec.ha!, node: $0.node, now: .now) }
        var peerLink: HAPeerLink?
        if let link, let ha = options.spec.ha {
            do {
                peerLink = try HAPeerLink(ha: ha, node: link.node)
                peerLink?.receive { sink.yield(.peer($0, $1)) }
            } catch {
                logger.error("ha: no beats to the peers (\(error)): this node cannot tell when a peer has resynced")
            }
        }
        let frontends = Set(options.spec.pools.flatMap { $0.frontends.map(\.address) })
        // conntrackd does not carry TCP sequence windows: a node that takes connections back after a split
        // brain (or a long stall) sees them out of window, INVALID, and the takeover guard drops them.
        if link != nil, let liberal = try? String(contentsOfFile: "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal", encoding: .utf8),
            liberal.trimmingCharacters(in: .whitespacesAndNewlines) == "0" {
            logger.warning("ha: net.netfilter.nf_conntrack_tcp_be_liberal is 0 in this network namespace: connections that come back to this node after a split brain can be dropped as out of window; set it to 1 (docs/ha.md)")
        }
        var beatSeq: UInt64 = 0
        var lastBeat = ContinuousClock.now - .seconds(60)
        var lastResyncRequest: (at: ContinuousClock.Instant, answered: Bool)?
        var digest = (revision: -1, text: "")
        /// The wanted table's digest, rendered again only when it changed. The status compares the peers'
        /// digests with this one, so it must not lag behind a change that no beat has sent yet.
        func tableDigest() -> String {
            if digest.revision != core.desiredRevision {
                digest = (core.desiredRevision, String(StableHash.hash64(NftRenderer.body(core.desired)), radix: 16))
            }
            return digest.text
        }
        var lastProgressLog: ContinuousClock.Instant?
        /// The track file from the gate's decision: FAULT until the table is loaded or while yielding, -253
        /// while not resynced, above 0 while holding the VIPs for a peer that is not resynced, else 0.
        func publishTrack(now: ContinuousClock.Instant) {
            guard let link, var g = gate else { return }
            let (decision, lines) = g.decide(now: now, ready: core.applied != nil, yields: link.yields(core))
            gate = g
            for line in lines { logger.notice("\(line)") }
            // Ask again every 5 s while pending; every second while conntrackd is not answering yet (it
            // starts after the daemon), logged once.
            if case .pending = g.resync, lastResyncRequest.map({ now - $0.at >= ($0.answered ? .seconds(5) : .seconds(1)) }) ?? true {
                let asked = link.requestResync()
                if asked || lastResyncRequest?.answered != false {
                    logger.notice("ha: \(asked ? "asked conntrackd for the peers' connection table" : "conntrackd is not answering on \(link.paths.conntrackdSocket) yet")")
                }
                lastResyncRequest = (now, asked)
            }
            if g.isResynced { lastResyncRequest = nil }
            guard decision.track != track else { return }
            do {
                try link.publish(decision.track)
                track = decision.track
                statusDirty = true
                logger.notice("ha: node \(link.node.name): track file \(decision.track) (\(decision.reason))")
            } catch {
                logger.error("ha: cannot write \(link.paths.trackFile): \(error)")
            }
        }
        /// Every advert interval: count connections if the gate wants it, decide, and tell the peers.
        func beat(now: ContinuousClock.Instant) {
            guard var g = gate, let ha = options.spec.ha, now - lastBeat >= ha.advertInterval else { return }
            lastBeat = now
            var flows: [UInt64]?
            if g.wantsCount(now: now), let n = try? kernel.connectionDigests(to: frontends) {
                flows = n.established
                for line in g.counted(local: Set(n.established), other: Set(n.other), now: now) { logger.notice("\(line)") }
                gate = g
                if let progress = g.progress, !g.isResynced, lastProgressLog.map({ now - $0 >= .seconds(2) }) ?? true {
                    lastProgressLog = now
                    logger.notice("ha: resyncing: \(progress)")
                }
            }
            publishTrack(now: now)
            beatSeq += 1
            peerLink?.send(gate!.beat(flows: flows, tableDigest: tableDigest(), seq: beatSeq))
        }
        publishTrack(now: .now)
        link?.watchRoles { sink.yield(.role($0, $1)) }

        let prober = Prober()
        let inbox = Inbox()
        let probed: HealthMonitor.Observer = { id, result, took in
            for o in observers { o.probed(id, result, took: took) }
        }
        let monitor = HealthMonitor(prober: prober, observer: observers.isEmpty ? nil : probed) { id, transition in
            for o in observers { o.transition(id, transition) }
            if inbox.push(id, transition) { sink.yield(.transitions) }
        }
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                sink.yield(.tick)
            }
        }
        defer { ticker.cancel() }
        var refs = watch(core.spec, health: core.health, monitor: monitor)
        // Passive health: the table's NFLOG group, read on a thread of its own once any pool asks for it.
        var passiveListening = false
        func listenPassive() {
            guard !passiveListening, core.spec.pools.contains(where: { $0.healthCheck?.passive != nil }) else { return }
            do {
                let listener = try PassiveHealthListener(group: RulesetBuilder.passiveLogGroup(table: table))
                passiveListening = true
                Thread {
                    while !stopMonitor.withLockedValue({ $0 }) {
                        let signals = listener.next()
                        if !signals.isEmpty { sink.yield(.passive(signals)) }
                    }
                }.start()
                logger.info("passive health: listening on NFLOG group \(listener.group)\(listener.withConntrack ? "" : " (without conntrack entries: backends named by the packets' headers)")")
            } catch {
                logger.error("passive health is off: \(error); backends go down by their active checks only")
            }
        }
        listenPassive()
        let statusPath = options.statusPath ?? StatusFile.defaultPath(table: table, namespace: DaemonLock.namespaceID())
        let status = StatusFile(path: statusPath)
        var control: ControlSocket?
        do {
            control = try ControlSocket(path: ControlSocket.defaultPath(table: table, namespace: DaemonLock.namespaceID()))
            control?.serve { sink.yield(.control($0, $1)) }
        } catch {
            logger.error("no runtime control (`nftpool backend …`): \(error)")
        }
        defer { control?.stop() }
        @discardableResult
        func writeStatus() -> StatusFile.Document {
            let haState = link.map { l in
                let now = ContinuousClock.now, wall = Date().timeIntervalSince1970
                let ours = tableDigest()
                var state = StatusFile.HAState(
                    node: l.node.name, role: role.0.rawValue,
                    roleSince: wall - StatusFile.seconds(role.2.duration(to: now)), track: track)
                if let g = gate {
                    state.trackReason = g.decision.reason
                    state.resynced = g.isResynced
                    if case .pending(_, let why, _) = g.resync { state.resyncPending = why }
                    state.peers = g.ha.nodes.filter { $0.name != l.node.name }.map { n in
                        let p = g.peers[n.name]
                        return StatusFile.PeerState(
                            node: n.name, role: p?.beat.role ?? "UNKNOWN", priority: p?.beat.priority ?? 0,
                            resynced: p?.beat.resynced ?? false,
                            heard: p.map { wall - StatusFile.seconds($0.heardAt.duration(to: now)) },
                            lost: p.map { now - $0.heardAt > g.peerTimeout } ?? true,
                            sameTable: p?.beat.table_digest == ours)
                    }
                }
                return state
            }
            let doc = status.write(core, specPath: options.specPath, netns: options.netns, lock: lock.path, control: control?.path, monitor: monitor, ha: haState)
            for o in observers { o.published(doc) }
            return doc
        }
        writeStatus()
        for o in observers { o.started() }
        var publishedInSync = core.inSync
        var lastStatus = ContinuousClock.now
        var lastGenerationCheck = ContinuousClock.now
        var lastTick = ContinuousClock.now

        for await event in events {
            let now = ContinuousClock.now
            // The loop ticks every 100 ms: a far longer gap means this process (or the machine) was stopped,
            // and the peers may have moved connections meanwhile. Judged before the event itself, which may
            // be one that waited through the stop.
            if now - lastTick > .seconds(1), var g = gate {
                for line in g.stalled(for: now - lastTick, now: now) { logger.warning("\(line)") }
                gate = g
                lastTick = now
                publishTrack(now: now)
            }
            for o in observers { o.loopAlive(at: now) }
            switch event {
            case .tick:
                lastTick = now
                beat(now: now)
                let retried = core.tick(now: now)
                log(retried)
                if !retried.isEmpty { statusDirty = true }
                if now - lastGenerationCheck >= options.generationCheck {
                    lastGenerationCheck = now
                    if let g = try? kernel.generation(), let who = ledger.check(generation: g, lastOwn: kernel.lastCommitGeneration) {
                        log(core.kernelChanged(by: who, now: now))
                        statusDirty = true
                    }
                }
            case .kernel(let e):
                if let who = ledger.event(e, lastOwn: kernel.lastCommitGeneration, current: { try? kernel.generation() }) {
                    log(core.kernelChanged(by: who, now: now))
                }
            case .role(let r, let priority):
                if r != role.0 { logger.notice("ha: node \(link?.node.name ?? "?") is \(r.rawValue) (keepalived, priority \(priority))") }
                role = (r, priority, now)
                gate?.roleChanged(r.rawValue)
                publishTrack(now: now)
            case .peer(let b, let age):
                guard var g = gate else { continue }
                let before = g.peers[b.node].map { [$0.beat.role, "\($0.beat.priority)", "\($0.beat.resynced)", $0.beat.table_digest] }
                let lines = g.heard(b, at: now - age, now: now)
                for line in lines { logger.notice("\(line)") }
                gate = g
                publishTrack(now: now)
                // Beats come every advert interval: the status is rewritten only when one says something new.
                guard lines.isEmpty, before == [b.role, "\(b.priority)", "\(b.resynced)", b.table_digest] else { break }
                continue
            case .passive(let signals):
                let (lines, down) = core.passiveSignals(signals, now: now) { ref in
                    monitor.status()[ref.description].map { $0.since.duration(to: now) } ?? .zero
                }
                log(lines)
                for (ref, transition) in down {
                    for o in observers { o.transition(ref.description, transition) }
                    // The probes learn it too: they restart at fastInterval and bring it back after `rise`.
                    monitor.markDown(ref.description, reason: transition.reason) { _ in }
                }
                if down.isEmpty { continue }
                publishTrack(now: now)
            case .monitorFailed(let why):
                ledger.eventsAlive = false
                logger.warning("no nftables events (\(why)): foreign changes are found by the generation check every \(DurationText.format(options.generationCheck))")
            case .transitions:
                var changes: [(ref: BackendRef, transition: HealthTracker.Transition)] = []
                for (id, t) in inbox.drain() {
                    if let ref = refs[id] { changes.append((ref, t)) }
                }
                log(core.healthChanged(changes, now: now))
                publishTrack(now: now)
            case .signal(.hangup):
                for o in observers { o.reloading() }
                guard options.specPath != "-" else {
                    logger.error("reload: the spec came from standard input and cannot be read again; keeping the running one")
                    for o in observers { o.reloaded(ok: false) }
                    continue
                }
                do {
                    let next = try SpecDecoder.load(path: options.specPath)
                    log(core.reload(next, now: now))
                    _ = saveOverrides()
                    for o in observers { o.reloaded(ok: core.fileSpec == next) }
                    publishTrack(now: now)
                    // Rotated certificates: the next https probe reads its caFile again.
                    prober.reloadTrust()
                    refs = watch(core.spec, health: core.health, monitor: monitor)
                    listenPassive()
                } catch {
                    for e in error.errors { logger.error("reload: \(e.description)") }
                    logger.error("reload: the new spec is invalid; keeping the running one")
                    for o in observers { o.reloaded(ok: false) }
                }
            case .control(let request, let responder):
                switch request.command {
                case .status:
                    responder.reply(.init(exit: 0, message: "", status: writeStatus()))
                    lastStatus = now
                    statusDirty = false
                    publishedInSync = core.inSync
                    continue
                case .connections:
                    responder.reply(core.openConnections(pool: request.pool ?? "", backend: request.backend ?? ""))
                    continue
                case .set:
                    let change: DaemonCore.AdminChange
                    if let text = request.state {
                        guard let state = AdminState(rawValue: text) else {
                            responder.reply(.init(exit: 2, message: "unknown state \(DaemonCore.quoted(text)): enabled, drain or disabled"))
                            continue
                        }
                        change = .state(state, closeConnections: request.closeConnections ?? false)
                    } else if let weight = request.weight {
                        change = .weight(weight)
                    } else {
                        responder.reply(.init(exit: 64, message: "a set request needs a state or a weight"))
                        continue
                    }
                    let (reply, lines) = core.change(pool: request.pool ?? "", backend: request.backend ?? "", to: change,
                                                     force: request.force ?? false, now: now, wall: Date().timeIntervalSince1970)
                    log(lines)
                    var answer = reply
                    if let unsaved = saveOverrides() {
                        answer.exit = 1
                        answer.message += "; but it is NOT saved (\(unsaved)): a restart would undo it"
                    }
                    // A disabled backend is not probed; an enabled one again is.
                    refs = watch(core.spec, health: core.health, monitor: monitor)
                    responder.reply(answer)
                    publishTrack(now: now)
                }
            case .signal(.stop(let signal)):
                for o in observers { o.stopping() }
                control?.stop()
                monitor.stopAll()
                await prober.shutdown()
                // What the kernel holds now, not what our bookkeeping believes: a flush whose event is
                // still queued must not be reported as traffic flowing.
                let holds = (try? kernel.diff(core.desired, force: options.force))?.isEmpty == true
                if options.cleanupOnExit {
                    do {
                        try kernel.delete(tableNamed: table, force: options.force)
                        logger.notice("\(signal): stopped; deleted table inet \(table) (--cleanup-on-exit)")
                    } catch {
                        logger.error("\(signal): stopped; could not delete table inet \(table) (--cleanup-on-exit): \(error)")
                    }
                } else if holds {
                    logger.notice("\(signal): stopped; table inet \(table) stays in the kernel, traffic keeps flowing")
                } else {
                    logger.warning("\(signal): stopped; table inet \(table) stays in the kernel but does not hold what this daemon wanted (\(core.failure?.error ?? "not confirmed"))")
                }
                link?.end()
                status.remove()
                return
            }
            if case .tick = event {} else { statusDirty = true }
            // Written at most every half second (and every 10 s regardless, as a sign of life); the times
            // in it are absolute, so it does not go stale.
            // A change of the kernel's sync state is written at once: `status` must not say "out of sync"
            // (or "in sync") for half a second after it stopped being true.
            let syncChanged = core.inSync != publishedInSync
            if syncChanged || (statusDirty && now - lastStatus >= .milliseconds(500)) || now - lastStatus >= .seconds(10) {
                writeStatus()
                statusDirty = false
                lastStatus = now
                publishedInSync = core.inSync
            }
        }
    }

    func log(_ lines: [DaemonCore.Line]) {
        for line in lines { logger.log(level: line.level, "\(line.text)", metadata: line.metadata.isEmpty ? nil : line.metadata) }
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

    /// Every probe in flight and every kept http(s) probe connection is a descriptor: with thousands of
    /// backends the usual soft limit of 1024 (systemd's default) runs out, so take the hard limit.
    static func raiseDescriptorLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
