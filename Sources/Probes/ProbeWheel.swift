import NIOCore

/// When each backend's next probe is due, on one event loop, in 10 ms buckets.
///
/// NIO keeps scheduled tasks in a heap whose cancel is a linear scan, and every connect schedules and
/// cancels a timeout. With a task per backend waiting in that heap, each probe's connect scanned up to
/// 10,000 entries; here NIO holds one task per non-empty bucket (at most an interval's worth of 10 ms
/// steps), and a probe that is stopped is skipped when its bucket comes due rather than cancelled.
final class ProbeWheel: Sendable {
    static let step: Int64 = 10_000_000  // ns

    let loop: EventLoop
    private let buckets: NIOLoopBoundBox<[Int64: [() -> Void]]>

    init(loop: EventLoop) {
        self.loop = loop
        buckets = .makeBoxSendingValue([:], eventLoop: loop)
    }

    /// Runs `work` on the loop once `delay` has passed, rounded up to the next step. Call on the loop.
    func schedule(after delay: Duration, _ work: @escaping () -> Void) {
        let due = Int64(NIODeadline.now().uptimeNanoseconds) + max(0, delay.nanoseconds)
        let tick = (due + Self.step - 1) / Self.step
        if buckets.value[tick] == nil {
            buckets.value[tick] = [work]
            loop.scheduleTask(deadline: .uptimeNanoseconds(UInt64(tick * Self.step))) { self.fire(tick) }
        } else {
            buckets.value[tick]!.append(work)
        }
    }

    private func fire(_ tick: Int64) {
        guard let due = buckets.value.removeValue(forKey: tick) else { return }
        for work in due { work() }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}
