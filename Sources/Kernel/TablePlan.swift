import Ruleset

/// What must change to turn the kernel's table (a snapshot) into the desired one. Everything the kernel
/// already holds as desired is left alone: elements that did not change are not sent, rules that did not
/// change keep their handles (and numgen its rotation).
struct TablePlan {
    var deleteRules: [(chain: String, handle: UInt64)] = []
    var deleteElements: [(set: String, elements: [KernelSnapshot.ElementBytes])] = []
    var deleteSets: [String] = []
    var deleteChains: [String] = []
    var addChains: [Chain] = []
    var addSets: [NamedSet] = []
    var addElements: [(set: NamedSet, elements: [Element])] = []
    var addRules: [(chain: String, rules: [Rule])] = []

    var isEmpty: Bool {
        deleteRules.isEmpty && deleteElements.isEmpty && deleteSets.isEmpty && deleteChains.isEmpty
            && addChains.isEmpty && addSets.isEmpty && addElements.isEmpty && addRules.isEmpty
    }

    init() {}

    /// `digests`: each wanted set's ElementDigest, when the caller made them already (on the thread
    /// that built the table, while the kernel's was read back); otherwise they are made here.
    init(from actual: KernelSnapshot, to table: Table, digests: [String: ElementDigest]? = nil) {
        // Elements are compared by elementChanges; the desired snapshot is only needed without them.
        let desired = KernelSnapshot(desired: table, elements: false)
        var recreatedSets = Set<String>()
        for set in table.sets {
            guard let have = actual.sets[set.name] else {
                addSets.append(set)
                continue
            }
            if have.encoding != SetEncoding(set) {
                deleteSets.append(set.name)
                addSets.append(set)
                recreatedSets.insert(set.name)
                continue
            }
            // Equal digests: the kernel holds exactly these elements (no sort, no walk).
            if have.digest == digests?[set.name] ?? Self.digest(set) { continue }
            let (gone, new) = Self.elementChanges(have: have.elements, want: set.elements)
            if !gone.isEmpty { deleteElements.append((set.name, gone)) }
            if !new.isEmpty { addElements.append((set, new)) }
        }
        for name in actual.sets.keys.sorted() where desired.sets[name] == nil { deleteSets.append(name) }

        for chain in table.chains {
            let want = desired.chains[chain.name]!
            guard let have = actual.chains[chain.name] else {
                addChains.append(chain)
                addRules.append((chain.name, chain.rules))
                continue
            }
            if have.base != want.base {
                deleteRules += have.rules.map { (chain.name, $0.handle) }
                deleteChains.append(chain.name)
                addChains.append(chain)
                addRules.append((chain.name, chain.rules))
                continue
            }
            let usesRecreatedSet = chain.rules.contains { rule in
                rule.expressions.contains { if case .lookup(let s, _, _) = $0 { return recreatedSets.contains(s) } else { return false } }
            }
            if usesRecreatedSet || have.rulesWithoutHandles != want.rules {
                deleteRules += have.rules.map { (chain.name, $0.handle) }
                addRules.append((chain.name, chain.rules))
            }
        }
        for name in actual.chains.keys.sorted() where desired.chains[name] == nil {
            deleteRules += actual.chains[name]!.rules.map { (name, $0.handle) }
            deleteChains.append(name)
        }
    }

    static func digest(_ set: NamedSet) -> ElementDigest { ElementDigest(set.elements.lazy.map(KernelSnapshot.ElementBytes.init)) }

    static func digests(_ table: Table) -> [String: ElementDigest] {
        Dictionary(uniqueKeysWithValues: table.sets.map { ($0.name, digest($0)) })
    }

    /// One walk over both key-sorted lists: an element whose key is held with other data is deleted and
    /// added again (the kernel does not replace an element's data in place).
    static func elementChanges(have: [KernelSnapshot.ElementBytes], want model: [Element])
        -> (gone: [KernelSnapshot.ElementBytes], new: [Element])
    {
        let want = model.indices.map { (bytes: KernelSnapshot.ElementBytes(model[$0]), index: $0) }
            .sorted { $0.bytes.key < $1.bytes.key }
        var gone: [KernelSnapshot.ElementBytes] = [], new: [Element] = []
        var i = 0, j = 0
        while i < have.count || j < want.count {
            if j == want.count || (i < have.count && have[i].key < want[j].bytes.key) {
                gone.append(have[i])
                i += 1
            } else if i == have.count || want[j].bytes.key < have[i].key {
                new.append(model[want[j].index])
                j += 1
            } else {
                if have[i] != want[j].bytes {
                    gone.append(have[i])
                    new.append(model[want[j].index])
                }
                i += 1
                j += 1
            }
        }
        return (gone, new)
    }

    /// Human-readable lines, one per change, for `nftpool diff`.
    var lines: [String] {
        var out: [String] = []
        let rulesByChain = Dictionary(grouping: deleteRules, by: \.chain).mapValues(\.count)
        for (chain, n) in rulesByChain.sorted(by: { $0.key < $1.key }) { out.append("- \(n) rule\(n == 1 ? "" : "s") in chain \(chain)") }
        for (set, elements) in deleteElements { out.append("- \(elements.count) element\(elements.count == 1 ? "" : "s") of \(set)") }
        for name in deleteSets { out.append("- set \(name)") }
        for name in deleteChains { out.append("- chain \(name)") }
        for chain in addChains { out.append("+ chain \(chain.name)") }
        for set in addSets { out.append("+ \(set.isMap ? "map" : "set") \(set.name) (\(set.elements.count) elements)") }
        for (set, elements) in addElements { out.append("+ \(elements.count) element\(elements.count == 1 ? "" : "s") of \(set.name)") }
        for (chain, rules) in addRules {
            for rule in rules { out.append("+ rule in chain \(chain): \(NftRenderer.render(rule))") }
        }
        return out
    }

    /// The plan as messages of one batch, in an order the kernel accepts: references go before what they
    /// refer to is deleted, and what is referred to exists before what refers to it is added.
    func write(into batch: inout NetlinkBatch, table: Table) {
        for (chain, handle) in deleteRules { TableMessages.deleteRule(handle: handle, chain: chain, table: table.name, in: &batch) }
        for (set, elements) in deleteElements { TableMessages.deleteElements(elements, set: set, table: table.name, in: &batch) }
        for name in deleteSets { TableMessages.deleteSet(name, table: table.name, in: &batch) }
        for name in deleteChains { TableMessages.deleteChain(name, table: table.name, in: &batch) }
        for chain in addChains { TableMessages.addChain(chain, table: table.name, in: &batch) }
        // Set IDs name sets created in this batch, for the sets and rules it adds. A plan of elements only (a
        // health flip) needs none, and building them hashes every set's name: 10,008 at 10,000 pools, a
        // third of a flip's time there.
        let ids = addSets.isEmpty && addRules.isEmpty ? [:] : TableMessages.setIDs(table)
        for set in addSets {
            TableMessages.addSet(set, id: ids[set.name]!, table: table.name, in: &batch)
            TableMessages.addElements(set.elements, to: set, setID: ids[set.name], table: table.name, in: &batch)
        }
        for (set, elements) in addElements {
            TableMessages.addElements(elements, to: set, setID: nil, table: table.name, in: &batch)
        }
        for (chain, rules) in addRules {
            for rule in rules { TableMessages.addRule(rule, chain: chain, table: table.name, setIDs: ids, in: &batch) }
        }
    }
}

