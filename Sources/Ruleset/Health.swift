import PoolSpec

/// A backend of a pool, named the way health results, logs and status name it.
public struct BackendRef: Hashable, Sendable, CustomStringConvertible {
    public var pool: String
    public var endpoint: String

    public init(pool: String, endpoint: String) {
        self.pool = pool
        self.endpoint = endpoint
    }

    public init(_ pool: Pool, _ backend: Backend) {
        self.init(pool: pool.name, endpoint: backend.endpoint)
    }

    public var description: String { "\(pool)/\(endpoint)" }
}

/// What the probes say: the backends currently failing their checks. Everything else counts as up.
public struct Health: Equatable, Sendable {
    public var down: Set<BackendRef>
    /// Slowstart: backends taking only this share (0 < share < 1) of their slots so far.
    public var ramp: [BackendRef: Double]

    public init(down: Set<BackendRef> = [], ramp: [BackendRef: Double] = [:]) {
        self.down = down
        self.ramp = ramp
    }

    public static let allUp = Health()

    /// Takes new connections: enabled by the spec and not failing its checks.
    public func isEligible(_ backend: Backend, in pool: Pool) -> Bool {
        backend.state == .enabled && !down.contains(BackendRef(pool, backend))
    }
}
