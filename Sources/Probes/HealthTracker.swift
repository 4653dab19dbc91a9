import PoolSpec

/// The rise/fall state machine of one backend. Pure: it is fed probe results and the time, and says when
/// the backend changes state and how long to wait before the next probe.
///
/// A backend is `up` or `down`. `fall` failures in a row take an up backend down and `rise` successes in a
/// row bring a down one up; a result that matches the current state resets the count. While a count is
/// running (rising or falling) probes come every `fastInterval`, otherwise every `interval`.
public struct HealthTracker: Sendable {
    public enum State: String, Sendable {
        case up, down
    }

    public struct Transition: Equatable, Sendable {
        public var from: State
        public var to: State
        public var reason: String
        /// How long the backend was in `from`.
        public var after: Duration

        public init(from: State, to: State, reason: String, after: Duration) {
            self.from = from
            self.to = to
            self.reason = reason
            self.after = after
        }
    }

    public private(set) var state: State
    /// Results in a row against the current state.
    public private(set) var streak = 0
    public private(set) var lastReason: String
    public private(set) var since: ContinuousClock.Instant
    let rise: Int
    let fall: Int
    let interval: Duration
    let fastInterval: Duration

    /// A first start begins `down` (a backend earns traffic by passing `rise` probes); adopting a table
    /// begins in whatever state the kernel shows.
    public init(check: HealthCheck, initial: State, now: ContinuousClock.Instant, reason: String) {
        state = initial
        rise = check.rise
        fall = check.fall
        interval = check.interval
        fastInterval = check.fastInterval
        since = now
        lastReason = reason
    }

    /// Feeds one probe result; returns the transition when this result completes a rise or a fall.
    public mutating func record(_ result: ProbeResult, at now: ContinuousClock.Instant) -> Transition? {
        lastReason = result.reason
        let against = (state == .up) != result.ok
        guard against else {
            streak = 0
            return nil
        }
        streak += 1
        guard streak >= (state == .up ? fall : rise) else { return nil }
        let t = Transition(from: state, to: state == .up ? .down : .up, reason: result.reason, after: since.duration(to: now))
        state = t.to
        since = now
        streak = 0
        hurried = false
        return t
    }

    /// Taken down by something other than its probes (passive health saw clients' connections fail):
    /// probes go on every fastInterval until `rise` of them bring it back. nil when it is already down.
    public mutating func markDown(reason: String, at now: ContinuousClock.Instant) -> Transition? {
        guard state == .up else { return nil }
        let t = Transition(from: .up, to: .down, reason: reason, after: since.duration(to: now))
        state = .down
        since = now
        streak = 0
        lastReason = reason
        hurried = true
        return t
    }

    /// Probing at fastInterval after markDown, until the next transition.
    private var hurried = false

    /// The wait before the next probe: fastInterval while a rise or fall is under way.
    public var nextDelay: Duration { streak > 0 || hurried ? fastInterval : interval }
}
