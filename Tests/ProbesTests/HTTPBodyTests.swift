import Foundation
import NIOCore
import Testing

@testable import PoolSpec
@testable import Probes

/// An http(s) probe passes only on the whole response, read within its timeout: a backend that sends a
/// 200 head and then stalls is what clients see time out.
@Suite(.serialized) struct HTTPBodyTests {
    let check = HealthCheck(type: .http, path: "/healthz", timeout: .milliseconds(300))

    func probe(_ answer: String, kept: Bool = false) async throws -> ProbeResult {
        let prober = Prober(threads: 1)
        let server = try Listener(answer: answer, keepOpen: true)  // answers, then leaves the connection open
        defer { server.close() }
        let target = ProbeTarget(address: IPAddress("127.0.0.1")!, port: server.port, check: check)
        let result: ProbeResult
        if kept {
            let loop = prober.group.next()
            let address = try SocketAddress(ipAddress: "127.0.0.1", port: Int(server.port))
            result = try await loop.flatSubmit { prober.start(target, at: address, on: loop, keeping: KeptConnection()) }.get()
        } else {
            result = await prober.probe(target)
        }
        await prober.shutdown()
        return result
    }

    @Test func aBodyThatStallsIsATimeout() async throws {
        let stalled = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"
        #expect(try await probe(stalled) == .failure("timeout after 300ms", .timeout))
        #expect(try await probe(stalled, kept: true) == .failure("timeout after 300ms", .timeout))
    }

    @Test func aWholeResponsePasses() async throws {
        #expect(try await probe("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789") == .success("http /healthz: status 200"))
        #expect(try await probe("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", kept: true) == .success("http /healthz: status 200"))
    }

    @Test func aChunkedResponsePassesOnItsLastChunkOnly() async throws {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n"
        #expect(try await probe(chunked + "0\r\n\r\n") == .success("http /healthz: status 200"))
        #expect(try await probe(chunked) == .failure("timeout after 300ms", .timeout))
    }

    /// A failing status is the answer at once: no need to wait for its body.
    @Test func aFailingStatusFailsWithoutItsBody() async throws {
        #expect(try await probe("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n") == .failure("http /healthz: status 503", .status))
    }

    /// Past 64 KiB the backend is plainly answering; the rest is not read.
    @Test func aLongBodyIsReadOnlyUpToTheCap() async throws {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n"
        #expect(try await probe(head + String(repeating: "x", count: 70_000)) == .success("http /healthz: status 200"))
        #expect(try await probe(head + String(repeating: "x", count: 60_000)) == .failure("timeout after 300ms", .timeout))
    }
}
