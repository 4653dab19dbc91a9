import Foundation
import PoolSpec
import Probes
import Ruleset

/// What the running daemon publishes for `nftpool status`: per pool, each backend's admin state, health
/// (with the last probe's reason and since when), weight and slots held in the kernel, and whether the
/// kernel holds what the daemon wants. A JSON file only root can read (0600 in a 0700 directory),
/// replaced atomically. Times are absolute, so a reader computes "for how long" at its own now.
public struct StatusFile: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public static func defaultPath(table: String, namespace: UInt64) -> String {
        "\(DaemonLock.directory)/\(table).\(namespace).json"
    }

    public struct Document: Codable, Sendable {
        public var table: String
        public var pid: Int32
        public var spec: String
        /// The network namespace the daemon runs in (`ip netns` name), nil for the one it was started in.
        public var netns: String?
        /// The lock the daemon holds for its life: whether it still runs is asked of the lock, not of a
        /// pid that may have been reused (or be in another pid namespace).
        public var lock: String?
        /// The control socket (`nftpool backend …`), when the daemon serves one.
        public var control: String?
        /// Wall-clock seconds of this write.
        public var updated: Double
        public var kernel: KernelState
        /// With a spec's `ha` section: this node and what keepalived made of it.
        public var ha: HAState?
        public var pools: [PoolStatus]
    }

    public struct HAState: Codable, Sendable {
        public var node: String
        /// MASTER / BACKUP / FAULT / STOP from keepalived's notify fifo; UNKNOWN before its first line.
        public var role: String
        public var roleSince: Double
        /// What the daemon last wrote to the track file (0 may hold the VIPs, -254 must not, -253 only if no
        /// peer does, 253 holds them for a peer that is not resynced) and why.
        public var track: Int?
        public var trackReason: String?
        /// This node's conntrack state is complete (HAGate), or why not.
        public var resynced: Bool?
        public var resyncPending: String?
        /// The other nodes as their daemons' beats describe them.
        public var peers: [PeerState]?
    }

    public struct PeerState: Codable, Sendable {
        public var node: String
        public var role: String
        public var priority: Int
        public var resynced: Bool
        /// Wall-clock seconds of its last beat; nil: never heard.
        public var heard: Double?
        /// Its beats stopped (three adverts and a bit).
        public var lost: Bool
        /// It wants the same table as this node (digest of the whole table).
        public var sameTable: Bool
    }

    public struct KernelState: Codable, Sendable {
        /// The kernel holds the table the daemon wants.
        public var inSync: Bool
        /// Since when it does not (wall clock), and the kernel's last refusal.
        public var outOfSyncSince: Double?
        public var error: String?
        public var refusedAttempts: Int
        /// Foreign changes found and restored since the daemon started.
        public var repairs: Int
    }

    public struct PoolStatus: Codable, Sendable {
        public var name: String
        public var slots: Int
        public var backends: [BackendStatus]
    }

    public struct BackendStatus: Codable, Sendable {
        public var endpoint: String
        public var state: String
        public var weight: Int
        /// "spec", or "runtime" when `nftpool backend …` set it (and since when, wall clock).
        public var stateFrom: String?
        public var weightFrom: String?
        public var overrideSince: Double?
        /// up / down / unchecked (no health check in the spec): what the probes say.
        public var health: String
        public var reason: String
        /// Wall-clock seconds when the backend entered its current health.
        public var sinceTime: Double?
        /// Seconds in the current health state, as of the reader's now (filled in by `nftpool status`).
        public var since: Double?
        /// Slots the kernel's table gives it (from our last confirmed commit).
        public var slots: Int
        /// Flap damping holds it down (its probes say up) until then, wall clock.
        public var heldUntil: Double?
        /// Slowstart: the share of its slots it has so far (0 < ramp < 1), while ramping up.
        public var ramp: Double?
        /// The kernel's counters towards this backend (filled in by `nftpool status`, not the daemon).
        public var packets: UInt64?
        public var bytes: UInt64?
    }

    /// Writes the file; returns what it wrote (the daemon's observers get the same document).
    @discardableResult
    func write(_ core: DaemonCore, specPath: String, netns: String?, lock: String, control: String? = nil, monitor: HealthMonitor, ha: HAState? = nil) -> Document {
        let probes = monitor.status()
        let now = ContinuousClock.now
        let wall = Date().timeIntervalSince1970
        let kernelTable = core.applied ?? core.desired
        var pools: [PoolStatus] = []
        let heldByPool = core.applied.map { SlotMembership.held(core.spec, in: $0) } ?? [:]
        for pool in core.spec.pools {
            let held = heldByPool[pool.name] ?? [:]
            pools.append(PoolStatus(
                name: pool.name, slots: kernelTable.set(named: RulesetBuilder.slotMapName(pool))?.elements.count ?? 0,
                backends: pool.backends.map { b in
                    let ref = BackendRef(pool, b)
                    let probe = probes[ref.description]
                    let override = core.overrides.entry(ref)
                    return BackendStatus(
                        endpoint: b.endpoint, state: b.state.rawValue, weight: b.weight,
                        stateFrom: override?.state == nil ? "spec" : "runtime", weightFrom: override?.weight == nil ? "spec" : "runtime",
                        overrideSince: override?.changed,
                        health: pool.healthCheck == nil ? "unchecked" : (core.health.down.contains(ref) ? "down" : "up"),
                        reason: probe?.reason ?? (pool.healthCheck == nil ? "no health check" : "not probed"),
                        sinceTime: probe.map { wall - Self.seconds($0.since.duration(to: now)) },
                        since: nil, slots: held[b.endpoint, default: 0],
                        heldUntil: core.damper.heldUntil(ref).map { wall + Self.seconds(now.duration(to: $0)) },
                        ramp: core.health.ramp[ref], packets: nil, bytes: nil)
                }))
        }
        let failure = core.failure
        let kernel = KernelState(
            inSync: core.inSync,
            outOfSyncSince: failure.map { wall - Self.seconds($0.since.duration(to: now)) },
            error: failure?.error, refusedAttempts: failure?.attempts ?? 0, repairs: core.repairs)
        let doc = Document(table: core.spec.table, pid: getpid(), spec: specPath, netns: netns, lock: lock, control: control, updated: wall, kernel: kernel, ha: ha, pools: pools)
        guard let data = try? JSONEncoder().encode(doc) else { return doc }
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try? AtomicFile.write(Array(data), to: path, mode: 0o600)
        return doc
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    public static func read(path: String) throws -> Document {
        try JSONDecoder().decode(Document.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Every status file a daemon left in the directory.
    public static func all(in directory: String = DaemonLock.directory) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".json") }.sorted().map { "\(directory)/\($0)" }
    }

    /// Whether the daemon that wrote `doc` still runs.
    public static func isLive(_ doc: Document) -> Bool {
        if let lock = doc.lock { return DaemonLock.holder(path: lock) != nil }
        return kill(doc.pid, 0) == 0 || errno == EPERM
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
