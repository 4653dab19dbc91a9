import Foundation
import Testing

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset
import TestSupport

/// The nftables event subscription against the real kernel: which transactions touched our table, and
/// whose they were; and the typed read-back adoption relies on.
@Suite(.serialized) struct RulesetMonitorTests {
    func events(_ monitor: RulesetMonitor, until done: ([RulesetMonitor.Event]) -> Bool) -> [RulesetMonitor.Event] {
        var all: [RulesetMonitor.Event] = []
        let deadline = Date().addingTimeInterval(3)
        while !done(all) && Date() < deadline { all += monitor.next() }
        return all
    }

    @Test func foreignFlushesEditsAndOurOwnCommitsAreToldApart() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("monitor")
        let kernel = try NetfilterKernel(netns: ns.name)
        let monitor = try NetfilterKernel.inNamespace(ns.name) { () throws(KernelError) in try RulesetMonitor(table: "nftpool", ownPort: kernel.portID) }
        let table = RulesetBuilder.table(for: try loadSpec("kube-apiserver"))
        try kernel.apply(table)
        let own = events(monitor) { !$0.isEmpty }
        guard case .changed(_, _, _, let ours)? = own.first else { Issue.record("no event for our own apply: \(own)"); return }
        #expect(ours, "our own commit is ours: \(own)")

        #expect(try ns.exec("nft", ["add", "table", "inet", "someone-else"]).status == 0)
        let elsewhere = events(monitor) { !$0.isEmpty }
        let generation = try kernel.generation()
        #expect(elsewhere == [.elsewhere(generation: generation)], "\(elsewhere)")

        #expect(try ns.exec("nft", ["delete", "element", "inet", "nftpool", "pool-kube-apiserver-slots", "{ 0 }"]).status == 0)
        let edit = events(monitor) { !$0.isEmpty }
        guard case .changed(let g, let pid, let process, let mine)? = edit.first else { Issue.record("no event for a hand edit: \(edit)"); return }
        let now = try kernel.generation()
        #expect(!mine && process == "nft" && pid > 0 && g == now, "\(edit)")

        #expect(try ns.exec("nft", ["flush", "ruleset"]).status == 0)
        let flush = events(monitor) { !$0.isEmpty }
        guard case .changed(_, _, "nft", false)? = flush.first else { Issue.record("no event for a flush: \(flush)"); return }
    }

    @Test func typedReadBackEqualsTheModel() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("typed")
        let kernel = try NetfilterKernel(netns: ns.name)
        for name in ["kube-apiserver", "dual-stack", "udp-dns", "source-hash"] {
            let spec = try loadSpec(name)
            let table = RulesetBuilder.table(for: spec, health: Health(down: [BackendRef(spec.pools[0], spec.pools[0].backends[0])]))
            try kernel.apply(table, force: false)
            let sets = SlotMembership.sets(for: spec)
            let read = try #require(try kernel.elements(of: spec.table, sets: sets))
            for set in sets {
                #expect(Set(read[set.name] ?? []) == Set(table.set(named: set.name)!.elements), "\(name): \(set.name)")
            }
            let victim = BackendRef(spec.pools[0], spec.pools[0].backends[0])
            let expected: Set<BackendRef> = spec.pools[0].healthCheck == nil ? [] : [victim]
            #expect(SlotMembership.adoptedDown(spec, elements: read) == expected, "\(name)")
            try kernel.delete(tableNamed: spec.table)
        }
        #expect(try kernel.elements(of: "nftpool", sets: []) == nil)
    }
}
