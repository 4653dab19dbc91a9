import Foundation

/// What one node's daemon tells the others over the sync link, every advert interval (HAPeerLink). Small
/// JSON, so an operator can read it with tcpdump. The sync link is trusted as conntrackd's is: nothing
/// here is authenticated, and nothing in it can make a node take the VIPs, only hold them back.
public struct HAPeerBeat: Codable, Equatable, Sendable {
    public static let version = 1
    /// Digests per beat: 2,500 × 19 bytes of JSON ≈ 48 KB, one UDP datagram on the sync link. Up to that
    /// many connections every beat carries all of them; beyond, successive beats carry successive slices.
    public static let sampleSize = 2500
    public static let maxBytes = 65_000

    public var v = HAPeerBeat.version
    public var table: String
    public var node: String
    /// The role keepalived last announced on that node.
    public var role: String
    /// Base priority plus the track file's value, clamped to keepalived's 1...254 (0: FAULT).
    public var priority: Int
    /// Its conntrack state is complete (not starting, not just resumed from a stall, not behind a master).
    public var resynced: Bool
    /// Established TCP connections through the frontends in its kernel, when it counted them (a master
    /// counts while a peer resyncs; a resyncing node compares its own count with the master's).
    public var flows: Int?
    /// With `flows`: slice `slice` of `slices` of those connections (sorted by digest, `sampleSize` per
    /// slice), as hex digests of their original tuple (NetfilterKernel.connectionDigests). A resyncing node
    /// must hold every one of every slice: a count alone is fooled by stale entries of connections that
    /// ended while it was stopped, and a random sample missed a single absent connection (1 of 50 lost at
    /// failback in one CI trial).
    public var sample: [String]?
    public var slice: Int?
    public var slices: Int?
    /// A digest of the table it wants in its kernel: equal on every node whose probes agree.
    public var table_digest: String
    /// Increases with every beat of one daemon's life; a restart starts again at 0.
    public var seq: UInt64

    public init(
        table: String, node: String, role: String, priority: Int, resynced: Bool, flows: Int?, sample: [String]? = nil,
        slice: Int? = nil, slices: Int? = nil, tableDigest: String, seq: UInt64
    ) {
        self.sample = sample
        self.slice = slice
        self.slices = slices
        self.table = table
        self.node = node
        self.role = role
        self.priority = priority
        self.resynced = resynced
        self.flows = flows
        self.table_digest = tableDigest
        self.seq = seq
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Array((try? encoder.encode(self)) ?? Data())
    }

    /// nil for anything that is not a beat of this version (a stray datagram, another tool on the port).
    public static func decode(_ bytes: [UInt8]) -> HAPeerBeat? {
        guard bytes.count <= maxBytes, let beat = try? JSONDecoder().decode(HAPeerBeat.self, from: Data(bytes)),
            beat.v == version, beat.node.count <= 64, beat.table.count <= 64, (beat.sample?.count ?? 0) <= sampleSize
        else { return nil }
        return beat
    }
}
