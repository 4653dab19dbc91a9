import Foundation
import Testing

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset
import TestSupport

func loadSpec(_ name: String) throws -> Spec {
    try SpecDecoder.load(path: Repo.rulesets.appendingPathComponent("\(name).yaml").path, readingCAFiles: false)
}

func specPath(_ name: String) -> String { Repo.rulesets.appendingPathComponent("\(name).yaml").path }

/// `nftpool apply` through netlink, judged by what the real `nft` lists. Each test makes its namespaces.
@Suite(.serialized) struct ApplyTests {
    @Test(arguments: Repo.exampleNames)
    func appliedTableListsLikeTheGoldenRuleset(name: String) throws {
        try ScratchNamespace.requireKernelTools()
        let table = try loadSpec(name).table
        let applied = try ScratchNamespace("apply"), golden = try ScratchNamespace("golden")
        let r = try Repo.run(Repo.nftpool, ["apply", "--netns", applied.name, specPath(name)])
        #expect(r.status == 0, "\(r.err)")
        #expect(try golden.exec("nft", ["-f", Repo.rulesets.appendingPathComponent("\(name).nft").path]).status == 0)
        let mine = try applied.exec("nft", ["list", "table", "inet", table]).out
        let theirs = try golden.exec("nft", ["list", "table", "inet", table]).out
        #expect(!mine.isEmpty)
        #expect(Listing.normalized(mine) == Listing.normalized(theirs))
    }

    @Test func aChangeIsExactlyOneTransaction() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("change")
        let kernel = try NetfilterKernel(netns: ns.name)
        try kernel.apply(RulesetBuilder.table(for: loadSpec("kube-apiserver")))
        var changed = try loadSpec("kube-apiserver")
        changed.pools[0].backends.removeLast()
        changed.pools[0].backends[0].weight = 5
        changed.pools.append(try loadSpec("weighted").pools[0])
        let before = try kernel.generation()
        try kernel.apply(RulesetBuilder.table(for: changed))
        #expect(try kernel.generation() == before &+ 1)
        let golden = try ScratchNamespace("change-golden")
        #expect(try golden.exec("nft", ["-f", "-"], stdin: NftRenderer.script(RulesetBuilder.table(for: changed))).status == 0)
        #expect(Listing.normalized(try ns.exec("nft", ["list", "table", "inet", "nftpool"]).out)
            == Listing.normalized(try golden.exec("nft", ["list", "table", "inet", "nftpool"]).out))
    }

    @Test func aRefusedBatchLeavesTheKernelAsItWas() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("atomic")
        let kernel = try NetfilterKernel(netns: ns.name)
        try kernel.apply(RulesetBuilder.table(for: loadSpec("kube-apiserver")))
        let before = try ns.exec("nft", ["list", "ruleset"]).out
        let generation = try kernel.generation()
        // A valid new spec whose very last object is invalid: a rule naming a map that does not exist.
        var broken = RulesetBuilder.table(for: try loadSpec("multi-pool"))
        broken.name = "nftpool"
        broken.chains[broken.chains.count - 1].rules.append(.dispatch(.ipv4, map: "no-such-map"))
        #expect {
            try kernel.apply(broken)
        } throws: { error in
            guard case KernelError.refused(let refusals) = error else { return false }
            return refusals.count == 1 && refusals[0].errno == ENOENT && refusals[0].object.contains("no-such-map")
        }
        // The kernel points at the lookup expression: the refusal names it, and no module is suspected
        // (lookup is nf_tables itself; the map is what is missing).
        let error = #expect(throws: KernelError.self) { try kernel.apply(broken) }
        if case .refused(let refusals)? = error {
            let rule = Rule.dispatch(.ipv4, map: "no-such-map")
            let lookup = rule.expressions.firstIndex { if case .lookup = $0 { return true } else { return false } }!
            #expect(refusals.first?.pointedAt == "expression \(lookup + 1), lookup @no-such-map")
            #expect(refusals.first?.modules == [])
            #expect(!"\(KernelError.refused(refusals))".contains("modprobe"))
            print("figure: refusal as users see it: \(KernelError.refused(refusals))")
        }
        #expect(try ns.exec("nft", ["list", "ruleset"]).out == before)
        #expect(try kernel.generation() == generation)
    }

    @Test func otherTablesAreNeverTouched() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("coexist")
        let others = """
            table ip filter {
            	chain input {
            		type filter hook input priority filter; policy accept;
            		tcp dport 22 counter accept
            		ct state established,related accept
            	}
            }
            table ip nat {
            	chain postrouting {
            		type nat hook postrouting priority srcnat; policy accept;
            		oifname "eth0" masquerade
            	}
            }
            table inet other {
            	set blocked {
            		type ipv4_addr
            		elements = { 192.0.2.1, 198.51.100.7 }
            	}
            	chain c {
            		ip saddr @blocked drop
            	}
            }
            """
        #expect(try ns.exec("nft", ["-f", "-"], stdin: others).status == 0)
        func listOthers() throws -> String {
            try ["ip filter", "ip nat", "inet other"].map {
                try ns.exec("nft", ["list", "table"] + $0.split(separator: " ").map(String.init)).out
            }.joined()
        }
        let before = try listOthers()
        #expect(before.contains("192.0.2.1"))
        for step in [["apply", specPath("multi-pool")], ["apply", specPath("multi-pool")], ["delete", specPath("multi-pool")]] {
            let r = try Repo.run(Repo.nftpool, [step[0], "--netns", ns.name, step[1]])
            #expect(r.status == 0, "\(step[0]): \(r.err)")
            #expect(try listOthers() == before, "after \(step[0])")
        }
        #expect(try !ns.exec("nft", ["list", "tables"]).out.contains("edge"))
    }

    @Test func aTableNftpoolDidNotMakeIsRefusedUnlessForced() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("owner")
        #expect(try ns.exec("nft", ["-f", "-"], stdin: "table inet nftpool {\n\tchain mine {\n\t\tcounter\n\t}\n}\n").status == 0)
        let before = try ns.exec("nft", ["list", "ruleset"]).out
        for command in ["apply", "delete"] {
            let r = try Repo.run(Repo.nftpool, [command, "--netns", ns.name, specPath("kube-apiserver")])
            #expect(r.status == 1)
            #expect(r.err.hasPrefix("table inet nftpool exists and was not made by nftpool"))
            #expect(try ns.exec("nft", ["list", "ruleset"]).out == before)
        }
        let forced = try Repo.run(Repo.nftpool, ["apply", "--force", "--netns", ns.name, specPath("kube-apiserver")])
        #expect(forced.status == 0, "\(forced.err)")
        #expect(try !ns.exec("nft", ["list", "ruleset"]).out.contains("chain mine"))
    }

    @Test func withoutNetAdminTheErrorSaysWhatIsNeeded() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("eperm")
        let r = try ns.exec(
            "setpriv", ["--bounding-set=-net_admin", "--inh-caps=-net_admin", Repo.nftpool.path, "apply", specPath("kube-apiserver")])
        #expect(r.status == 1)
        #expect(r.err.contains("permission denied: programming nftables needs root or CAP_NET_ADMIN"), "\(r.err)")
        #expect(try ns.exec("nft", ["list", "ruleset"]).out.isEmpty)
    }

    @Test func deleteOfAnAbsentTableIsFine() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("absent")
        let r = try Repo.run(Repo.nftpool, ["delete", "--netns", ns.name, specPath("kube-apiserver")])
        #expect(r.status == 0)
        #expect(r.out == "table inet nftpool does not exist; nothing to delete\n")
    }

    @Test func largeSlotMapsArriveWhole() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("large")
        var pool = try loadSpec("weighted").pools[0]
        pool.slots = .fixed(5000)
        pool.backends = (0..<300).map { Backend(address: IPAddress("10.10.\($0 / 200 + 2).\($0 % 200 + 1)")!, port: 8080) }
        let kernel = try NetfilterKernel(netns: ns.name)
        try kernel.apply(RulesetBuilder.table(for: Spec(pools: [pool])))
        let listing = try ns.exec("nft", ["list", "map", "inet", "nftpool", "pool-web-slots"]).out
        #expect(listing.components(separatedBy: " : 10.10.").count - 1 == 5000)
    }

    /// `nftpool apply` builds the table on another thread while it reads the kernel's, and compares
    /// sets by digest: a no-change re-apply still sends nothing, and hand edits of slots, the backends
    /// set and a frontend's verdict are all repaired, as nft lists them.
    @Test func theCLIsReapplySendsNothingAndRepairsHandEdits() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("reapply")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("reapply-\(getpid()).yaml")
        let spec = PlanFixtures.spec(pools: 40, backends: 30)  // >= 16 pools: slot tables on two threads
        let text = "table: big\npools:\n" + spec.pools.map { p in
            "  - name: \(p.name)\n    frontends: [{address: \(p.frontends[0].address), port: 443}]\n    backends:\n"
                + p.backends.map { "      - {address: \($0.address), port: \($0.port)}\n" }.joined()
        }.joined()
        try text.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let apply = { try Repo.run(Repo.nftpool, ["apply", "--netns", ns.name, file.path]) }
        #expect(try apply().out.hasPrefix("applied table inet big"))
        let listed = try ns.exec("nft", ["list", "table", "inet", "big"]).out
        let kernel = try NetfilterKernel(netns: ns.name)
        let generation = try kernel.generation()
        #expect(try apply().out.contains("nothing sent"))
        #expect(try kernel.generation() == generation)
        for edit in [
            "delete element inet big pool-p3-slots { 7 }",
            "add element inet big backends-v4 { 192.0.2.1 . tcp . 9 }",
            "delete element inet big frontends-v4 { 10.0.5.1 . tcp . 443 }",
            "add element inet big frontends-v4 { 10.0.5.1 . tcp . 443 : drop }",
        ] {
            #expect(try ns.exec("nft", [edit]).status == 0, "\(edit)")
        }
        #expect(try apply().out.hasPrefix("applied table inet big"))
        #expect(try kernel.diff(RulesetBuilder.table(for: spec)).isEmpty)
        #expect(try ns.exec("nft", ["list", "table", "inet", "big"]).out == listed)
    }
}

@Suite(.serialized) struct DiffTests {
    @Test(arguments: Repo.exampleNames)
    func aSecondApplySendsNothingAndDiffSaysSo(name: String) throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("idem")
        let first = try Repo.run(Repo.nftpool, ["apply", "--netns", ns.name, specPath(name)])
        #expect(first.status == 0, "\(first.err)")
        let kernel = try NetfilterKernel(netns: ns.name)
        let generation = try kernel.generation()
        let again = try Repo.run(Repo.nftpool, ["apply", "--netns", ns.name, specPath(name)])
        #expect(again.status == 0)
        #expect(again.out.hasSuffix("is up to date: nothing sent\n"), "\(again.out)")
        #expect(try kernel.generation() == generation, "no transaction at all")
        let diff = try Repo.run(Repo.nftpool, ["diff", "--netns", ns.name, specPath(name)])
        #expect(diff.status == 0 && diff.out.hasSuffix("is up to date\n"))
    }

    @Test func disablingOneBackendRewritesOnlyItsSlots() throws {
        try ScratchNamespace.requireKernelTools()
        let ns = try ScratchNamespace("flip")
        let kernel = try NetfilterKernel(netns: ns.name)
        var spec = try loadSpec("source-hash")
        let before = RulesetBuilder.table(for: spec)
        try kernel.apply(before)
        spec.pools[0].backends[1].state = .disabled
        let after = RulesetBuilder.table(for: spec)
        let held = before.set(named: "pool-sessions-slots")!.elements.filter {
            $0.data == .values([.address(spec.pools[0].backends[1].address), .port(spec.pools[0].backends[1].port)])
        }.count
        #expect(held > 0)
        let diff = try Repo.run(Repo.nftpool, ["diff", "--netns", ns.name, "-"], stdin: sourceHashSpecWithBackend1Disabled())
        #expect(diff.status == 3)
        #expect(diff.out == "- \(held) elements of pool-sessions-slots\n+ \(held) elements of pool-sessions-slots\n")
        let generation = try kernel.generation()
        let report = try kernel.apply(after)
        #expect(report.messages == 2, "one DELSETELEM and one NEWSETELEM chunk")
        #expect(try kernel.generation() == generation &+ 1)
        let golden = try ScratchNamespace("flip-golden")
        #expect(try golden.exec("nft", ["-f", "-"], stdin: NftRenderer.script(after)).status == 0)
        #expect(Listing.normalized(try ns.exec("nft", ["list", "table", "inet", "nftpool"]).out)
            == Listing.normalized(try golden.exec("nft", ["list", "table", "inet", "nftpool"]).out))
    }
}

/// rulesets/source-hash.yaml with its second backend disabled, as spec text for the CLI.
func sourceHashSpecWithBackend1Disabled() throws -> String {
    let text = try String(contentsOfFile: specPath("source-hash"), encoding: .utf8)
    let edited = text.replacingOccurrences(
        of: "      - address: 10.20.1.2\n", with: "      - address: 10.20.1.2\n        state: disabled\n")
    precondition(edited != text, "source-hash.yaml no longer lists 10.20.1.2")
    return edited
}
