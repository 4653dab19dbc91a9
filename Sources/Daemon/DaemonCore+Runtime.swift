import Foundation
import Kernel
import PoolSpec
import Ruleset

/// Runtime control: `nftpool backend drain|disable|enable|weight` as the core sees it. A change is one
/// transaction on the same incremental path as a health flip, and stays an override of the spec file
/// (RuntimeOverrides) until changed back.
extension DaemonCore {
    public enum AdminChange: Equatable, Sendable {
        case state(AdminState, closeConnections: Bool)
        case weight(Int)
    }

    /// Applies an operator's change. The reply carries the exit status for the CLI; the lines go to the log.
    /// Refused (nothing changes): an unknown pool or backend, a weight out of range, and taking the last
    /// serving backend of a pool out of service without `force`.
    public func change(pool poolName: String, backend name: String, to change: AdminChange, force: Bool,
                       now: ContinuousClock.Instant, wall: Double) -> (reply: ControlMessage.Reply, lines: [Line]) {
        let found = resolve(pool: poolName, backend: name)
        guard case .success(let (pool, backend)) = found else {
            if case .failure(let refusal) = found { return (refusal.reply, []) }
            return (ControlMessage.Reply(exit: 1, message: "unreachable"), [])
        }
        let ref = BackendRef(pool, backend)
        guard let fileBackend = fileSpec.pools.first(where: { $0.name == pool.name })?.backends.first(where: { $0.endpoint == backend.endpoint })
        else { return (ControlMessage.Reply(exit: 1, message: "pool \(pool.name) backend \(backend.endpoint) is not in the spec file"), []) }

        var what: String
        var next = overrides
        var closing = false
        switch change {
        case .weight(let w):
            guard Backend.weights.contains(w) else {
                return (ControlMessage.Reply(exit: 2, message: "weight \(w) is out of range: a weight is \(Backend.weights.lowerBound) to \(Backend.weights.upperBound)"), [])
            }
            what = backend.weight == w ? "weight \(w) (unchanged)" : "weight \(backend.weight) → \(w)"
            next.set(ref, spec: fileBackend, state: nil, weight: w, at: wall)
        case .state(let state, let close):
            if state != .enabled, health.isEligible(backend, in: pool), !force {
                let others = pool.backends.filter { $0.endpoint != backend.endpoint && health.isEligible($0, in: pool) }
                if others.isEmpty {
                    return (ControlMessage.Reply(
                        exit: 1,
                        message: "refused: \(backend.endpoint) is the last serving backend of pool \(pool.name); its new connections would get \(pool.whenAllDown.rawValue). Add --force to do it anyway",
                        backend: backend.endpoint), [])
                }
            }
            what = backend.state == state ? "\(state.rawValue) (unchanged)" : "\(backend.state.rawValue) → \(state.rawValue)"
            next.set(ref, spec: fileBackend, state: state, weight: nil, at: wall)
            // Not probed while disabled: its last health is stale, so it serves again only after its checks rise.
            if backend.state == AdminState.disabled, state != .disabled, pool.healthCheck != nil { health.down.insert(ref) }
            // Back in service from drain: ramp up (from disabled it ramps once its checks rise).
            if state == .enabled, backend.state != .enabled, !health.down.contains(ref) { startRamp(ref, in: pool, now: now) }
            if state != .enabled { stopRamp(ref) }
            // Disabled, its probes stop; back from disabled they start over: a hold from before means nothing.
            if state == .disabled || backend.state == .disabled { damper.forget(ref) }
            if state == .disabled, close {
                pendingClose.insert(ref)
                closing = true
            }
        }
        let source = next.entry(ref) == nil ? "as the spec says" : "runtime override"
        let running = next.applied(to: fileSpec)
        guard running != spec || closing else {
            return (ControlMessage.Reply(exit: 0, message: "pool \(pool.name) backend \(backend.endpoint): \(what); nothing to do", backend: backend.endpoint), [])
        }
        overrides = next
        spec = running
        // The whole table, not only this pool's map: a weight can change the slot map's size (and so the rule).
        desired = RulesetBuilder.table(for: spec, health: health)
        let (outcome, extra) = sync(now: now)
        let text = "pool \(pool.name) backend \(backend.endpoint): \(what) (\(source)); \(outcome)"
        let exit: Int32 = failure == nil ? 0 : 1
        let message = failure == nil ? text : text + "; the daemon keeps retrying"
        return (ControlMessage.Reply(exit: exit, message: message, backend: backend.endpoint),
                [Line(level: .notice, text: text)] + extra)
    }

    /// How many of the backend's connections through its pool's frontends are still open.
    public func openConnections(pool poolName: String, backend name: String) -> ControlMessage.Reply {
        switch resolve(pool: poolName, backend: name) {
        case .failure(let refusal):
            return refusal.reply
        case .success(let (pool, backend)):
            do {
                let n = try kernel.countConnections(to: [.init(address: backend.address, port: backend.port, frontends: pool.frontends)])
                return ControlMessage.Reply(
                    exit: 0, message: "pool \(pool.name) backend \(backend.endpoint): \(n[0]) open connection\(n[0] == 1 ? "" : "s")",
                    backend: backend.endpoint, connections: n[0])
            } catch {
                return ControlMessage.Reply(exit: 1, message: "cannot count the connections of \(backend.endpoint): \(error)", backend: backend.endpoint)
            }
        }
    }

    /// A pool by name and one of its backends by endpoint, or by address when the pool has it only once.
    /// Why a request names nothing: the reply that says so.
    struct Refusal: Error {
        var reply: ControlMessage.Reply
    }

    func resolve(pool poolName: String, backend name: String) -> Result<(Pool, Backend), Refusal> {
        guard let pool = spec.pools.first(where: { $0.name == poolName }) else {
            let names = spec.pools.prefix(10).map(\.name).joined(separator: ", ") + (spec.pools.count > 10 ? ", …" : "")
            return .failure(Refusal(reply: ControlMessage.Reply(exit: 2, message: "no pool \(Self.quoted(poolName)) in table inet \(spec.table) (pools: \(names))")))
        }
        if let b = pool.backends.first(where: { $0.endpoint == name }) { return .success((pool, b)) }
        let bare = name.hasPrefix("[") && name.hasSuffix("]") ? String(name.dropFirst().dropLast()) : name
        let byAddress = IPAddress(bare).map { a in pool.backends.filter { $0.address == a } } ?? []
        if byAddress.count == 1 { return .success((pool, byAddress[0])) }
        if byAddress.count > 1 {
            return .failure(Refusal(reply: ControlMessage.Reply(exit: 2, message: "pool \(pool.name) has \(byAddress.count) backends at \(bare) (\(byAddress.map(\.endpoint).joined(separator: ", "))): name one as ADDRESS:PORT")))
        }
        let names = pool.backends.prefix(10).map(\.endpoint).joined(separator: ", ") + (pool.backends.count > 10 ? ", …" : "")
        return .failure(Refusal(reply: ControlMessage.Reply(exit: 2, message: "pool \(pool.name) has no backend \(Self.quoted(name)) (backends: \(names))")))
    }

    /// A name from the command line, shown safely (no control characters, bounded length).
    public static func quoted(_ s: String) -> String {
        let cleaned = String(s.unicodeScalars.prefix(80).map { $0.properties.generalCategory == .control ? "?" : Character($0) })
        return "\"\(cleaned)\(s.unicodeScalars.count > 80 ? "…" : "")\""
    }
}
