import PoolSpec

/// The typed nftables objects nftpool programs: one table with its sets, maps and chains. The renderer
/// prints them as nft text, the kernel layer encodes them as netlink; both read this model and nothing else.
public struct Table: Equatable, Sendable {
    public var name: String
    /// Marks the table as nftpool's (the kernel layer refuses to touch a same-named table without it).
    public var comment: String
    public var sets: [NamedSet]
    public var chains: [Chain]

    public init(name: String, comment: String, sets: [NamedSet], chains: [Chain]) {
        self.name = name
        self.comment = comment
        self.sets = sets
        self.chains = chains
    }

    public func set(named name: String) -> NamedSet? { sets.first { $0.name == name } }
    public func chain(named name: String) -> Chain? { chains.first { $0.name == name } }
}

/// The data types nftpool's sets use, by their nft names.
public enum DataType: String, Equatable, Sendable {
    case ipv4Addr = "ipv4_addr"
    case ipv6Addr = "ipv6_addr"
    case inetProto = "inet_proto"
    case inetService = "inet_service"

    public static func address(_ family: IPFamily) -> DataType { family == .ipv4 ? .ipv4Addr : .ipv6Addr }
}

/// Which transport header a slot map's port is read as; `th` when a pool mixes tcp and udp.
public enum PortHeader: String, Equatable, Sendable {
    case tcp, udp, th

    public static func of(_ protocols: [L4Protocol]) -> PortHeader {
        switch Set(protocols) {
        case [.tcp]: return .tcp
        case [.udp]: return .udp
        default: return .th
        }
    }
}

public enum SetKey: Equatable, Sendable {
    /// `type a . b . c`
    case types([DataType])
    /// `typeof numgen inc mod N`: a slot index, a plain 32-bit integer.
    case slotIndex(modulus: Int)
}

public enum SetData: Equatable, Sendable {
    /// `: ipv4_addr`
    case types([DataType])
    /// `: verdict`
    case verdict
    /// `: ip daddr . tcp dport` (typeof): where a slot sends the connection.
    case endpoint(IPFamily, PortHeader)
}

public struct NamedSet: Equatable, Sendable {
    public var name: String
    public var key: SetKey
    /// nil for a plain set; present for a map.
    public var data: SetData?
    /// Every element carries a packet/byte counter.
    public var counter: Bool
    /// A fixed capacity (`size N`). Slot maps declare it: their element count never changes, and a set of
    /// known size gets the kernel's fixed hash, which takes 80,000 slot elements in about half the time
    /// of the resizable one.
    public var size: Int?
    public var elements: [Element]

    public init(
        name: String, key: SetKey, data: SetData? = nil, counter: Bool = false, size: Int? = nil,
        elements: [Element] = []
    ) {
        self.name = name
        self.key = key
        self.data = data
        self.counter = counter
        self.size = size
        self.elements = elements
    }

    public var isMap: Bool { data != nil }
}

public enum Value: Hashable, Sendable, Comparable {
    case address(IPAddress)
    case proto(L4Protocol)
    case port(UInt16)
    case index(Int)

    public static func < (a: Value, b: Value) -> Bool {
        switch (a, b) {
        case (.address(let x), .address(let y)): return x < y
        case (.proto(let x), .proto(let y)): return x < y
        case (.port(let x), .port(let y)): return x < y
        case (.index(let x), .index(let y)): return x < y
        default: return a.order < b.order
        }
    }

    private var order: Int {
        switch self {
        case .address: return 0
        case .proto: return 1
        case .port: return 2
        case .index: return 3
        }
    }
}

public enum Verdict: Hashable, Sendable {
    case goto(String)
    case drop
}

public enum ElementData: Hashable, Sendable {
    case values([Value])
    case verdict(Verdict)
}

public struct Element: Hashable, Sendable {
    public var key: [Value]
    public var data: ElementData?

    public init(key: [Value], data: ElementData? = nil) {
        self.key = key
        self.data = data
    }
}

public struct Chain: Equatable, Sendable {
    public var name: String
    /// nil for a regular chain, reached only by goto.
    public var base: BaseChain?
    public var rules: [Rule]

    public init(name: String, base: BaseChain? = nil, rules: [Rule]) {
        self.name = name
        self.base = base
        self.rules = rules
    }
}

public struct BaseChain: Equatable, Sendable {
    public enum Kind: String, Sendable { case nat, filter }
    public enum Hook: String, Sendable { case prerouting, input, output, postrouting, forward }

    public var kind: Kind
    public var hook: Hook
    public var priority: Int

    public init(kind: Kind, hook: Hook, priority: Int) {
        self.kind = kind
        self.hook = hook
        self.priority = priority
    }
}

/// How a pool's dnat rule picks a slot.
public enum SlotSelector: Equatable, Sendable {
    case numgenInc
    case numgenRandom
    /// `jhash ip saddr [. tcp sport] mod M seed S`; the seed is pinned so every node and every re-creation
    /// of the rule hashes a client to the same slot.
    case jhash([HashField], seed: UInt32)
}

/// The rules nftpool writes. Each case is one rule shape with a fixed expression list, so the renderer
/// and the netlink encoder stay in step and a rule read back from the kernel maps to exactly one case.
public enum Rule: Equatable, Sendable {
    /// `ip daddr . meta l4proto . th dport vmap @frontends-v4`
    case dispatch(IPFamily, map: String)
    /// `ct status dnat ct original ip daddr @masquerade-v4 masquerade`
    case masquerade(IPFamily, set: String)
    /// `ct status dnat snat ip to ct original ip daddr map @snat-v4`
    case snat(IPFamily, map: String)
    /// `ct status dnat ip daddr . meta l4proto . th dport @backends-v4` (the set's per-element counters count)
    case countBackends(IPFamily, set: String)
    /// `meta l4proto tcp reject with tcp reset`
    case rejectWithTCPReset
    /// `reject` (ICMP/ICMPv6 port unreachable)
    case reject
    /// `meta l4proto tcp counter dnat ip to numgen inc mod 66 map @pool-x-slots comment "pool x"`
    case dnat(SlotDNAT)
    /// `meta l4proto tcp ip daddr @floating-v4 ct state invalid,new tcp flags & (fin|syn|rst|ack) != syn drop`:
    /// with `ha`, a packet of an established connection whose state this node does not hold yet (it reached
    /// the new master before conntrackd's copy) is dropped, so TCP retransmits it, instead of being picked
    /// up loose and answered with a reset by the local stack or a different backend.
    case dropUnsynced(IPFamily, set: String)
    /// `meta nfproto ipv4 ct direction reply ct status dnat / assured,dnat tcp flags rst ct reply ip saddr .
    /// ct reply proto-src @passive-v4 limit rate 200/second burst 50 packets log group G snaplen 128`: a backend
    /// resetting a connection that never got established (its server is gone) is logged to the daemon.
    case passiveReset(IPFamily, set: String, log: PassiveLog)
    /// `ct direction reply ct status dnat ct state related icmp type destination-unreachable icmp code !=
    /// frag-needed ct reply ip saddr . ct reply proto-src @passive-v4 limit … log group G snaplen 128`: an ICMP
    /// error from or about a backend, on a DNATed flow (path MTU messages are not failures).
    case passiveUnreachable(IPFamily, set: String, log: PassiveLog)
}

/// Where passive-health rules log, and how much: the NFLOG group the daemon listens on, a rate limit so a
/// flood of resets costs bounded CPU, and enough of each packet for the headers (IPv6 + ICMPv6 + the
/// inner IPv6 and transport headers: 96 bytes).
public struct PassiveLog: Equatable, Sendable {
    public var group: UInt16
    public var ratePerSecond: Int
    public var burst: Int
    public var snaplen: Int

    public init(group: UInt16, ratePerSecond: Int = 200, burst: Int = 50, snaplen: Int = 128) {
        self.group = group
        self.ratePerSecond = ratePerSecond
        self.burst = burst
        self.snaplen = snaplen
    }
}

public struct SlotDNAT: Equatable, Sendable {
    public var family: IPFamily
    /// One rule per protocol: `meta l4proto { tcp, udp }` would need an anonymous set in the batch.
    public var proto: L4Protocol
    public var selector: SlotSelector
    public var modulus: Int
    public var map: String
    public var comment: String

    public init(
        family: IPFamily, proto: L4Protocol, selector: SlotSelector, modulus: Int, map: String,
        comment: String
    ) {
        self.family = family
        self.proto = proto
        self.selector = selector
        self.modulus = modulus
        self.map = map
        self.comment = comment
    }
}
