/// The pool spec, version 1, after decoding and validation: every default filled in, every value checked.
/// Field names and defaults are the contract in docs/DESIGN.md.
public struct Spec: Equatable, Sendable {
    public var table: String
    public var pools: [Pool]
    /// nil: a single node, as before the `ha` section existed.
    public var ha: HA?

    public init(table: String = Spec.defaultTable, pools: [Pool], ha: HA? = nil) {
        self.table = table
        self.pools = pools
        self.ha = ha
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
    /// A backend that comes back (up after down, enabled after drain or disabled) takes its share of new
    /// connections in steps over this long, not all at once; nil: at once.
    public var slowstart: Duration?

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

    /// The weights a backend may have (the spec's and `nftpool backend weight`).
    public static let weights = 1...1000

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
    /// Passive health: errors the kernel sees on clients' connections mark the backend down at once.
    public var passive: PassiveCheck?
    /// Flap damping: a backend that keeps falling is held down longer each time before it serves again.
    public var damping: Damping?

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

/// `healthCheck.damping`: once a backend has fallen `falls` times within `within`, its next rise is held
/// down for `hold`, doubled at each further fall while it keeps flapping, up to `maxHold`; a backend that
/// stays up for `within` is forgiven.
public struct Damping: Equatable, Sendable {
    public var falls: Int
    public var within: Duration
    public var hold: Duration
    public var maxHold: Duration

    public init(falls: Int = 3, within: Duration = .seconds(60), hold: Duration = .seconds(5), maxHold: Duration = .seconds(120)) {
        self.falls = falls
        self.within = within
        self.hold = hold
        self.maxHold = maxHold
    }
}

/// `healthCheck.passive`: `errorLimit` failures of clients' connections within `within` take an up backend
/// down in one transaction; it comes back through the active check's `rise`. A failure is a TCP reset from
/// the backend to a connection that never got established, or an ICMP destination unreachable from or
/// about it, seen by the kernel on the DNATed flow (nftpool's table logs them to the daemon over NFLOG).
public struct PassiveCheck: Equatable, Sendable {
    public var errorLimit: Int
    public var within: Duration

    public init(errorLimit: Int = 3, within: Duration = .seconds(10)) {
        self.errorLimit = errorLimit
        self.within = within
    }
}

/// The `ha` section: two or more nodes run the same spec; keepalived (VRRPv3, unicast) moves every frontend
/// address and `snatAddress` together, conntrackd (FTFW) replicates connection state over `sync.interface`.
public struct HA: Equatable, Sendable {
    /// Client side: the VIPs (every frontend address) live here and VRRP adverts go here.
    public var interface: String
    /// Where `snatAddress` lives; defaults to `interface`.
    public var backendInterface: String
    /// The floating source address toward backends; moves with the VIPs.
    public var snatAddress: IPAddress
    /// VRRP virtual_router_id, 1..255.
    public var routerId: Int
    /// VRRPv3 advert interval: 10ms..40s in whole centiseconds.
    public var advertInterval: Duration
    public var sync: HASync
    /// Two or more; names, addresses, sync addresses and priorities all distinct.
    public var nodes: [HANode]
    /// A node whose probes see no serving backend for a pool gives up the VIPs.
    public var yieldWhenAllDown: Bool

    public init(
        interface: String, backendInterface: String? = nil, snatAddress: IPAddress, routerId: Int,
        advertInterval: Duration, sync: HASync, nodes: [HANode], yieldWhenAllDown: Bool = false
    ) {
        self.interface = interface
        self.backendInterface = backendInterface ?? interface
        self.snatAddress = snatAddress
        self.routerId = routerId
        self.advertInterval = advertInterval
        self.sync = sync
        self.nodes = nodes
        self.yieldWhenAllDown = yieldWhenAllDown
    }

    public func node(named name: String) -> HANode? { nodes.first { $0.name == name } }

    /// Every distinct frontend address of the spec, sorted (IPv4 before IPv6): what keepalived moves.
    public static func virtualAddresses(of pools: [Pool]) -> [IPAddress] {
        Set(pools.flatMap { $0.frontends.map(\.address) }).sorted()
    }
}

public struct HASync: Equatable, Sendable {
    /// The link conntrackd replicates connection state over.
    public var interface: String

    public init(interface: String) { self.interface = interface }
}

public struct HANode: Equatable, Sendable {
    public var name: String
    /// This node's own address on `ha.interface`: VRRP adverts' source and destination.
    public var address: IPAddress
    /// This node's own address on `ha.sync.interface`: conntrackd's.
    public var syncAddress: IPAddress
    /// VRRP priority 1..254; the highest live node holds the VIPs.
    public var priority: Int

    public init(name: String, address: IPAddress, syncAddress: IPAddress, priority: Int) {
        self.name = name
        self.address = address
        self.syncAddress = syncAddress
        self.priority = priority
    }
}
