import Foundation
import NIOCore
import Testing

@testable import PoolSpec
@testable import Probes

/// tcp probes on plain sockets (TCPConnects): a connect that never completes times out at its deadline,
/// many at once on one loop all complete and leave no socket behind, and shutdown ends those in flight.
@Suite(.serialized) struct TCPConnectsTests {
    /// A listener that never accepts, its accept queue `queued` deep: with `full`, the kernel drops
    /// every further SYN, so a connect to it never completes.
    final class Backlog {
        let fd: Int32
        let port: UInt16
        private var fillers: [Int32] = []

        init(queued: Int32, full: Bool) throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
            guard bound == 0, listen(fd, queued) == 0 else { throw POSIXError(.EADDRINUSE) }
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            port = UInt16(bigEndian: addr.sin_port)
            guard full else { return }
            // listen(fd, 0) queues one connection; a second handshake is never completed.
            let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let connected = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
            fillers.append(c)
        }

        func close() {
            for c in fillers { _ = Glibc.close(c) }
            _ = Glibc.close(fd)
        }
    }

    func target(_ port: UInt16, timeout: Duration) -> ProbeTarget {
        ProbeTarget(address: IPAddress("127.0.0.1")!, port: port, check: HealthCheck(type: .tcp, timeout: timeout))
    }

    @Test func aConnectThatNeverCompletesTimesOutAtItsDeadline() async throws {
        let full = try Backlog(queued: 0, full: true)
        defer { full.close() }
        let prober = Prober(threads: 1)
        let start = ContinuousClock.now
        let result = await prober.probe(target(full.port, timeout: .milliseconds(200)))
        let took = start.duration(to: .now)
        #expect(result == .failure("tcp: timeout after 200ms", .timeout))
        #expect(took >= .milliseconds(200) && took < .milliseconds(900), "\(took)")
        await prober.shutdown()
    }

    @Test func manyConnectsAtOnceOnOneLoopAllCompleteAndLeaveNoSocket() async throws {
        let listener = try Backlog(queued: 1024, full: false)
        defer { listener.close() }
        let prober = Prober(threads: 1)
        let futures = (0..<300).map { _ in prober.start(target(listener.port, timeout: .seconds(2))) }
        var results: [ProbeResult] = []
        for f in futures { results.append(try await f.get()) }
        #expect(results.allSatisfy { $0 == .success("tcp: connected") }, "\(Set(results.map(\.reason)))")
        try await Task.sleep(for: .milliseconds(100))
        let ss = Process()
        ss.executableURL = URL(fileURLWithPath: "/usr/bin/ss")
        ss.arguments = ["-tanH", "dport", "= :\(listener.port)"]
        let out = Pipe()
        ss.standardOutput = out
        try ss.run()
        ss.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.isEmpty, "sockets left after tcp probes:\n\(text)")
        await prober.shutdown()
    }

    @Test func shutdownEndsAConnectInFlight() async throws {
        let full = try Backlog(queued: 0, full: true)
        defer { full.close() }
        let prober = Prober(threads: 1)
        let pending = prober.start(target(full.port, timeout: .seconds(30)))
        let result = Task { try await pending.get() }  // waiting before the loop is gone
        try await Task.sleep(for: .milliseconds(50))
        await prober.shutdown()
        #expect(try await result.value == .failure("tcp: prober stopped", .error))
    }
}
