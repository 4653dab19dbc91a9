import PoolSpec

/// Probes every registered target on its own schedule, each in its own task: a backend that hangs delays
/// only its own probes. Reports each rise or fall to the handler, in the order they happen.
public actor HealthMonitor {
    public typealias Handler = @Sendable (_ id: String, _ transition: HealthTracker.Transition) async -> Void

    public struct Status: Sendable {
        public var state: HealthTracker.State
        public var reason: String
        public var since: ContinuousClock.Instant
    }

    private let prober: Prober
    private let handler: Handler
    private var trackers: [String: HealthTracker] = [:]
    private var loops: [String: (target: ProbeTarget, task: Task<Void, Never>)] = [:]

    public init(prober: Prober, handler: @escaping Handler) {
        self.prober = prober
        self.handler = handler
    }

    /// Starts probing `target` under `id`, beginning in `initial`; a running id with the same target keeps
    /// its state and schedule (a reload does not reset health).
    public func watch(_ id: String, target: ProbeTarget, initial: HealthTracker.State, reason: String) {
        if let running = loops[id], running.target == target { return }
        loops[id]?.task.cancel()
        trackers[id] = HealthTracker(check: target.check, initial: initial, now: .now, reason: reason)
        let prober = prober
        let task = Task { [weak self] in
            // Spread the first probes of many backends over up to one interval.
            let spread = min(target.check.interval, .seconds(1))
            try? await Task.sleep(for: spread * Double.random(in: 0..<0.2))
            while !Task.isCancelled {
                let result = await prober.probe(target)
                guard let self, !Task.isCancelled else { return }
                let delay = await self.record(id, result)
                // A little jitter, so that probes of many backends do not fall into lockstep.
                try? await Task.sleep(for: delay * Double.random(in: 0.95..<1.05))
            }
        }
        loops[id] = (target, task)
    }

    /// Stops probing every id not in `keep`.
    public func retain(only keep: Set<String>) {
        for id in loops.keys where !keep.contains(id) {
            loops[id]?.task.cancel()
            loops[id] = nil
            trackers[id] = nil
        }
    }

    public func stopAll() {
        retain(only: [])
    }

    public func status() -> [String: Status] {
        trackers.mapValues { Status(state: $0.state, reason: $0.lastReason, since: $0.since) }
    }

    private func record(_ id: String, _ result: ProbeResult) async -> Duration {
        guard var tracker = trackers[id] else { return .seconds(1) }
        let transition = tracker.record(result, at: .now)
        trackers[id] = tracker
        if let transition { await handler(id, transition) }
        return tracker.nextDelay
    }
}
