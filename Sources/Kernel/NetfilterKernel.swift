import CNetfilter
import Foundation
import Synchronization
import Ruleset

/// The kernel's nftables, reached over netlink. Only table inet <name> of the spec is ever written. Reads
/// ask for that table only, except the chain dump: the kernel lists every inet table's chains, and all
/// but ours are dropped as they are parsed.
public final class NetfilterKernel {
    let socket: NetlinkSocket
    /// A second socket, opened with the first (in its namespace), that reads half of the sets' elements
    /// while the first reads the other half: the kernel fills a dump in the reading thread, so two
    /// readers use both cores (TableReader.readElements).
    let secondSocket: NetlinkSocket
    private var sequence: UInt32
    /// The ruleset generation right after our last commit (see IncrementalApply).
    private(set) var lastGeneration: UInt32?

    public enum Ownership: Equatable, Sendable {
        case absent
        case ours
        case foreign
    }

    public struct ApplyReport: Equatable, Sendable {
        /// Messages in the transaction (objects and element chunks), BEGIN/END not counted; 0: nothing
        /// differed and nothing was sent.
        public var messages: Int
        /// A foreign table was taken over (--force) and replaced whole.
        public var replaced: Bool
        public var bytes: Int
        /// Times the transaction was refused as stale (someone committed after our read) and redone.
        public var retries = 0
    }

    /// With `netns`, the socket is opened inside that named network namespace (`ip netns`); a socket
    /// stays in the namespace it was made in, so the thread switches back at once and nothing else moves.
    public init(netns: String? = nil) throws(KernelError) {
        if let netns {
            (socket, secondSocket) = try Self.inNamespace(netns) { () throws(KernelError) in try (NetlinkSocket(), NetlinkSocket()) }
        } else {
            (socket, secondSocket) = (try NetlinkSocket(), try NetlinkSocket())
        }
        sequence = UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970))
    }

    /// Moves the calling thread into the named network namespace for good (`nftpool run --netns` does
    /// this and then re-executes itself, so that every thread, probes included, lives there).
    public static func enterNamespace(_ name: String) throws(KernelError) {
        guard !name.contains("/"), !name.isEmpty else { throw KernelError.namespace(name, EINVAL) }
        let target = open("/var/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        guard target >= 0 else { throw KernelError.namespace(name, nftpool_errno()) }
        defer { close(target) }
        guard nftpool_enter_net_namespace(target) == 0 else { throw KernelError.namespace(name, nftpool_errno()) }
    }

    static func inNamespace<T>(_ name: String, _ body: () throws(KernelError) -> T) throws(KernelError) -> T {
        guard !name.contains("/"), !name.isEmpty else { throw KernelError.namespace(name, EINVAL) }
        let home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard home >= 0 else { throw KernelError.namespace(name, nftpool_errno()) }
        defer { close(home) }
        let target = open("/var/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        guard target >= 0 else { throw KernelError.namespace(name, nftpool_errno()) }
        defer { close(target) }
        guard nftpool_enter_net_namespace(target) == 0 else { throw KernelError.namespace(name, nftpool_errno()) }
        defer { _ = nftpool_enter_net_namespace(home) }
        return try body()
    }

    func nextSequence() -> UInt32 {
        sequence &+= 1
        return sequence
    }

    /// Whether table inet `name` exists and carries nftpool's mark.
    public func ownership(of name: String) throws(KernelError) -> Ownership {
        guard let comment = try tableComment(name) else { return .absent }
        return comment == RulesetBuilder.ownerComment ? .ours : .foreign
    }

    /// Sends one request outside any batch and returns its errno (0 = fine), the data messages, and
    /// whether the kernel marked the dump interrupted (NLM_F_DUMP_INTR: the ruleset changed meanwhile).
    func request(
        _ type: nf_tables_msg_types, family: Int32 = Int32(NFPROTO_INET), flags: Int32 = 0,
        payload: (UnsafeMutablePointer<nlmsghdr>) -> Void = { _ in }
    ) throws(KernelError) -> (errno: Int32, messages: [[UInt8]], interrupted: Bool) {
        try Self.request(type, family: family, flags: flags, sequence: nextSequence(), on: socket, payload: payload)
    }

    /// `request` on any socket with the sequence number given: what a second reading thread uses, as
    /// it must not touch the kernel object's own sequence or socket.
    static func request(
        _ type: nf_tables_msg_types, family: Int32 = Int32(NFPROTO_INET), flags: Int32 = 0, sequence seq: UInt32,
        on socket: NetlinkSocket, payload: (UnsafeMutablePointer<nlmsghdr>) -> Void = { _ in }
    ) throws(KernelError) -> (errno: Int32, messages: [[UInt8]], interrupted: Bool) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let length = buffer.withUnsafeMutableBytes { raw -> Int in
            let nlh = nftnl_nlmsg_build_hdr(
                raw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt16(type.rawValue), UInt16(family),
                UInt16(NLM_F_ACK | flags), seq)!
            payload(nlh)
            return Int(nlh.pointee.nlmsg_len)
        }
        try socket.send(Array(buffer[0..<length]))
        let reply = try socket.collect(expected: [seq])
        return (reply.status[seq] ?? 0, reply.messages, reply.interrupted.contains(seq))
    }

    /// Sends prepared netlink messages (each asking for an ACK) and waits for the replies to `sequences`.
    func exchange(_ bytes: [UInt8], sequences: Set<UInt32>) throws(KernelError) -> NetlinkSocket.Replies {
        try socket.send(bytes)
        return try socket.collect(expected: sequences)
    }

    /// nil when the table does not exist; "" when it has no comment.
    func tableComment(_ name: String) throws(KernelError) -> String? {
        let reply = try request(NFT_MSG_GETTABLE) { nlh in
            let t = nftnl_table_alloc()!
            defer { nftnl_table_free(t) }
            nftnl_table_set_str(t, UInt16(NFTNL_TABLE_NAME.rawValue), name)
            nftnl_table_nlmsg_build_payload(nlh, t)
        }
        let e = reply.errno
        if e == ENOENT { return nil }
        if e != 0 { throw KernelError.system("cannot read table inet \(name)", e) }
        guard var message = reply.messages.first else { return nil }
        return message.withUnsafeMutableBytes { raw -> String in
            let nlh = raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
            let t = nftnl_table_alloc()!
            defer { nftnl_table_free(t) }
            guard nftnl_table_nlmsg_parse(nlh, t) >= 0 else { return "" }
            var len: UInt32 = 0
            guard let data = nftnl_table_get_data(t, UInt16(NFTNL_TABLE_USERDATA.rawValue), &len) else { return "" }
            let bytes = Array(UnsafeRawBufferPointer(start: data, count: Int(len)))
            return UserData.string(0, in: bytes) ?? ""
        }
    }

    /// Makes the kernel hold exactly `table`, in one transaction, so packets see the old table or the new
    /// one, never a mix. Only what differs from the kernel's current table is sent; when nothing differs
    /// nothing is sent. A foreign table taken over with `force` is deleted and created whole. The batch
    /// carries the generation the plan was read at: if anyone commits in between, the kernel refuses it
    /// whole and the plan is read and made again.
    @discardableResult
    public func apply(_ table: Table, force: Bool = false) throws(KernelError) -> ApplyReport {
        try apply(table, force: force, firstRead: nil)
    }

    /// `apply(build())`, with the kernel's table read while `build` runs on another thread: at 10,000
    /// backends building the desired table and reading the kernel's back take about as long each.
    @discardableResult
    public func apply(tableNamed name: String, force: Bool = false, building build: @escaping @Sendable () -> Table)
        throws(KernelError) -> ApplyReport
    {
        // Written by the builder, read after group.wait(). The wanted sets' digests are made there too,
        // unless the read has found no table of ours to compare them with (a first apply): a no-change
        // apply compares them with the kernel's (8 ms for 80,000 elements at 10,000 backends).
        nonisolated(unsafe) var built: (table: Table, digests: [String: ElementDigest]?)?
        let willCompare = CompareFlag()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            let table = build()
            built = (table, willCompare.value.withLock { $0 } ? TablePlan.digests(table) : nil)
        }
        let first: (found: Found, generation: UInt32)
        do throws(KernelError) {
            first = try read(name)
        } catch {
            group.wait()
            throw error
        }
        if case .ours = first.found {} else { willCompare.value.withLock { $0 = false } }
        group.wait()
        var table: Table? = built?.table
        let digests = built?.digests
        built = nil
        guard let wanted = table, wanted.name == name else { preconditionFailure("the table built is not table inet \(name)") }
        defer { Self.releaseElsewhere(&table) }
        return try apply(wanted, force: force, firstRead: first, digests: digests)
    }

    /// Drops `table` on another thread. A built table of 10,000 backends holds 80,000 elements of two
    /// arrays each; freeing them took about 5 ms that whoever applied need not wait for.
    static func releaseElsewhere(_ table: inout Table?) {
        let last = table
        table = nil
        DispatchQueue.global(qos: .utility).async { withExtendedLifetime(last) {} }
    }

    private final class CompareFlag: Sendable {
        let value = Mutex(true)
    }

    private func apply(
        _ table: Table, force: Bool, firstRead: (found: Found, generation: UInt32)?, digests: [String: ElementDigest]? = nil
    ) throws(KernelError) -> ApplyReport {
        var retries = 0
        var pending = firstRead
        while true {
            let read: (found: Found, generation: UInt32)
            if let first = pending {
                read = first
                pending = nil
            } else {
                read = try self.read(table.name)
            }
            let plan = try Self.plan(read.found, for: table, force: force, digests: digests), generation = read.generation
            var batch = NetlinkBatch(firstSequence: nextSequence(), generation: generation)
            switch plan {
            case .create:
                TableMessages.create(table, in: &batch)
            case .takeOver:
                TableMessages.deleteTable(table.name, in: &batch)
                TableMessages.create(table, in: &batch)
            case .change(let p):
                if p.isEmpty { return ApplyReport(messages: 0, replaced: false, bytes: 0, retries: retries) }
                p.write(into: &batch, table: table)
            }
            beforeCommit?()
            do throws(KernelError) {
                try commit(&batch)
            } catch .stale {
                retries += 1
                if retries == Self.attempts { throw .busy("applied table inet \(table.name)", attempts: retries) }
                continue
            }
            return ApplyReport(messages: batch.messageCount, replaced: plan.isTakeOver, bytes: batch.buffer.count, retries: retries)
        }
    }

    /// How often a read or a commit is tried while other writers keep committing.
    static let attempts = 5

    /// Tests only: runs between planning and committing, to commit something in between.
    var beforeCommit: (() -> Void)?

    /// What apply would change, nothing sent. Empty when the kernel already holds exactly `table`.
    public func diff(_ table: Table, force: Bool = false) throws(KernelError) -> [String] {
        try plan(for: table, force: force).plan.lines(table)
    }

    enum Plan {
        case create
        case takeOver
        case change(TablePlan)

        var isTakeOver: Bool { if case .takeOver = self { return true } else { return false } }

        func lines(_ table: Table) -> [String] {
            switch self {
            case .create: return ["+ table inet \(table.name) (\(table.sets.count) sets and maps, \(table.chains.count) chains)"]
            case .takeOver: return ["- table inet \(table.name) (not made by nftpool)", "+ table inet \(table.name)"]
            case .change(let p): return p.lines
            }
        }
    }

    /// What the kernel holds under a table's name.
    enum Found {
        case absent
        case foreign
        case ours(KernelSnapshot)
    }

    /// Table inet `name` as the kernel holds it, and the generation it was read at (one consistent read).
    func read(_ name: String) throws(KernelError) -> (found: Found, generation: UInt32) {
        let read = try consistentRead { () throws(KernelError) -> Found in
            switch try ownership(of: name) {
            case .absent: return .absent
            case .foreign: return .foreign
            case .ours:
                guard let actual = try readSnapshot(of: name) else { return .absent }
                return .ours(actual)
            }
        }
        return (read.value, read.generation)
    }

    static func plan(_ found: Found, for table: Table, force: Bool, digests: [String: ElementDigest]? = nil) throws(KernelError) -> Plan {
        switch found {
        case .absent: return .create
        case .foreign:
            if !force { throw KernelError.notOurs(table: table.name) }
            return .takeOver
        case .ours(let actual): return .change(TablePlan(from: actual, to: table, digests: digests))
        }
    }

    /// The plan and the generation it was read at (one consistent read).
    func plan(for table: Table, force: Bool) throws(KernelError) -> (plan: Plan, generation: UInt32) {
        let read = try read(table.name)
        return (try Self.plan(read.found, for: table, force: force), read.generation)
    }

    /// Deletes table inet `name` if it is nftpool's. Returns false when there was none. Guarded by the
    /// generation like apply: a table that changed owner in between is never deleted.
    @discardableResult
    public func delete(tableNamed name: String, force: Bool = false) throws(KernelError) -> Bool {
        for _ in 0..<Self.attempts {
            let (ownership, generation) = try consistentRead { () throws(KernelError) -> Ownership in try self.ownership(of: name) }
            if ownership == .absent { return false }
            if ownership == .foreign && !force { throw KernelError.notOurs(table: name) }
            var batch = NetlinkBatch(firstSequence: nextSequence(), generation: generation)
            TableMessages.deleteTable(name, in: &batch)
            do throws(KernelError) {
                try commit(&batch)
            } catch .stale {
                continue
            }
            return true
        }
        throw .busy("deleted table inet \(name)", attempts: Self.attempts)
    }

    /// The ruleset generation: it advances by one with every committed transaction.
    public func generation() throws(KernelError) -> UInt32 {
        let reply = try request(NFT_MSG_GETGEN, family: AF_UNSPEC)
        if reply.errno != 0 { throw KernelError.system("cannot read the ruleset generation", reply.errno) }
        guard var message = reply.messages.first else { throw KernelError.system("no generation in the reply", EPROTO) }
        return message.withUnsafeMutableBytes { raw -> UInt32 in
            let g = nftnl_gen_alloc()!
            defer { nftnl_gen_free(g) }
            _ = nftnl_gen_nlmsg_parse(raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self), g)
            return nftnl_gen_get_u32(g, UInt16(NFTNL_GEN_ID))
        }
    }

    /// Sends the batch and waits for every message's answer. A batch with a generation that is no longer
    /// current is refused whole (ERESTART on BATCH_BEGIN, nothing else answered): `.stale`.
    func commit(_ batch: inout NetlinkBatch) throws(KernelError) {
        lastGeneration = nil
        let begin = batch.beginSequence
        let first = begin + 1
        let end = batch.finish()
        sequence = end
        try socket.send(batch.buffer)
        let expected = Set((first..<(end - 1)))
        let reply = try socket.collect(expected: expected, abortOn: begin)
        if let e = reply.status[begin], e != 0 {
            if e == ERESTART, let generation = batch.generation { throw KernelError.stale(generation: generation) }
            throw KernelError.refused([KernelError.Refusal(object: "the transaction", errno: e, modules: [])])
        }
        let refusals = expected.sorted().compactMap { seq -> KernelError.Refusal? in
            guard let e = reply.status[seq], e != 0 else { return nil }
            return batch.refusal(seq, errno: e, ack: reply.extAcks[seq])
        }
        if !refusals.isEmpty { throw KernelError.refused(refusals) }
        // Our batch was accepted at generation G, so our commit made it G + 1 (0 is skipped). A wrong
        // guess costs nothing: the next guarded batch is refused as stale and planned again.
        if let g = batch.generation {
            lastGeneration = g &+ 1 == 0 ? 1 : g &+ 1
        } else {
            lastGeneration = try? generation()
        }
    }
}
