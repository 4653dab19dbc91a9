import Foundation
import NIOCore
import Testing
import TestSupport

@testable import PoolSpec
@testable import Probes

/// A rotated CA file takes effect on Prober.reloadTrust (the daemon's SIGHUP), and not before: the TLS
/// context, and any connection kept under it, carry the trust they were made with.
@Suite(.serialized) struct TrustReloadTests {
    /// A server signed by CA1; the check's caFile holds CA1 until the test overwrites it with CA2.
    struct Setup {
        let ca1: ThrowawayCA, ca2: ThrowawayCA
        let server: TLSServer
        let caFile: URL
        let target: ProbeTarget

        init() throws {
            ca1 = try ThrowawayCA("ca1")
            ca2 = try ThrowawayCA("ca2")
            let (crt, key) = try ca1.serverCertificate()
            server = try TLSServer(certificate: crt, key: key)
            caFile = ca1.dir.appendingPathComponent("trusted.crt")
            try FileManager.default.copyItem(at: ca1.certificate, to: caFile)
            let check = HealthCheck(type: .https, path: "/readyz", caFile: caFile.path, timeout: .seconds(1))
            target = ProbeTarget(address: IPAddress("127.0.0.1")!, port: server.port, check: check)
        }

        func rotateToCA2() throws {
            try Data(contentsOf: ca2.certificate).write(to: caFile)
        }
    }

    @Test func aRotatedCAIsUsedAfterReloadTrustOnly() async throws {
        let s = try Setup()
        let prober = Prober(threads: 1)
        #expect(await prober.probe(s.target) == .success("https /readyz: status 200"))
        try s.rotateToCA2()
        // Without a reload the cached context still trusts CA1 (what SIGHUP used to leave in place).
        #expect(await prober.probe(s.target) == .success("https /readyz: status 200"))
        prober.reloadTrust()
        let after = await prober.probe(s.target)
        #expect(!after.ok && after.reason.hasPrefix("https /readyz: TLS: "), "\(after)")
        await prober.shutdown()
        await s.server.close()
    }

    /// A kept connection was verified under CA1 and asks without a handshake: reloadTrust closes it
    /// before the next probe, which then handshakes against CA2 and fails.
    @Test func aKeptConnectionIsNotReusedAcrossAReload() async throws {
        let s = try Setup()
        let prober = Prober(threads: 1)
        let kept = KeptConnection()
        let loop = prober.group.next()
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: Int(s.server.port))
        let target = s.target
        func probe() async throws -> ProbeResult {
            try await loop.flatSubmit { prober.start(target, at: address, on: loop, keeping: kept) }.get()
        }
        #expect(try await probe() == .success("https /readyz: status 200"))
        try s.rotateToCA2()
        #expect(try await probe() == .success("https /readyz: status 200"))  // same connection, no handshake
        prober.reloadTrust()
        let after = try await probe()
        #expect(!after.ok && after.reason.hasPrefix("https /readyz: TLS: "), "\(after)")
        await prober.shutdown()
        await s.server.close()
    }
}
