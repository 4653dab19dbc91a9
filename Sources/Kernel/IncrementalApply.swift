import PoolSpec
import Ruleset

/// The daemon's fast path: it knows what it last wrote, so a health flip is planned against that instead
/// of a read-back of the whole table (one pool's changed slots, not 100,000 elements dumped and compared).
/// The ruleset generation guards it: the batch carries the generation of our own last commit, and if
/// anything in the namespace was committed since, the kernel refuses it and the full read-back diff runs.
extension NetfilterKernel {
    /// Makes the kernel hold `table`, given that it held `previous` after our last commit. Falls back to
    /// `apply` (read back, diff) when the generation moved or the change is more than elements.
    @discardableResult
    public func apply(_ table: Table, after previous: Table) throws(KernelError) -> ApplyReport {
        guard let ours = lastGeneration, let plan = Self.elementPlan(from: previous, to: table) else { return try apply(table) }
        if plan.isEmpty {
            // Nothing to send: only a moved generation (someone else's change) calls for the full diff.
            return try generation() == ours ? ApplyReport(messages: 0, replaced: false, bytes: 0) : try apply(table)
        }
        // No GETGEN round trip: the batch carries our last generation and the kernel refuses it whole
        // (stale) if anything was committed since.
        var batch = NetlinkBatch(firstSequence: nextSequence(), generation: ours)
        plan.write(into: &batch, table: table)
        do throws(KernelError) {
            try commit(&batch)
        } catch .stale {
            return try apply(table)
        }
        return ApplyReport(messages: batch.messageCount, replaced: false, bytes: batch.buffer.count)
    }

    /// Element changes only, when the two tables differ in nothing else; nil otherwise.
    static func elementPlan(from previous: Table, to table: Table) -> TablePlan? {
        guard previous.name == table.name, previous.comment == table.comment, previous.chains == table.chains,
            previous.sets.count == table.sets.count
        else { return nil }
        var plan = TablePlan()
        for (old, new) in zip(previous.sets, table.sets) {
            guard old.name == new.name else { return nil }
            // This runs over every set on every flip: unchanged element lists share storage (a cheap
            // compare), and only a set whose elements changed has its declaration compared too.
            guard old.elements != new.elements else { continue }
            guard old.key == new.key, old.data == new.data, old.counter == new.counter, old.size == new.size else {
                return nil
            }
            let have = old.elements.map(KernelSnapshot.ElementBytes.init).sorted { $0.key < $1.key }
            let (gone, added) = TablePlan.elementChanges(have: have, want: new.elements)
            if !gone.isEmpty { plan.deleteElements.append((new.name, gone)) }
            if !added.isEmpty { plan.addElements.append((new, added)) }
        }
        return plan
    }
}
