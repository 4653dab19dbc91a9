import Foundation
import Kernel
import Logging
import Testing

@testable import Daemon
@testable import Probes

/// The structured fields DaemonCore's lines carry for `--log-format json`.
struct TransitionFieldsTests {
    let t0 = ContinuousClock.now

    @Test func aTransitionLineCarriesPoolBackendFromToReasonAndDuration() throws {
        let kernel = FakeKernel()
        let core = DaemonCore(spec: try DaemonCoreTests.spec(onDown: "close-connections"), kernel: kernel)
        _ = try core.start()
        let up = core.healthChanged([DaemonCoreTests.flip(0, .up)], now: t0)
        #expect(up.first?.metadata == [
            "pool": "web", "backend": "10.1.0.1:80", "from": "down", "to": "up", "reason": "test", "duration": .stringConvertible(1.0),
        ], "\(up)")
        let down = HealthTracker.Transition(from: .up, to: .down, reason: "tcp: connection refused", after: .milliseconds(41_234) + .microseconds(400))
        let lines = core.healthChanged([(DaemonCoreTests.ref(0), down)], now: t0)
        let transition = try #require(lines.first)
        #expect(transition.level == .notice && transition.text.hasPrefix("pool web backend 10.1.0.1:80: up → down"), "\(lines)")
        #expect(transition.metadata["duration"]?.description == "41.234", "seconds to the millisecond: \(transition.metadata)")
        // close-connections: which backend, how many.
        let closed = try #require(lines.first { $0.text.contains("closed 0 connections") }, "\(lines)")
        #expect(closed.metadata == ["pool": "web", "backend": "10.1.0.1:80", "closed": .stringConvertible(0)])
        // Other lines carry none.
        #expect(core.reload(try DaemonCoreTests.spec(onDown: "close-connections", extraPool: true), now: t0).allSatisfy { $0.metadata.isEmpty })

        // As the daemon logs it, in json.
        final class Box: @unchecked Sendable { var lines: [String] = [] }
        let box = Box()
        let logger = Logger(label: "nftpool") { _ in DaemonLogHandler(label: "nftpool", format: .json, journal: false) { box.lines.append($0) } }
        logger.log(level: transition.level, "\(transition.text)", metadata: transition.metadata)
        let line = try #require(box.lines.first)
        let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(o["pool"] as? String == "web" && o["backend"] as? String == "10.1.0.1:80" && o["from"] as? String == "up")
        #expect(o["to"] as? String == "down" && o["reason"] as? String == "tcp: connection refused" && o["duration"] as? Double == 41.234, "\(o)")
    }
}
