import Foundation
import PoolSpec
import Ruleset

/// An in-memory kernel for tests without root, transactional like the real one: a transaction works on
/// a copy and is swapped in whole or not at all, and every commit (ours or anyone's) advances the
/// generation. Tests inject what a shared kernel does to a daemon: refusals, flushes, hand edits.
public final class FakeKernel: KernelClient {
    public private(set) var tables: [String: Table] = [:]
    public private(set) var currentGeneration: UInt32 = 1
    /// Transactions committed by this client (not by injected foreign writers).
    public private(set) var commits = 0
    /// Every call that tried to commit, refused or not.
    public private(set) var attempts = 0
    /// Backends whose connections were closed, in call order.
    public private(set) var closed: [[String]] = []
    private var refusals: [KernelError] = []
    private var lastGeneration: UInt32?

    public init() {}

    /// The next `count` transactions are refused with `errno` (nothing of them applied).
    public func refuseNext(_ count: Int = 1, errno: Int32 = ENOMEM, object: String = "the transaction") {
        refusals += Array(repeating: .refused([.init(object: object, errno: errno, modules: [])]), count: count)
    }

    public var pendingRefusals: Int { refusals.count }

    // Foreign writers: each is a commit of someone else's.

    /// `nft flush ruleset`.
    public func flushRuleset() {
        tables = [:]
        currentGeneration &+= 1
    }

    public func deleteTableForeign(_ name: String) {
        tables[name] = nil
        currentGeneration &+= 1
    }

    /// A hand edit of one set's elements.
    public func editElements(table: String, set: String, _ edit: (inout [Element]) -> Void) {
        guard var t = tables[table], let i = t.sets.firstIndex(where: { $0.name == set }) else { return }
        edit(&t.sets[i].elements)
        tables[table] = t
        currentGeneration &+= 1
    }

    /// A commit that touches another table only.
    public func foreignCommitElsewhere() {
        currentGeneration &+= 1
    }

    /// Puts a table in place as another writer would (e.g. a leftover of an earlier run).
    public func install(_ table: Table) {
        tables[table.name] = table
        currentGeneration &+= 1
    }

    // KernelClient

    public func ownership(of name: String) throws(KernelError) -> NetfilterKernel.Ownership {
        guard let t = tables[name] else { return .absent }
        return t.comment == RulesetBuilder.ownerComment ? .ours : .foreign
    }

    public func apply(_ table: Table, force: Bool) throws(KernelError) -> NetfilterKernel.ApplyReport {
        let owner = try ownership(of: table.name)
        if owner == .foreign && !force { throw KernelError.notOurs(table: table.name) }
        let messages = Self.messages(from: tables[table.name], to: table)
        if messages == 0 { return .init(messages: 0, replaced: false, bytes: 0) }
        try commit(table)
        return .init(messages: messages, replaced: owner == .foreign, bytes: 0)
    }

    public func apply(_ table: Table, after previous: Table) throws(KernelError) -> NetfilterKernel.ApplyReport {
        // As the real kernel layer: trust `previous` only if nobody committed since our last commit.
        guard let ours = lastGeneration, ours == currentGeneration else { return try apply(table, force: false) }
        // As the real one: more than element changes (a slot map resized by a new weight) goes the full way.
        guard NetfilterKernel.elementPlan(from: previous, to: table) != nil else { return try apply(table, force: false) }
        let messages = Self.messages(from: previous, to: table)
        if messages == 0 { return .init(messages: 0, replaced: false, bytes: 0) }
        // Like the real fast path, send only previous ─► table element changes: a caller whose
        // `previous` is not what the kernel holds ends up with a mix, and its test sees it.
        guard var result = tables[table.name] else {
            attempts += 1
            throw KernelError.refused([.init(object: "elements of table inet \(table.name)", errno: ENOENT, modules: [])])
        }
        for set in table.sets {
            guard let old = previous.set(named: set.name), let i = result.sets.firstIndex(where: { $0.name == set.name }) else { continue }
            // As the kernel: deletes go by key, and adding a key that is there with other data is EEXIST.
            let gone = Set(Set(old.elements).subtracting(set.elements).map(\.key))
            let added = Set(set.elements).subtracting(old.elements)
            var merged = result.sets[i].elements.filter { !gone.contains($0.key) }
            let present = Set(merged.map(\.key))
            for e in set.elements where added.contains(e) {
                if present.contains(e.key) {
                    attempts += 1
                    throw KernelError.refused([.init(object: "elements of \(set.name)", errno: EEXIST, modules: [])])
                }
                merged.append(e)
            }
            result.sets[i].elements = Set(merged) == Set(set.elements) ? set.elements : merged
        }
        try commit(result)
        return .init(messages: messages, replaced: false, bytes: 0)
    }

    public func diff(_ table: Table, force: Bool) throws(KernelError) -> [String] {
        let owner = try ownership(of: table.name)
        if owner == .foreign && !force { throw KernelError.notOurs(table: table.name) }
        guard let have = tables[table.name] else { return ["+ table inet \(table.name)"] }
        var lines: [String] = []
        for set in table.sets where have.set(named: set.name) != set {
            lines.append("~ set \(set.name)")
        }
        for set in have.sets where table.set(named: set.name) == nil { lines.append("- set \(set.name)") }
        for chain in table.chains where have.chain(named: chain.name) != chain { lines.append("~ chain \(chain.name)") }
        for chain in have.chains where table.chain(named: chain.name) == nil { lines.append("- chain \(chain.name)") }
        return lines
    }

    public func delete(tableNamed name: String, force: Bool) throws(KernelError) -> Bool {
        let owner = try ownership(of: name)
        if owner == .absent { return false }
        if owner == .foreign && !force { throw KernelError.notOurs(table: name) }
        attempts += 1
        if !refusals.isEmpty { throw refusals.removeFirst() }
        tables[name] = nil
        currentGeneration &+= 1
        lastGeneration = currentGeneration
        commits += 1
        return true
    }

    public func generation() throws(KernelError) -> UInt32 { currentGeneration }

    public var lastCommitGeneration: UInt32? { lastGeneration }

    public func elements(of table: String, sets: [NamedSet]) throws(KernelError) -> [String: [Element]]? {
        guard let t = tables[table] else { return nil }
        var out: [String: [Element]] = [:]
        for set in sets {
            guard let have = t.set(named: set.name), Self.readAlike(have, set) else { continue }
            out[set.name] = have.elements
        }
        return out
    }

    public func deleteConnections(to targets: [NetfilterKernel.ConnectionTarget]) throws(KernelError) -> [Int] {
        closed.append(targets.map { Backend.endpoint($0.address, $0.port) })
        return targets.map { openConnections.removeValue(forKey: Backend.endpoint($0.address, $0.port)) ?? 0 }
    }

    /// Open connections per backend endpoint, as a test sets them; deleting a target's connections ends them.
    public var openConnections: [String: Int] = [:]

    public func countConnections(to targets: [NetfilterKernel.ConnectionTarget]) throws(KernelError) -> [Int] {
        targets.map { openConnections[Backend.endpoint($0.address, $0.port), default: 0] }
    }

    /// As the real read-back: key and data types matter, a slot map's modulus and port header do not.
    static func readAlike(_ a: NamedSet, _ b: NamedSet) -> Bool {
        switch (a.key, b.key) {
        case (.slotIndex, .slotIndex): break
        default: guard a.key == b.key else { return false }
        }
        switch (a.data, b.data) {
        case (.endpoint(let x, _)?, .endpoint(let y, _)?): return x == y
        default: return a.data == b.data
        }
    }

    private func commit(_ table: Table) throws(KernelError) {
        attempts += 1
        if !refusals.isEmpty { throw refusals.removeFirst() }
        tables[table.name] = table  // the swap: the whole new table or nothing
        currentGeneration &+= 1
        lastGeneration = currentGeneration
        commits += 1
    }

    /// A stand-in for the message count: one per changed set or chain (0 when nothing differs).
    static func messages(from old: Table?, to new: Table) -> Int {
        guard let old else { return 1 + new.sets.count + new.chains.count }
        if old == new { return 0 }
        var n = old.comment == new.comment ? 0 : 1
        n += new.sets.filter { old.set(named: $0.name) != $0 }.count + old.sets.filter { new.set(named: $0.name) == nil }.count
        n += new.chains.filter { old.chain(named: $0.name) != $0 }.count + old.chains.filter { new.chain(named: $0.name) == nil }.count
        return max(n, 1)
    }
}
