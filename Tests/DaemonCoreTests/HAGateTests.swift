import Foundation
import PoolSpec
import Testing

@testable import Daemon

/// HAGate's track-file decisions: no root, no keepalived, time moved by the test. The failures it guards
/// against are the ones HATests measures for real (hung master resuming, failback, split brain).
final class HAGateTests {
    static let ha: HA = {
        let text = """
            table: t
            pools:
              - name: api
                frontends: [{address: 10.50.0.10, port: 6443}]
                snat: 10.60.0.100
                backends: [{address: 10.60.0.11}]
            ha:
              interface: eth0
              snatAddress: 10.60.0.100
              routerId: 51
              advertInterval: 200ms
              sync: {interface: eth2}
              nodes:
                - {name: lb-a, address: 10.50.0.2, syncAddress: 10.70.0.1, priority: 150}
                - {name: lb-b, address: 10.50.0.3, syncAddress: 10.70.0.2, priority: 100}
            """
        return try! SpecDecoder.decode(text).ha!
    }()

    let t0 = ContinuousClock.now

    func gate(_ name: String) -> HAGate {
        HAGate(table: "t", ha: Self.ha, node: Self.ha.nodes.first { $0.name == name }!, now: t0)
    }

    /// A master's beat counts `flows` connections, digests 1...flows, and carries them all (one slice).
    /// Each beat has a new sequence number.
    func beat(_ node: String, role: String, priority: Int, resynced: Bool = true, flows: Int? = nil) -> HAPeerBeat {
        seq += 1
        return HAPeerBeat(
            table: "t", node: node, role: role, priority: priority, resynced: resynced, flows: flows,
            sample: flows.map { n in (0..<n).map { String(UInt64($0 + 1), radix: 16) } }, slice: 0, slices: 1, tableDigest: "d", seq: seq)
    }
    var seq: UInt64 = 0

    /// A node's own connections: digests lo...hi.
    func local(_ lo: Int, _ hi: Int) -> Set<UInt64> { hi < lo ? [] : Set((lo...hi).map(UInt64.init)) }

    func at(_ ms: Int) -> ContinuousClock.Instant { t0 + .milliseconds(ms) }

    @Test func faultUntilTheTableIsLoadedThenNotResyncedThenReadyWhenAlone() {
        var g = gate("lb-a")
        #expect(g.decide(now: at(0), ready: false, yields: false).0.track == -254)
        #expect(g.decide(now: at(100), ready: true, yields: false).0.track == -253)
        // No master heard for a second: nothing to resync from.
        let (d, lines) = g.decide(now: at(1100), ready: true, yields: false)
        #expect(d.track == 0)
        #expect(lines.first?.contains("no master peer") == true)
        #expect(g.decide(now: at(1200), ready: true, yields: true).0.track == -254)
    }

    @Test func aReturningNodeStaysAtPriorityOneUntilItHoldsTheMastersConnections() {
        var a = gate("lb-a")
        // lb-b is master (holding, 254) and beats every 200 ms; lb-a counts before each of its own beats.
        func step(_ ms: Int, local n: Int, theirs: Int = 50) -> [String] {
            _ = a.heard(beat("lb-b", role: "MASTER", priority: 254, flows: theirs), now: at(ms - 50))
            return a.counted(local: local(1, n), now: at(ms))
        }
        for ms in stride(from: 200, through: 2000, by: 200) { _ = step(ms, local: 10) }
        #expect(a.decide(now: at(2000), ready: true, yields: false).0.track == -253, "a master is there: no resync by timeout")
        _ = step(2200, local: 49)
        #expect(a.decide(now: at(2200), ready: true, yields: false).0.track == -253, "one matching count is not enough")
        _ = step(2400, local: 20)
        _ = step(2600, local: 50)
        #expect(a.decide(now: at(2600), ready: true, yields: false).0.track == -253, "a dip starts the count again")
        let lines = step(2800, local: 51)
        #expect(lines.first?.contains("resynced") == true)
        #expect(a.decide(now: at(2800), ready: true, yields: false).0.track == 0)
        #expect(a.beat(flows: nil, tableDigest: "d", seq: 2).resynced)
    }

    @Test func aMasterHoldsTheVIPsWhileAHigherPriorityPeerIsGoneOrNotResynced() {
        var b = gate("lb-b")
        // Both start; lb-a is master with no connections yet: lb-b's count (0) matches at once.
        for ms in stride(from: 0, through: 400, by: 200) {
            _ = b.heard(beat("lb-a", role: "MASTER", priority: 150, flows: 0), now: at(ms))
            _ = b.counted(local: local(1, 0), now: at(ms + 10))
        }
        #expect(b.isResynced)
        b.roleChanged("BACKUP")
        #expect(b.decide(now: at(500), ready: true, yields: false).0.track == 0)
        // lb-a stops (SIGSTOP): lb-b becomes master and holds the VIPs against lb-a's return.
        b.roleChanged("MASTER")
        let held = b.decide(now: at(1300), ready: true, yields: false).0
        #expect(held.track == 51)
        #expect(held.reason.contains("lb-a") && held.reason.contains("not heard"))
        #expect(b.priority == 151, "one above lb-a's 150")
        #expect(b.wantsCount(now: at(1300)) == false, "nobody to count for")
        // lb-b hangs in turn while holding: lb-a, master again, holds one above lb-b's 151.
        var a = gate("lb-a")
        _ = a.heard(beat("lb-b", role: "MASTER", priority: 151, flows: 0), now: at(0))
        _ = a.counted(local: local(1, 0), now: at(10))
        _ = a.counted(local: local(1, 0), now: at(20))
        a.roleChanged("MASTER")
        #expect(a.decide(now: at(1000), ready: true, yields: false).0.track == 2, "152")
        // Back to lb-b: lb-a resumes, not resynced: still held, and lb-b counts its connections for it.
        _ = b.heard(beat("lb-a", role: "MASTER", priority: 150, resynced: false), now: at(6000))
        #expect(b.isResynced, "a master of lower effective priority does not make the holder pending")
        #expect(b.decide(now: at(6000), ready: true, yields: false).0.track == 51)
        #expect(b.wantsCount(now: at(6000)))
        // lb-a resynced: once it has said so for a peer timeout, the hold ends and lb-a (150) may preempt lb-b (100).
        for ms in stride(from: 6200, through: 6800, by: 200) {
            _ = b.heard(beat("lb-a", role: "BACKUP", priority: 150, resynced: true), now: at(ms))
        }
        #expect(b.decide(now: at(6800), ready: true, yields: false).0.track == 51, "600 ms of resynced beats")
        _ = b.heard(beat("lb-a", role: "BACKUP", priority: 150, resynced: true), now: at(7000))
        #expect(b.decide(now: at(7000), ready: true, yields: false).0.track == 0)
    }

    @Test func staleConnectionsDoNotPassForResyncedOnes() {
        var a = gate("lb-a")
        // 100 connections that ended while lb-a was stopped still sit in its table as established; it lacks
        // the master's 50. The count alone would pass; the sample does not.
        for ms in stride(from: 200, through: 3000, by: 200) {
            _ = a.heard(beat("lb-b", role: "MASTER", priority: 151, flows: 50), now: at(ms - 50))
            _ = a.counted(local: local(1001, 1100), now: at(ms))
        }
        let d = a.decide(now: at(3000), ready: true, yields: false).0
        #expect(d.track == -253)
        #expect(d.reason.contains("50 of its 50 in slice 1 of 1 missing"), "\(d.reason)")
        _ = a.counted(local: local(1, 50).union(local(1001, 1100)), now: at(3200))
        _ = a.counted(local: local(1, 50).union(local(1001, 1100)), now: at(3400))
        #expect(!a.isResynced, "two counts against the same master beat are one match")
        _ = a.heard(beat("lb-b", role: "MASTER", priority: 151, flows: 50), now: at(3450))
        _ = a.counted(local: local(1, 50).union(local(1001, 1100)), now: at(3500))
        #expect(a.isResynced)
    }

    @Test func aSingleMissingConnectionAmongManyHoldsTheResync() {
        var a = gate("lb-a")
        // 6,000 connections on the master: three slices of 2,500; this node lacks one (digest 5,999).
        let b = HAGate(table: "t", ha: Self.ha, node: Self.ha.nodes[1], now: t0)
        let all = (1...6000).map(UInt64.init)
        var mine = Set(all)
        mine.remove(5999)
        for n in 0..<9 {
            var master = b.beat(flows: all, tableDigest: "d", seq: UInt64(n))
            master.role = "MASTER"
            master.priority = 151
            #expect(master.slices == 3 && master.sample?.count == (n % 3 == 2 ? 1000 : 2500))
            _ = a.heard(master, now: at(200 * n + 100))
            _ = a.counted(local: mine, now: at(200 * n + 150))
        }
        #expect(!a.isResynced, "the slice holding 5,999 fails every third beat")
        mine.insert(5999)
        for n in 9..<12 {
            var master = b.beat(flows: all, tableDigest: "d", seq: UInt64(n))
            master.role = "MASTER"
            master.priority = 151
            _ = a.heard(master, now: at(200 * n + 100))
            _ = a.counted(local: mine, now: at(200 * n + 150))
        }
        #expect(a.isResynced, "three slices in a row passed")
    }

    @Test func aBeatThatWaitedThroughAStopIsOldNews() {
        var b = gate("lb-b")
        b.roleChanged("MASTER")
        // Queued in the socket at 100 ms while lb-b was stopped, read at 6 s.
        #expect(b.heard(beat("lb-a", role: "BACKUP", priority: 1, resynced: false), at: at(100), now: at(6000)).isEmpty)
        #expect(b.peers.isEmpty)
    }

    @Test func theLowerPriorityNodeNeverHoldsAgainstAPeerItOutranks() {
        var a = gate("lb-a")
        _ = a.decide(now: at(1100), ready: true, yields: false)
        a.roleChanged("MASTER")
        #expect(a.decide(now: at(1200), ready: true, yields: false).0.track == 0, "lb-b cannot preempt lb-a")
    }

    @Test func aStallMakesTheNodePendingAndItAsksForCounts() {
        var a = gate("lb-a")
        _ = a.decide(now: at(1100), ready: true, yields: false)
        a.roleChanged("MASTER")
        #expect(a.isResynced)
        let lines = a.stalled(for: .seconds(5), now: at(6100))
        #expect(lines.first?.contains("did not run for 5s") == true)
        #expect(a.decide(now: at(6100), ready: true, yields: false).0.track == -253)
        #expect(a.wantsCount(now: at(6100)))
        let b = a.beat(flows: [7, 8, 9], tableDigest: "x", seq: 9)
        #expect(b.resynced == false && b.flows == 3 && b.sample == ["7", "8", "9"] && b.slices == 1)
    }

    @Test func afterASplitBrainTheNodeThatLosesTheElectionResyncs() {
        var a = gate("lb-a")
        _ = a.decide(now: at(1100), ready: true, yields: false)
        a.roleChanged("MASTER")
        // lb-b was cut off, became master and holds (254): back in touch, lb-a loses and must resync.
        _ = a.heard(beat("lb-b", role: "MASTER", priority: 254, flows: 40), now: at(5000))
        #expect(!a.isResynced)
        #expect(a.decide(now: at(5000), ready: true, yields: false).0.track == -253)
        // lb-b, master at 254, hearing lb-a (a master of lower effective priority) stays resynced.
        var b = gate("lb-b")
        _ = b.decide(now: at(1100), ready: true, yields: false)
        b.roleChanged("MASTER")
        #expect(b.decide(now: at(1200), ready: true, yields: false).0.track == 51)
        _ = b.heard(beat("lb-a", role: "MASTER", priority: 150), now: at(5000))
        #expect(b.isResynced)
        #expect(b.decide(now: at(5000), ready: true, yields: false).0.track == 51, "lb-a is heard but not yet resynced as far as lb-b knows")
    }

    @Test func beatsFromStrangersAndOtherTablesAreIgnored() {
        var a = gate("lb-a")
        _ = a.heard(HAPeerBeat(table: "other", node: "lb-b", role: "MASTER", priority: 254, resynced: true, flows: 1, tableDigest: "d", seq: 1), now: at(0))
        _ = a.heard(beat("lb-z", role: "MASTER", priority: 254), now: at(0))
        _ = a.heard(beat("lb-a", role: "MASTER", priority: 254), now: at(0))
        #expect(a.peers.isEmpty)
        #expect(HAPeerBeat.decode(Array("{\"v\":2}".utf8)) == nil)
        #expect(HAPeerBeat.decode(Array("not json".utf8)) == nil)
        let b = beat("lb-b", role: "BACKUP", priority: 100, flows: 7)
        #expect(HAPeerBeat.decode(b.encoded()) == b)
    }
}
