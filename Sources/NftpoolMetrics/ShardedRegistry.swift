import NIOConcurrencyHelpers
import Prometheus

/// The families a ShardedRegistry holds, one case each, numbered from 0 in the order the scrape shows
/// them.
protocol ShardedFamily: CaseIterable, Sendable, RawRepresentable where RawValue == Int, AllCases == [Self] {
    var descriptor: MetricNameDescriptor { get }
}

/// Families with a series per backend (or per pool), kept in many small `PrometheusCollectorRegistry`s
/// so that registering a series stays cheap, and emitted as one group per family.
///
/// swift-prometheus 2.4.1 keeps a family's series in one dictionary that it copies whole on every
/// registration and unregistration, so filling a family of n series costs O(n²): the first scrape at
/// 10,000 backends took 49-65 s of one core (debug build; 32-44 s release). Here each owner (a backend,
/// a pool) is placed in a shard of at most `capacity` owners, and a shard has a registry of its own for
/// each family: a registration copies at most one shard's share of one family, and n owners cost O(n).
///
/// Every line of the text is still written by swift-prometheus: `emit` takes the families in order, and
/// for each family its shards one after another, keeping only the first shard's `# HELP` and `# TYPE`
/// lines. The text format wants one of each per family and the family's samples in one group
/// (promtool rejects a second TYPE or HELP line), which is what comes out.
final class ShardedRegistry<Family: ShardedFamily>: Sendable {
    /// One registry per family for up to `capacity` owners. Made once, never dropped: emptied by
    /// unregistering, a registry emits nothing.
    final class Shard: Sendable {
        let index: Int
        private let registries: [PrometheusCollectorRegistry]

        init(index: Int) {
            self.index = index
            registries = Family.allCases.map { _ in PrometheusCollectorRegistry() }
        }

        subscript(_ family: Family) -> PrometheusCollectorRegistry { registries[family.rawValue] }

        func makeGauge(_ family: Family, labels: [(String, String)]) -> Gauge {
            self[family].makeGauge(descriptor: family.descriptor, labels: labels)
        }

        func makeCounter(_ family: Family, labels: [(String, String)]) -> Counter {
            self[family].makeCounter(descriptor: family.descriptor, labels: labels)
        }

        func makeDurationHistogram(_ family: Family, labels: [(String, String)], buckets: [Duration]) -> DurationHistogram {
            self[family].makeDurationHistogram(descriptor: family.descriptor, labels: labels, buckets: buckets)
        }
    }

    /// Owners a shard takes. A backend has 12 or so series, 3 in its largest family (admin_state).
    /// From 16 to 128 it made no difference worth having to the registration at 10,000 backends (the
    /// copies are no longer what it costs); a steady scrape is a little slower with more shards.
    static var defaultCapacity: Int { 64 }

    let capacity: Int

    private struct State {
        var shards: [Shard] = []
        /// Owners placed in each shard.
        var counts: [Int] = []
        var shardOf: [String: Int] = [:]
        /// The lowest shard that may have room (every shard below it is full).
        var firstOpen = 0
    }

    private let state = NIOLockedValueBox(State())

    init(capacity: Int = ShardedRegistry.defaultCapacity) {
        precondition(capacity > 0)
        for (i, family) in Family.allCases.enumerated() { precondition(family.rawValue == i, "families numbered 0, 1, 2…") }
        self.capacity = capacity
    }

    /// The shard of `owner`, placing it in the lowest shard with room if it has none yet.
    func place(_ owner: String) -> Shard {
        state.withLockedValue { s in
            if let index = s.shardOf[owner] { return s.shards[index] }
            var index = s.firstOpen
            while index < s.counts.count && s.counts[index] >= capacity { index += 1 }
            if index == s.counts.count {
                s.counts.append(0)
                s.shards.append(Shard(index: index))
            }
            s.counts[index] += 1
            s.shardOf[owner] = index
            s.firstOpen = index
            return s.shards[index]
        }
    }

    /// `owner` is gone (its series unregistered): its place may be taken by another.
    func release(_ owner: String) {
        state.withLockedValue { s in
            guard let index = s.shardOf.removeValue(forKey: owner) else { return }
            s.counts[index] -= 1
            s.firstOpen = min(s.firstOpen, index)
        }
    }

    /// Owners placed now, and the shards made (for tests and figures).
    var placement: (owners: Int, shards: Int) {
        state.withLockedValue { ($0.shardOf.count, $0.shards.count) }
    }

    /// Appends every family's series to `buffer`: a family's shards in a row, headed by the `# HELP`
    /// and `# TYPE` lines of the first shard that has any of its series.
    func emit(into buffer: inout [UInt8]) {
        let shards = state.withLockedValue { $0.shards }
        for family in Family.allCases {
            var headed = false
            for shard in shards {
                let start = buffer.count
                shard[family].emit(into: &buffer)
                guard buffer.count > start else { continue }  // none of its series in this shard
                if headed {
                    dropCommentLines(from: start, of: &buffer)
                } else {
                    headed = true
                }
            }
        }
    }
}

/// Removes the comment lines (`# HELP`, `# TYPE`) at `start`: a registry holding one family writes them
/// first, then its samples, and no sample line starts with `#`.
func dropCommentLines(from start: Int, of buffer: inout [UInt8]) {
    var end = start
    while end < buffer.count && buffer[end] == UInt8(ascii: "#") {
        guard let newline = buffer[end...].firstIndex(of: UInt8(ascii: "\n")) else {
            end = buffer.count
            break
        }
        end = newline + 1
    }
    if end > start { buffer.removeSubrange(start..<end) }
}
