/// The pool spec, version 1, after decoding and validation: every default filled in, every value checked.
/// Field names and defaults are the contract in docs/DESIGN.md.
public struct Spec: Equatable, Sendable {
    public var table: String
    public var pools: [Pool]

    public init(table: String = Spec.defaultTable, pools: [Pool]) {
        self.table = table
        self.pools = pools
    }

    public static let defaultTable = "nftpool"
}

public struct Pool: Equatable, Sendable {
    public var name: String
    public var frontends: [Frontend]
    public var scheduler: Scheduler
    public var hash: [HashField]
    public var slots: SlotCount
    public var snat: SNAT
    public var whenAllDown: AllDownAction
    public var onBackendDown: BackendDownAction
    public var backends: [Backend]
    public var healthCheck: HealthCheck?

    public init(
        name: String, frontends: [Frontend], scheduler: Scheduler = .roundRobin, hash: [HashField] = [.saddr],
        slots: SlotCount = .auto, snat: SNAT = .masquerade, whenAllDown: AllDownAction = .reject,
        onBackendDown: BackendDownAction = .keepConnections, backends: [Backend], healthCheck: HealthCheck? = nil
    ) {
        self.name = name
        self.frontends = frontends
        self.scheduler = scheduler
        self.hash = hash
        self.slots = slots
        self.snat = snat
        self.whenAllDown = whenAllDown
        self.onBackendDown = onBackendDown
        self.backends = backends
        self.healthCheck = healthCheck
    }

    /// Validation guarantees every frontend and backend of a pool share one family.
    public var family: IPFamily { frontends.first?.address.family ?? .ipv4 }
}

public enum L4Protocol: String, Equatable, Hashable, Sendable, CaseIterable, Comparable {
    case tcp, udp
    public static func < (a: L4Protocol, b: L4Protocol) -> Bool { a.rawValue < b.rawValue }
}

public struct Frontend: Equatable, Hashable, Sendable {
    public var address: IPAddress
    public var port: UInt16
    public var `protocol`: L4Protocol

    public init(address: IPAddress, port: UInt16, protocol: L4Protocol = .tcp) {
        self.address = address
        self.port = port
        self.protocol = `protocol`
    }
}

public enum Scheduler: String, Equatable, Sendable, CaseIterable {
    case roundRobin = "round-robin"
    case random
    case sourceHash = "source-hash"
}

public enum HashField: String, Equatable, Sendable, CaseIterable {
    case saddr, sport
}

public enum SlotCount: Equatable, Sendable {
    case auto
    case fixed(Int)
}

public enum SNAT: Equatable, Sendable {
    case masquerade
    case none
    case address(IPAddress)

    public var text: String {
        switch self {
        case .masquerade: return "masquerade"
        case .none: return "none"
        case .address(let a): return a.description
        }
    }
}

public enum AllDownAction: String, Equatable, Sendable, CaseIterable {
    case reject, drop
    case failOpen = "fail-open"
}

public enum BackendDownAction: String, Equatable, Sendable, CaseIterable {
    case keepConnections = "keep-connections"
    case closeConnections = "close-connections"
}

public enum AdminState: String, Equatable, Sendable, CaseIterable {
    case enabled, drain, disabled
}

public struct Backend: Equatable, Hashable, Sendable {
    public var address: IPAddress
    /// Always set after decoding: defaults to the pool's frontend port.
    public var port: UInt16
    public var weight: Int
    public var state: AdminState

    public init(address: IPAddress, port: UInt16, weight: Int = 1, state: AdminState = .enabled) {
        self.address = address
        self.port = port
        self.weight = weight
        self.state = state
    }

    /// How logs, comments and errors name a backend.
    public var endpoint: String { Self.endpoint(address, port) }

    /// `10.0.0.1:80`, `[fd00::1]:80`: also how the kernel's and the daemon's views name backends.
    public static func endpoint(_ address: IPAddress, _ port: UInt16) -> String {
        address.family == .ipv6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}

public enum HealthCheckType: String, Equatable, Sendable, CaseIterable {
    case tcp, http, https
}

public struct HealthCheck: Equatable, Sendable {
    public var type: HealthCheckType
    /// nil: the backend's own port.
    public var port: UInt16?
    public var path: String
    public var expectStatus: [Int]
    /// Host header and TLS SNI; empty: the backend address.
    public var host: String
    public var caFile: String?
    public var insecureSkipVerify: Bool
    public var interval: Duration
    public var fastInterval: Duration
    public var timeout: Duration
    public var rise: Int
    public var fall: Int

    public init(
        type: HealthCheckType, port: UInt16? = nil, path: String = "/", expectStatus: [Int] = [200],
        host: String = "", caFile: String? = nil, insecureSkipVerify: Bool = false,
        interval: Duration = .seconds(2), fastInterval: Duration = .milliseconds(500), timeout: Duration = .seconds(1),
        rise: Int = 2, fall: Int = 2
    ) {
        self.type = type
        self.port = port
        self.path = path
        self.expectStatus = expectStatus
        self.host = host
        self.caFile = caFile
        self.insecureSkipVerify = insecureSkipVerify
        self.interval = interval
        self.fastInterval = fastInterval
        self.timeout = timeout
        self.rise = rise
        self.fall = fall
    }
}
