import Foundation
import PoolSpec
import Probes
import Ruleset

/// What the running daemon publishes for `nftpool status`: per pool, each backend's admin state, health
/// (with the last probe's reason and since when), weight and slots held. A JSON file only root can read
/// (0600 in a 0700 directory), replaced atomically after every change.
public struct StatusFile: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public static func defaultPath(table: String) -> String { "/run/nftpool/\(table).json" }

    public struct Document: Codable, Sendable {
        public var table: String
        public var pid: Int32
        public var spec: String
        public var updated: Double
        public var pools: [PoolStatus]
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
        /// up / down / unchecked (no health check in the spec)
        public var health: String
        public var reason: String
        /// Seconds in the current health state (as of `updated`).
        public var since: Double?
        public var slots: Int
        /// The kernel's counters towards this backend (filled in by `nftpool status`, not the daemon).
        public var packets: UInt64?
        public var bytes: UInt64?
    }

    func write(spec: Spec, specPath: String, table: Table, health: Health, monitor: HealthMonitor) async {
        let probes = monitor.status()
        let now = ContinuousClock.now
        var pools: [PoolStatus] = []
        for pool in spec.pools {
            let map = table.set(named: RulesetBuilder.slotMapName(pool))
            var held: [String: Int] = [:]
            for element in map?.elements ?? [] {
                if case .values(let v)? = element.data, case .address(let a) = v[0], case .port(let p) = v[1] {
                    held[Backend.endpoint(a, p), default: 0] += 1
                }
            }
            let anyEligible = pool.backends.contains { health.isEligible($0, in: pool) }
            pools.append(PoolStatus(
                name: pool.name, slots: map?.elements.count ?? 0,
                backends: pool.backends.map { b in
                    let id = BackendRef(pool, b).description
                    let probe = probes[id]
                    return BackendStatus(
                        endpoint: b.endpoint, state: b.state.rawValue, weight: b.weight,
                        health: pool.healthCheck == nil ? "unchecked" : (health.down.contains(BackendRef(pool, b)) ? "down" : "up"),
                        reason: probe?.reason ?? (pool.healthCheck == nil ? "no health check" : "not probed"),
                        since: probe.map { Self.seconds($0.since.duration(to: now)) },
                        slots: anyEligible || pool.whenAllDown == .failOpen ? held[b.endpoint, default: 0] : 0,
                        packets: nil, bytes: nil)
                }))
        }
        let doc = Document(table: spec.table, pid: getpid(), spec: specPath, updated: Date().timeIntervalSince1970, pools: pools)
        guard let data = try? JSONEncoder().encode(doc) else { return }
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let temp = path + ".tmp"
        guard FileManager.default.createFile(atPath: temp, contents: data, attributes: [.posixPermissions: 0o600]) else { return }
        _ = rename(temp, path)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    public static func read(path: String) throws -> Document {
        try JSONDecoder().decode(Document.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
