import PoolSpec
import Ruleset

/// What operators changed at run time (`nftpool backend drain|disable|enable|weight`), laid over the spec
/// file: the spec says what a backend normally is, an override what it is until someone changes it back.
/// Kept only where it differs from the spec, so `enable` of a backend the spec has enabled leaves nothing
/// behind. Persisted by the daemon (RuntimeStateFile) so that a reload or a restart keeps a drain.
public struct RuntimeOverrides: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        /// enabled / drain / disabled, or nil: the spec's.
        public var state: String?
        /// 1...1000, or nil: the spec's.
        public var weight: Int?
        /// Wall-clock seconds of the last change, for `status`.
        public var changed: Double

        public init(state: String? = nil, weight: Int? = nil, changed: Double) {
            self.state = state
            self.weight = weight
            self.changed = changed
        }
    }

    /// "pool/endpoint" (BackendRef.description) ─► override.
    public var backends: [String: Entry]

    public init(backends: [String: Entry] = [:]) {
        self.backends = backends
    }

    public var isEmpty: Bool { backends.isEmpty }

    public func entry(_ ref: BackendRef) -> Entry? { backends[ref.description] }

    /// The spec as it runs: each backend's state and weight from its override where there is one.
    public func applied(to spec: Spec) -> Spec {
        guard !backends.isEmpty else { return spec }
        var out = spec
        for p in out.pools.indices {
            for b in out.pools[p].backends.indices {
                guard let e = backends[BackendRef(out.pools[p], out.pools[p].backends[b]).description] else { continue }
                if let s = e.state.flatMap(AdminState.init(rawValue:)) { out.pools[p].backends[b].state = s }
                if let w = e.weight { out.pools[p].backends[b].weight = w }
            }
        }
        return out
    }

    /// Drops what no longer applies to `spec`: backends it no longer has, and values it now says itself.
    /// Returns the backends whose override went because the backend is gone.
    public mutating func prune(for spec: Spec) -> [String] {
        var gone: [String] = []
        var kept: [String: Entry] = [:]
        var present: [String: Backend] = [:]
        for pool in spec.pools {
            for b in pool.backends { present[BackendRef(pool, b).description] = b }
        }
        for (key, var e) in backends {
            guard let b = present[key] else {
                gone.append(key)
                continue
            }
            if e.state == b.state.rawValue { e.state = nil }
            if e.weight == b.weight { e.weight = nil }
            if e.state != nil || e.weight != nil { kept[key] = e }
        }
        backends = kept
        return gone.sorted()
    }

    /// Sets a backend's state and/or weight; a value equal to the spec's removes that part of the override.
    public mutating func set(_ ref: BackendRef, spec backend: Backend, state: AdminState?, weight: Int?, at wall: Double) {
        var e = backends[ref.description] ?? Entry(changed: wall)
        if let state { e.state = state == backend.state ? nil : state.rawValue }
        if let weight { e.weight = weight == backend.weight ? nil : weight }
        e.changed = wall
        backends[ref.description] = e.state == nil && e.weight == nil ? nil : e
    }
}
