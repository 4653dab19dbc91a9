import Kernel
import PoolSpec
import Ruleset

/// The daemon's kernel with its observers told of every transaction (time, messages) and every failed
/// request, so that metrics count what DaemonCore sends without DaemonCore knowing of them.
final class ObservedKernel: KernelClient {
    let base: any KernelClient
    let observers: [any DaemonObserver]

    init(_ base: any KernelClient, observers: [any DaemonObserver]) {
        self.base = base
        self.observers = observers
    }

    private func timed(_ body: () throws(KernelError) -> NetfilterKernel.ApplyReport) throws(KernelError) -> NetfilterKernel.ApplyReport {
        let start = ContinuousClock.now
        do {
            let report = try body()
            let took = start.duration(to: .now)
            for o in observers { o.applied(took: took, messages: report.messages) }
            return report
        } catch {
            let took = start.duration(to: .now)
            for o in observers { o.applied(took: took, messages: nil) }
            throw error
        }
    }

    private func counted<T>(_ body: () throws(KernelError) -> T) throws(KernelError) -> T {
        do {
            return try body()
        } catch {
            for o in observers { o.netlinkFailed() }
            throw error
        }
    }

    func ownership(of name: String) throws(KernelError) -> NetfilterKernel.Ownership {
        try counted { () throws(KernelError) in try base.ownership(of: name) }
    }

    func apply(_ table: Table, force: Bool) throws(KernelError) -> NetfilterKernel.ApplyReport {
        try timed { () throws(KernelError) in try base.apply(table, force: force) }
    }

    func apply(_ table: Table, after previous: Table) throws(KernelError) -> NetfilterKernel.ApplyReport {
        try timed { () throws(KernelError) in try base.apply(table, after: previous) }
    }

    func diff(_ table: Table, force: Bool) throws(KernelError) -> [String] {
        try counted { () throws(KernelError) in try base.diff(table, force: force) }
    }

    func delete(tableNamed name: String, force: Bool) throws(KernelError) -> Bool {
        try counted { () throws(KernelError) in try base.delete(tableNamed: name, force: force) }
    }

    var lastCommitGeneration: UInt32? { base.lastCommitGeneration }

    func generation() throws(KernelError) -> UInt32 {
        try counted { () throws(KernelError) in try base.generation() }
    }

    func elements(of table: String, sets: [NamedSet]) throws(KernelError) -> [String: [Element]]? {
        try counted { () throws(KernelError) in try base.elements(of: table, sets: sets) }
    }

    func deleteConnections(to targets: [NetfilterKernel.ConnectionTarget]) throws(KernelError) -> [Int] {
        try counted { () throws(KernelError) in try base.deleteConnections(to: targets) }
    }

    func countConnections(to targets: [NetfilterKernel.ConnectionTarget]) throws(KernelError) -> [Int] {
        try counted { () throws(KernelError) in try base.countConnections(to: targets) }
    }
}
