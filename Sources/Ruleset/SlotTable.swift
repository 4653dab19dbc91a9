import Foundation

/// The slot tables behind every pool: `slots[i]` is the index of the backend that slot i sends to.
///
/// A table is built in two steps. The *base* table depends only on the spec (every backend, whatever its
/// state or health): a smooth weighted order for round-robin/random, a Maglev table for source-hash. Then
/// the slots of backends that cannot take new connections are handed to eligible ones, each slot
/// independently (weighted rendezvous hashing on the slot number). So a backend going down or coming back
/// changes exactly the slots it held, and the same spec and health give the same table on every node.
public enum SlotTable {
    public struct Member: Equatable, Sendable {
        /// Stable identity of the backend (its endpoint); seeds its Maglev permutation and rendezvous scores.
        public var key: String
        public var weight: Int

        public init(key: String, weight: Int) {
            self.key = key
            self.weight = weight
        }
    }

    public enum Kind: Sendable {
        /// Smooth weighted order, no backend twice in a row where the weights allow it.
        case spread
        /// Maglev consistent hashing (size must be prime).
        case maglev
    }

    /// The slot table for the given members, with only `eligible` ones receiving slots. With no eligible
    /// member the base table is returned (a fail-open pool uses it; other pools do not dispatch to it).
    ///
    /// `share` (slowstart): an eligible member with a share below 1 keeps only that part of its base slots
    /// (the same ones, growing, as the share grows: each step only adds slots); the rest go to the members
    /// that take their full share, as an ineligible member's do.
    public static func build(members: [Member], eligible: [Bool], size: Int, kind: Kind, share: [Double]? = nil) -> [Int] {
        precondition(members.count == eligible.count && !members.isEmpty && size >= 1)
        let base = kind == .maglev ? maglev(members, size: size) : spread(members, size: size)
        guard let share, share.contains(where: { $0 < 1 }) else { return reassign(base, members: members, eligible: eligible) }
        // Ramping members are candidates for no one else's slots; if nobody takes a full share, nobody ramps.
        let full = members.indices.map { eligible[$0] && share[$0] >= 1 }
        guard full.contains(true) else { return reassign(base, members: members, eligible: eligible) }
        var keep = [Bool](repeating: false, count: size)
        var slotsOf = [[Int]](repeating: [], count: members.count)  // one pass, not one per member
        for (slot, owner) in base.enumerated() { slotsOf[owner].append(slot) }
        for i in members.indices where eligible[i] {
            let mine = slotsOf[i]
            guard share[i] < 1 else {
                for slot in mine { keep[slot] = true }
                continue
            }
            let key = StableHash.hash64(members[i].key, seed: 0x736c6f77)
            let order = mine.sorted { StableHash.mix(key ^ UInt64($0)) < StableHash.mix(key ^ UInt64($1)) }
            let n = min(mine.count, max(0, Int((share[i] * Double(mine.count)).rounded())))
            for slot in order.prefix(n) { keep[slot] = true }
        }
        return reassign(base, members: members, eligible: full, keep: keep)
    }

    // MARK: slot counts

    /// How many slots each member gets: its weighted share rounded (largest remainder), never zero when
    /// size allows, so each holds its share to within one slot.
    public static func apportion(weights: [Int], size: Int) -> [Int] {
        let total = weights.reduce(0, +)
        var counts = weights.map { $0 * size / total }
        let remainders = weights.enumerated().map { (index: $0, rest: $1 * size % total) }
        var left = size - counts.reduce(0, +)
        for r in remainders.sorted(by: { ($0.rest, $1.index) > ($1.rest, $0.index) }) where left > 0 {
            counts[r.index] += 1
            left -= 1
        }
        // A member whose share rounds to zero still gets one slot, taken from the largest holder.
        if size >= weights.count {
            for i in counts.indices where counts[i] == 0 {
                let donor = counts.indices.max { counts[$0] < counts[$1] }!
                counts[donor] -= 1
                counts[i] = 1
            }
        }
        return counts
    }

    // MARK: round-robin order

    /// Smooth weighted round-robin (as nginx does it) over the slot counts, constrained so that no backend
    /// holds two neighbouring slots of the ring (`numgen inc mod N` wraps) wherever no backend holds more
    /// than half of them.
    static func spread(_ members: [Member], size: Int) -> [Int] {
        ringOrder(apportion(weights: members.map(\.weight), size: size))
    }

    /// Member i appears exactly counts[i] times. Each step takes the member with the most SWRR credit that
    /// differs from the previous slot, unless a member's remaining count forces it now (it needs every
    /// other remaining slot). The ring is closed by counting the first member once more at the end.
    static func ringOrder(_ counts: [Int]) -> [Int] {
        let total = counts.reduce(0, +)
        guard total > 0 else { return [] }
        // A backend with over half the ring must repeat: plain smooth order spaces its repeats evenly.
        guard 2 * counts.max()! <= total else {
            var turns = SmoothTurns(weights: counts)
            return (0..<total).map { _ in turns.next() }
        }
        // Equal counts (equal weights, slots a multiple of the backends: the common case) are a plain
        // rotation: perfectly spaced, and free of the loop's O(slots × backends) cost.
        if counts.allSatisfy({ $0 == counts[0] }) {
            return (0..<total).map { $0 % counts.count }
        }
        var remaining = counts
        var credit = [Int](repeating: 0, count: counts.count)
        var order: [Int] = []
        order.reserveCapacity(total)
        let first = counts.indices.max { counts[$0] < counts[$1] || (counts[$0] == counts[$1] && $0 > $1) }!
        for position in 0..<total {
            for i in counts.indices { credit[i] += counts[i] }
            let pick: Int
            if position == 0 {
                pick = first
            } else {
                // Positions left: this one, the rest, and the virtual copy of `first` that closes the ring.
                // One pass keeps the best forced, allowed and merely open member (most credit wins).
                let left = total - position + 1
                let prev = order[order.count - 1]
                var forced = -1, allowed = -1, open = -1, any = -1
                for i in counts.indices where remaining[i] > 0 {
                    func better(_ best: Int) -> Bool { best < 0 || credit[i] > credit[best] }
                    if better(any) { any = i }
                    guard i != prev else { continue }
                    if better(open) { open = i }
                    let need = remaining[i] + (i == first ? 1 : 0)
                    if i == first ? 2 * need > left : 2 * need > left - 1 {
                        if better(forced) { forced = i }
                    }
                    if !(i == first && 2 * need == left), better(allowed) { allowed = i }
                }
                pick = forced >= 0 ? forced : allowed >= 0 ? allowed : open >= 0 ? open : any
            }
            credit[pick] -= total
            remaining[pick] -= 1
            order.append(pick)
        }
        return order
    }

    // MARK: Maglev

    /// Maglev (Eisenbud et al., NSDI 2016) with weights: members take turns in smooth weighted order, each
    /// turn claiming the next free slot of its own permutation of the table.
    static func maglev(_ members: [Member], size m: Int) -> [Int] {
        precondition(m >= 2 || members.count == 1)
        if m == 1 { return [0] }
        let offsets = members.map { Int(StableHash.hash64($0.key, seed: 0x6d61676c6576) % UInt64(m)) }
        let skips = members.map { Int(StableHash.hash64($0.key, seed: 0x736b6970) % UInt64(m - 1)) + 1 }
        var next = [Int](repeating: 0, count: members.count)
        var table = [Int](repeating: -1, count: m)
        var turns = SmoothTurns(weights: members.map(\.weight))
        var filled = 0
        while filled < m {
            let i = turns.next()
            var slot = (offsets[i] + next[i] * skips[i]) % m
            while table[slot] >= 0 {
                next[i] += 1
                slot = (offsets[i] + next[i] * skips[i]) % m
            }
            table[slot] = i
            next[i] += 1
            filled += 1
        }
        return table
    }

    /// An endless smooth weighted round-robin over `weights`: each member's turns stay within one of its
    /// share at every point.
    struct SmoothTurns {
        let weights: [Int]
        let total: Int
        var current: [Int]

        init(weights: [Int]) {
            self.weights = weights
            total = weights.reduce(0, +)
            current = [Int](repeating: 0, count: weights.count)
        }

        mutating func next() -> Int {
            var best = 0
            for i in weights.indices {
                current[i] += weights[i]
                if current[i] > current[best] { best = i }
            }
            current[best] -= total
            return best
        }
    }

    // MARK: health overlay

    /// Gives each slot of an ineligible member to the eligible member with the best weighted rendezvous
    /// score for that slot. Slots of eligible members never move.
    /// `keep`: slots that stay with their owner whatever `eligible` says (a ramping member's kept slots).
    static func reassign(_ base: [Int], members: [Member], eligible: [Bool], keep: [Bool]? = nil) -> [Int] {
        let candidates = members.indices.filter { eligible[$0] }
        guard !candidates.isEmpty, candidates.count < members.count else { return base }
        let keyHashes = members.map { StableHash.hash64($0.key, seed: 0x72656e64657a) }
        return base.enumerated().map { slot, owner in
            if eligible[owner] || keep?[slot] == true { return owner }
            return candidates.min { a, b in
                let sa = rendezvousCost(keyHashes[a], slot: slot, weight: members[a].weight)
                let sb = rendezvousCost(keyHashes[b], slot: slot, weight: members[b].weight)
                return sa != sb ? sa < sb : a < b
            }!
        }
    }

    /// -ln(u)/w for u uniform in (0, 1]: the smallest cost wins, each member with probability w/Σw.
    static func rendezvousCost(_ keyHash: UInt64, slot: Int, weight: Int) -> Double {
        let h = StableHash.mix(keyHash ^ UInt64(slot))
        let u = (Double(h >> 11) + 1) / 9_007_199_254_740_992  // 53 bits, never 0
        return -log(u) / Double(weight)
    }
}
