import HAConfig
import PoolSpec

/// What this node tells keepalived through the track file, decided from what the daemon knows: its table,
/// its probes, its role, whether its conntrack state is complete, and its peers' beats (HAPeerBeat).
/// Pure: the shell feeds it events with their time and writes what it returns.
///
/// Two rules keep a node from taking the VIPs while it lacks connections (keepalived #237/#1966):
/// - A node whose state may be incomplete (just started, resumed from a stall, or back in touch with a
///   master that outranks it) is *pending*: track -253, priority 1. It leaves pending when its count of
///   established connections through the frontends reaches the master's (twice in a row), or when no
///   master is there to resync from.
/// - A master *holds* (priority one above the peer's) while a peer that could preempt it is not heard or
///   not resynced. A hung master that resumes comes back with its old priority before its daemon can
///   write anything; only an advert of higher priority from the survivor makes it yield at once. The
///   hold is one above what that peer could come back with (its base, or a hold of its own it had when it
///   hung), not 254: two holders at 254 would tie, and the tie goes to the higher address. When that peer
///   has said "resynced" for a peer timeout, the hold ends and it may preempt: failback.
public struct HAGate: Sendable {
    public typealias Instant = ContinuousClock.Instant

    public struct Peer: Sendable {
        public var beat: HAPeerBeat
        public var heardAt: Instant
        /// Since when its beats have said "resynced" without a break (nil: the last one did not).
        public var resyncedSince: Instant?
    }

    public enum Resync: Equatable, Sendable {
        case pending(since: Instant, why: String, matches: Int)
        case done
    }

    public struct Decision: Equatable, Sendable {
        public var track: Int
        public var reason: String
    }

    public let table: String
    public let node: HANode
    public let ha: HA
    public private(set) var peers: [String: Peer] = [:]
    public private(set) var resync: Resync
    public private(set) var role = "UNKNOWN"
    /// The last decision, for the beat's priority.
    public private(set) var decision = Decision(track: HAConfig.TrackValue.fault.rawValue, reason: "starting")

    public init(table: String, ha: HA, node: HANode, now: Instant) {
        self.table = table
        self.ha = ha
        self.node = node
        resync = .pending(since: now, why: "starting", matches: 0)
    }

    /// A peer not heard for three beats and a bit is gone (as VRRP's master-down interval).
    public var peerTimeout: Duration { ha.advertInterval * 3 + .milliseconds(100) }
    /// Pending with no master heard for this long: there is nothing to resync from.
    public var aloneAfter: Duration { max(.seconds(1), ha.advertInterval * 5) }

    public var isResynced: Bool { resync == .done }

    func fresh(_ peer: Peer, _ now: Instant) -> Bool { now - peer.heardAt <= peerTimeout }

    /// keepalived's effective priority for a base priority and a track value (0: FAULT).
    public static func effective(_ base: Int, track: Int) -> Int {
        track <= HAConfig.TrackValue.fault.rawValue ? 0 : min(254, max(1, base + track))
    }

    public var priority: Int { Self.effective(node.priority, track: decision.track) }

    /// A beat from a peer. Being back in touch (or in touch for the first time) with a master that wins the
    /// election against this node means this node may lack that master's connections: pending.
    public mutating func heard(_ beat: HAPeerBeat, at arrival: Instant? = nil, now: Instant) -> [String] {
        // A beat that waited in the socket while this process was stopped says what was, not what is.
        let arrival = arrival ?? now
        guard now - arrival <= peerTimeout, beat.table == table, beat.node != node.name,
            ha.nodes.contains(where: { $0.name == beat.node })
        else { return [] }
        let before = peers[beat.node]
        let regained = before.map { !fresh($0, now) } ?? true
        let streak = regained ? nil : before?.resyncedSince
        peers[beat.node] = Peer(beat: beat, heardAt: arrival, resyncedSince: beat.resynced ? (streak ?? arrival) : nil)
        var lines: [String] = []
        if regained { lines.append("ha: peer \(beat.node) heard (\(beat.role), priority \(beat.priority), \(beat.resynced ? "resynced" : "not resynced"))") }
        if regained, beat.role == "MASTER", isResynced, let peer = ha.nodes.first(where: { $0.name == beat.node }),
            wins(peer, at: beat.priority, against: priority) {
            resync = .pending(since: now, why: "back in touch with master \(beat.node), which outranks this node", matches: 0)
            progress = nil
            lines.append("ha: not resynced: \(pendingWhy)")
        }
        return lines
    }

    /// VRRP's election: `peer` at `its` priority beats this node at `mine`; a tie goes to the higher address.
    func wins(_ peer: HANode, at its: Int, against mine: Int) -> Bool {
        its > mine || (its == mine && peer.address > node.address)
    }

    /// The daemon's loop did not run for `gap` (SIGSTOP, a hung machine): connections may have moved meanwhile.
    public mutating func stalled(for gap: Duration, now: Instant) -> [String] {
        resync = .pending(since: now, why: "the daemon did not run for \(DurationText.format(gap))", matches: 0)
        progress = nil
        return ["ha: not resynced: \(pendingWhy)"]
    }

    public mutating func roleChanged(_ role: String) { self.role = role }

    var pendingWhy: String {
        if case .pending(_, let why, _) = resync { return why }
        return ""
    }

    /// The master to resync from: the freshest-heard master peer whose beat came after pending began.
    func master(after since: Instant, now: Instant) -> Peer? {
        peers.values.filter { fresh($0, now) && $0.beat.role == "MASTER" && $0.heardAt > since }
            .max { $0.beat.priority < $1.beat.priority }
    }

    /// The priority a peer would come back with if it resumed now: its base, or what its last beat said
    /// (a hung master resumes with the priority it had, a hold included).
    func resumePriority(_ p: HANode) -> Int {
        max(p.priority, peers[p.name]?.beat.priority ?? 0)
    }

    /// The peer this master must hold the VIPs against, and the priority to stay above: the highest that a
    /// peer not settled as resynced could come back with, if it beats this node's base priority.
    func holdAgainst(now: Instant) -> (HANode, Int)? {
        ha.nodes.filter { p in
            p.name != node.name && !(peers[p.name].map { settled($0, now) } ?? false)
                && wins(p, at: resumePriority(p), against: node.priority)
        }.max { resumePriority($0) < resumePriority($1) }.map { ($0, resumePriority($0)) }
    }

    /// A peer heard now and saying "resynced" for a peer timeout: a beat it sent before it heard us back
    /// (after a split brain, say) cannot end a hold in the instant before it turns pending itself.
    func settled(_ peer: Peer, _ now: Instant) -> Bool {
        fresh(peer, now) && peer.resyncedSince.map { now - $0 >= peerTimeout } ?? false
    }

    /// Whether the shell should count this node's established connections before the next beat.
    public func wantsCount(now: Instant) -> Bool {
        if !isResynced { return true }
        return role == "MASTER" && peers.values.contains { fresh($0, now) && !$0.beat.resynced }
    }

    /// This node's connections through the frontends (digests; established and in other states), to
    /// compare with the master's count of established ones and its sample: every sampled connection known
    /// here in some state (the master may hold one established that this node saw close while the master's
    /// copy missed it), and the count within 1% (at least 2: the two are taken a beat apart), twice in a row.
    public mutating func counted(local: Set<UInt64>, other: Set<UInt64> = [], now: Instant) -> [String] {
        guard case .pending(let since, let why, let matches) = resync,
            let master = master(after: since, now: now), let theirs = master.beat.flows
        else { return [] }
        let sample = (master.beat.sample ?? []).compactMap { UInt64($0, radix: 16) }
        let missing = sample.filter { !local.contains($0) && !other.contains($0) }.count
        let slack = max(2, theirs / 100)
        // One match per master beat: each beat carries the next slice, and every slice must pass.
        let slices = max(1, master.beat.slices ?? 1)
        if missing == 0 && local.count + other.count + slack >= theirs {
            if master.beat.seq != lastMatchedSeq {
                lastMatchedSeq = master.beat.seq
                if matches + 1 >= max(2, slices) {
                    resync = .done
                    progress = nil
                    return ["ha: resynced: \(local.count) established connections here (\(other.count) in other states), \(theirs) on master \(master.beat.node), every one of its \(slices) slice\(slices == 1 ? "" : "s") present (after: \(why))"]
                }
                resync = .pending(since: since, why: why, matches: matches + 1)
            }
        } else if matches > 0 {
            resync = .pending(since: since, why: why, matches: 0)
        }
        progress = "\(local.count) established connections here (\(other.count) in other states), \(theirs) on master \(master.beat.node), \(missing) of its \(sample.count) in slice \((master.beat.slice ?? 0) + 1) of \(slices) missing"
        return []
    }

    private var lastMatchedSeq: UInt64?

    /// The last comparison while pending, for status and logs.
    public private(set) var progress: String?

    /// The track file's value now. `ready`: the table is loaded; `yields`: yieldWhenAllDown applies.
    public mutating func decide(now: Instant, ready: Bool, yields: Bool) -> (Decision, [String]) {
        var lines: [String] = []
        if case .pending(let since, let why, _) = resync, now - since >= aloneAfter, master(after: since, now: now) == nil {
            resync = .done
            lines.append("ha: resynced: no master peer to resync from (after: \(why))")
        }
        let next: Decision
        if !ready {
            next = Decision(track: HAConfig.TrackValue.fault.rawValue, reason: "table not loaded")
        } else if yields {
            next = Decision(track: HAConfig.TrackValue.fault.rawValue, reason: "a pool has no serving backend (yieldWhenAllDown)")
        } else if !isResynced {
            next = Decision(
                track: HAConfig.TrackValue.notResynced.rawValue,
                reason: "not resynced: \(pendingWhy)\(progress.map { "; \($0)" } ?? "")")
        } else if role == "MASTER", let (peer, above) = holdAgainst(now: now) {
            let heard = peers[peer.name].map { fresh($0, now) ? "not resynced" : "not heard" } ?? "never heard"
            next = Decision(
                track: min(254, above + 1) - node.priority,
                reason: "holding the VIPs at priority \(min(254, above + 1)): \(peer.name), which could come back at \(above), is \(heard)")
        } else {
            next = Decision(track: HAConfig.TrackValue.ready.rawValue, reason: "ready")
        }
        decision = next
        return (next, lines)
    }

    /// This node's beat.
    public func beat(flows: [UInt64]?, tableDigest: String, seq: UInt64) -> HAPeerBeat {
        guard let flows else {
            return HAPeerBeat(
                table: table, node: node.name, role: role, priority: priority, resynced: isResynced, flows: nil,
                tableDigest: tableDigest, seq: seq)
        }
        let sorted = flows.sorted()
        let slices = max(1, (sorted.count + HAPeerBeat.sampleSize - 1) / HAPeerBeat.sampleSize)
        let slice = Int(seq % UInt64(slices))
        let part = sorted.dropFirst(slice * HAPeerBeat.sampleSize).prefix(HAPeerBeat.sampleSize)
        return HAPeerBeat(
            table: table, node: node.name, role: role, priority: priority, resynced: isResynced, flows: flows.count,
            sample: part.map { String($0, radix: 16) }, slice: slice, slices: slices, tableDigest: tableDigest, seq: seq)
    }
}
