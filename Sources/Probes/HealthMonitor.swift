import NIOConcurrencyHelpers
import NIOCore
import PoolSpec

/// Probes every registered target on its own schedule: a backend that hangs delays only its own probes.
/// Reports each rise or fall to the handler, in the order they happen for that backend.
///
/// Scheduling, probing and the rise/fall bookkeeping all run on the prober's event loops; only transitions
/// leave them. A task per backend sleeping on Swift's cooperative pool cost a thread hop or two per probe
/// (timer thread → pool → event loop → pool): at 1,000 probes a second that was a quarter of a core,
/// most of it the kernel switching threads.
public final class HealthMonitor: Sendable {
    /// Called on an event loop thread: keep it short and do not block.
    public typealias Handler = @Sendable (_ id: String, _ transition: HealthTracker.Transition) -> Void
    /// Every probe's result and how long it took (for metrics); called on an event loop thread like
    /// `Handler`.
    public typealias Observer = @Sendable (_ id: String, _ result: ProbeResult, _ took: Duration) -> Void

    public struct Status: Sendable {
        public var state: HealthTracker.State
        public var reason: String
        public var since: ContinuousClock.Instant
    }

    private let prober: Prober
    private let handler: Handler
    private let observer: Observer?
    private let wheels: [ProbeWheel]
    private let probes = NIOLockedValueBox<(all: [String: Schedule], placed: Int)>(([:], 0))

    public init(prober: Prober, observer: Observer? = nil, handler: @escaping Handler) {
        self.prober = prober
        self.handler = handler
        self.observer = observer
        wheels = prober.group.makeIterator().map { ProbeWheel(loop: $0) }
    }

    /// Starts probing `target` under `id`, beginning in `initial`; a running id with the same target keeps
    /// its state and schedule (a reload does not reset health).
    public func watch(_ id: String, target: ProbeTarget, initial: HealthTracker.State, reason: String) {
        let started: (Schedule, Int)? = probes.withLockedValue { probes in
            if let running = probes.all[id], running.target == target { return nil }
            probes.all[id]?.stop()
            // Backends are dealt round the loops in turn.
            let wheel = wheels[probes.placed % wheels.count]
            probes.placed += 1
            let s = Schedule(
                id: id, target: target, initial: initial, reason: reason, prober: prober, wheel: wheel, handler: handler,
                observer: observer)
            probes.all[id] = s
            return (s, probes.all.count)
        }
        guard let (schedule, watched) = started else { return }
        // First probes are spread over a window that grows by 0.1 ms per watched backend, from a fifth of
        // an interval up to a whole one: 10,000 backends all starting within 200 ms timed out by the thousand.
        let window = min(schedule.target.check.interval, max(schedule.target.check.interval / 5, .microseconds(100) * watched))
        schedule.begin(within: window)
    }

    /// Stops probing every id not in `keep`.
    public func retain(only keep: Set<String>) {
        let stopped = probes.withLockedValue { probes in
            let gone = probes.all.filter { !keep.contains($0.key) }
            for id in gone.keys { probes.all[id] = nil }
            return gone.values
        }
        stopped.forEach { $0.stop() }
    }

    /// Takes a backend down from outside its probes (passive health). Its probes restart at fastInterval
    /// and it comes back after `rise` of them. Returns at once; `done` gets the transition (nil when the
    /// probes already had it down, or the id is not watched), on the backend's event loop.
    public func markDown(_ id: String, reason: String, done: @escaping @Sendable (HealthTracker.Transition?) -> Void) {
        guard let schedule = probes.withLockedValue({ $0.all[id] }) else { return done(nil) }
        schedule.markDown(reason: reason, done: done)
    }

    public func stopAll() {
        retain(only: [])
    }

    public func status() -> [String: Status] {
        probes.withLockedValue { $0.all }.mapValues { $0.status }
    }
}

/// One backend's probe loop, confined to one event loop; its tracker is also read by `status`, hence
/// the lock.
private final class Schedule: Sendable {
    let id: String
    let target: ProbeTarget
    let wheel: ProbeWheel
    let address: Result<SocketAddress, Error>
    let prober: Prober
    let handler: HealthMonitor.Handler
    let observer: HealthMonitor.Observer?
    private let tracker: NIOLockedValueBox<HealthTracker>
    /// Whether the loop was stopped, and the jitter's generator; touched only on the wheel's loop.
    private let stopped: NIOLoopBoundBox<Bool>
    /// Jitter needs no strong randomness, and the system generator costs a getrandom call per number.
    private let random: NIOLoopBoundBox<SplitMix64>
    /// http(s): the connection kept between probes.
    private let kept: KeptConnection?
    /// Bumped when the schedule restarts (markDown): a wake or a probe result of an older epoch is dropped.
    private let epoch: NIOLoopBoundBox<Int>

    init(id: String, target: ProbeTarget, initial: HealthTracker.State, reason: String, prober: Prober,
         wheel: ProbeWheel, handler: @escaping HealthMonitor.Handler, observer: HealthMonitor.Observer?) {
        self.id = id
        self.target = target
        self.prober = prober
        self.handler = handler
        self.observer = observer
        self.wheel = wheel
        tracker = NIOLockedValueBox(HealthTracker(check: target.check, initial: initial, now: .now, reason: reason))
        address = Prober.socketAddress(of: target)
        random = .makeBoxSendingValue(SplitMix64(seed: .random(in: .min ... .max)), eventLoop: wheel.loop)
        stopped = .makeBoxSendingValue(false, eventLoop: wheel.loop)
        epoch = .makeBoxSendingValue(0, eventLoop: wheel.loop)
        kept = target.check.type == .tcp ? nil : KeptConnection()
    }

    var status: HealthMonitor.Status {
        tracker.withLockedValue { HealthMonitor.Status(state: $0.state, reason: $0.lastReason, since: $0.since) }
    }

    func begin(within window: Duration) {
        wheel.loop.execute { self.wake(after: window * Double.random(in: 0..<1, using: &self.random.value)) }
    }

    func stop() {
        wheel.loop.execute {
            self.stopped.value = true
            self.kept?.close()
        }
    }

    func markDown(reason: String, done: @escaping @Sendable (HealthTracker.Transition?) -> Void) {
        wheel.loop.execute {
            guard !self.stopped.value else { return done(nil) }
            let transition = self.tracker.withLockedValue { $0.markDown(reason: reason, at: .now) }
            if transition != nil {
                // Probe again soon, not at the end of a stable interval; a probe in flight is disregarded.
                self.epoch.value += 1
                self.kept?.close()
                self.wake(after: self.target.check.fastInterval)
            }
            done(transition)
        }
    }

    private func wake(after delay: Duration) {
        guard !stopped.value else { return }
        let now = epoch.value
        wheel.schedule(after: delay) {
            guard self.epoch.value == now else { return }
            self.probe()
        }
    }

    private func probe() {
        guard !stopped.value else { return }
        let probeEpoch = epoch.value
        let began = ContinuousClock.now
        let started: EventLoopFuture<ProbeResult>
        switch address {
        case .success(let address): started = prober.start(target, at: address, on: wheel.loop, keeping: kept)
        case .failure: started = prober.start(target, on: wheel.loop)  // says why the address is unusable
        }
        started.whenSuccess { result in
            guard self.epoch.value == probeEpoch else { return }
            guard !self.stopped.value else {
                self.kept?.close()  // the probe may have kept a connection after stop() closed the last
                return
            }
            self.observer?(self.id, result, began.duration(to: .now))
            let (transition, delay) = self.tracker.withLockedValue { t in
                (t.record(result, at: .now), t.nextDelay)
            }
            if let transition { self.handler(self.id, transition) }
            // A little jitter, so that probes of many backends do not fall into lockstep.
            self.wake(after: delay * Double.random(in: 0.95..<1.05, using: &self.random.value))
        }
    }
}

/// A small fast generator (Steele, Lea, Flood: SplitMix64), seeded once from the system's.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
