import PoolSpec
import Ruleset

/// What the daemon needs from the kernel, so that its decisions can be tested against `FakeKernel`
/// without root. `NetfilterKernel` is the real one.
public protocol KernelClient: AnyObject {
    func ownership(of name: String) throws(KernelError) -> NetfilterKernel.Ownership
    /// Read back, diff, send only the difference, in one transaction.
    @discardableResult func apply(_ table: Table, force: Bool) throws(KernelError) -> NetfilterKernel.ApplyReport
    /// The incremental path: `previous` is what our own last commit left; falls back to `apply` when
    /// anyone committed since.
    @discardableResult func apply(_ table: Table, after previous: Table) throws(KernelError) -> NetfilterKernel.ApplyReport
    /// What apply would change; empty when the kernel holds exactly `table`.
    func diff(_ table: Table, force: Bool) throws(KernelError) -> [String]
    @discardableResult func delete(tableNamed name: String, force: Bool) throws(KernelError) -> Bool
    /// The generation our own last commit produced (nil when unknown): an nftables event of that
    /// generation is ours even where the committing thread cannot be recognised (another pid namespace).
    var lastCommitGeneration: UInt32? { get }
    /// The ruleset generation: one more per committed transaction, by anyone.
    func generation() throws(KernelError) -> UInt32
    /// The elements of the named sets as they are in the kernel, decoded by the declarations given (a
    /// set whose elements read differently, other key or data types, is left out; another modulus or
    /// size is not a difference); nil when the table does not exist.
    func elements(of table: String, sets: [NamedSet]) throws(KernelError) -> [String: [Element]]?
    /// Deletes the conntrack entries of connections DNATed to each target through its frontends; how
    /// many per target.
    func deleteConnections(to targets: [NetfilterKernel.ConnectionTarget]) throws(KernelError) -> [Int]
    /// How many connections DNATed to each target through its frontends are still open (not TIME_WAIT).
    func countConnections(to targets: [NetfilterKernel.ConnectionTarget]) throws(KernelError) -> [Int]
}

extension NetfilterKernel: KernelClient {
    /// The netlink port our transactions are sent from: nf_tables stamps the notifications of a
    /// transaction with it, so RulesetMonitor can tell our commits from anyone else's.
    public var portID: UInt32 { socket.portID }

    public var lastCommitGeneration: UInt32? { lastGeneration }
}
