import Foundation
import NIOCore
import Testing

@testable import PoolSpec
@testable import Probes

/// http(s) probes keep their connection from one probe to the next while the backend keeps it.
@Suite(.serialized) struct KeptConnectionTests {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    let check = HealthCheck(type: .http, path: "/healthz")

    func probe(_ prober: Prober, _ port: UInt16, _ kept: KeptConnection) async throws -> ProbeResult {
        let loop = prober.group.next()
        let target = ProbeTarget(address: IPAddress("127.0.0.1")!, port: port, check: check)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: Int(port))
        return try await loop.flatSubmit { prober.start(target, at: address, on: loop, keeping: kept) }.get()
    }

    @Test func fiveProbesOneConnectionThenAKilledBackendIsRefused() async throws {
        let prober = Prober(threads: 1)
        let server = try Listener(answer: ok, requestsPerConnection: 100)
        let kept = KeptConnection()
        for _ in 0..<5 { #expect(try await probe(prober, server.port, kept) == .success("http /healthz: status 200")) }
        #expect(server.accepted == 1)
        server.close()  // its connection ends and nothing listens any more
        #expect(try await probe(prober, server.port, kept) == .failure("http /healthz: connection refused", .refused))
        await prober.shutdown()
    }

    /// A server that closes a kept connection as the next request arrives has said nothing about its
    /// health: the probe asks again on a new connection and succeeds.
    @Test func aConnectionClosedUnderTheRequestIsRetriedOnANewOne() async throws {
        let prober = Prober(threads: 1)
        let server = try Listener(answer: ok, requestsPerConnection: 1)
        let kept = KeptConnection()
        for _ in 0..<3 { #expect(try await probe(prober, server.port, kept) == .success("http /healthz: status 200")) }
        #expect(server.accepted == 3)
        await prober.shutdown()
    }

    /// A failing answer is not kept: the next probe starts on a new connection.
    @Test func aFailingBackendGetsANewConnectionEachTime() async throws {
        let prober = Prober(threads: 1)
        let server = try Listener(answer: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", requestsPerConnection: 100)
        let kept = KeptConnection()
        for _ in 0..<3 { #expect(try await probe(prober, server.port, kept) == .failure("http /healthz: status 503", .status)) }
        #expect(server.accepted == 3)
        await prober.shutdown()
    }
}
