import Probes

/// What `nftpool run` tells the world beside its log and status file: its metrics server and its service
/// manager (sd_notify) listen here. Each call comes from the daemon's loop (probe results from the
/// probes' event loops) and must return at once: an observer keeps what it is told and does its own
/// work (a scrape, a datagram) elsewhere, so that nothing it does can hold up a health flip.
public protocol DaemonObserver: AnyObject, Sendable {
    /// The daemon holds its table's lock and is about to apply: bind what must be bound now, so that a
    /// second daemon of the table fails on the lock (naming its holder), not here. Throwing stops the daemon.
    func prepare() throws
    /// The first apply landed: the kernel holds the table.
    func started()
    /// The loop handled an event (a tick comes every 100 ms): it is alive.
    func loopAlive(at now: ContinuousClock.Instant)
    /// What `nftpool status` will read: every backend's state, health and slots, and the kernel's sync.
    func published(_ status: StatusFile.Document)
    func probed(_ id: String, _ result: ProbeResult, took: Duration)
    func transition(_ id: String, _ transition: HealthTracker.Transition)
    /// A transaction the daemon sent: its time and message count, or nil messages when the kernel refused it.
    func applied(took: Duration, messages: Int?)
    /// Any other netlink request that failed (a read-back, a diff, a conntrack delete).
    func netlinkFailed()
    /// SIGHUP: a reload starts; `reloaded` says whether the new spec runs now.
    func reloading()
    func reloaded(ok: Bool)
    func stopping()
}

extension DaemonObserver {
    public func prepare() throws {}
    public func started() {}
    public func loopAlive(at now: ContinuousClock.Instant) {}
    public func published(_ status: StatusFile.Document) {}
    public func probed(_ id: String, _ result: ProbeResult, took: Duration) {}
    public func transition(_ id: String, _ transition: HealthTracker.Transition) {}
    public func applied(took: Duration, messages: Int?) {}
    public func netlinkFailed() {}
    public func reloading() {}
    public func reloaded(ok: Bool) {}
    public func stopping() {}
}
