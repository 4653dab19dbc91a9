import Daemon
import NIOConcurrencyHelpers
import Prometheus

/// The `ha` section's gauges: this node's role (one-hot), track value and resync state, and per peer
/// whether it is heard, resynced and wants the same table. Set from the daemon's status document.
final class HASeries: Sendable {
    static let roles = ["MASTER", "BACKUP", "FAULT", "STOP", "UNKNOWN"]
    private let role: [(String, Gauge)]
    private let track: Gauge
    private let resynced: Gauge
    private let peers = NIOLockedValueBox<[String: (up: Gauge, resynced: Gauge, sameTable: Gauge)]>([:])

    init(registry: PrometheusCollectorRegistry) {
        role = Self.roles.map { ($0, registry.makeGauge(descriptor: Families.haRole, labels: [("role", $0)])) }
        track = registry.makeGauge(descriptor: Families.haTrack)
        resynced = registry.makeGauge(descriptor: Families.haResynced)
    }

    func set(_ state: StatusFile.HAState, registry: PrometheusCollectorRegistry) {
        for (name, g) in role { g.set(to: name == state.role ? 1 : 0) }
        track.set(to: Double(state.track ?? -254))
        resynced.set(to: state.resynced == true ? 1 : 0)
        for peer in state.peers ?? [] {
            let g = peers.withLockedValue { p in
                if p[peer.node] == nil {
                    p[peer.node] = (
                        registry.makeGauge(descriptor: Families.haPeerUp, labels: [("peer", peer.node)]),
                        registry.makeGauge(descriptor: Families.haPeerResynced, labels: [("peer", peer.node)]),
                        registry.makeGauge(descriptor: Families.haPeerSameTable, labels: [("peer", peer.node)]))
                }
                return p[peer.node]!
            }
            g.up.set(to: peer.lost ? 0 : 1)
            g.resynced.set(to: !peer.lost && peer.resynced ? 1 : 0)
            g.sameTable.set(to: !peer.lost && peer.sameTable ? 1 : 0)
        }
    }
}
