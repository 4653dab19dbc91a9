import Foundation
import Testing
import TestSupport

@testable import PoolSpec

/// An https check's caFile is read when the spec is loaded: a missing or damaged CA is a spec error with
/// its field path, not every https backend down at run time.
@Suite struct CAFileTests {
    /// Writes the valid spec with caFile set to `caFile` into `dir`, and returns its path.
    func specFile(caFile: String, in dir: URL) throws -> String {
        let url = dir.appendingPathComponent("spec.yaml")
        try edited("/etc/kubernetes/pki/ca.crt", caFile).write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func loadErrors(_ path: String, readingCAFiles: Bool = true) -> [String] {
        do {
            _ = try SpecDecoder.load(path: path, readingCAFiles: readingCAFiles)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    @Test func aRealCAPassesAndEveryBadOneIsAFieldError() throws {
        let ca = try ThrowawayCA("cafile")
        let dir = ca.dir
        #expect(loadErrors(try specFile(caFile: ca.certificate.path, in: dir)) == [])

        let missing = dir.appendingPathComponent("nope.crt").path
        #expect(loadErrors(try specFile(caFile: missing, in: dir)) == [
            "pools[0].healthCheck.caFile: cannot read \(missing): No such file or directory"
        ])
        #expect(loadErrors(try specFile(caFile: dir.path, in: dir)) == [
            "pools[0].healthCheck.caFile: cannot read \(dir.path): Is a directory"
        ])
        let key = dir.appendingPathComponent("ca.key").path  // a PEM file, but a key
        #expect(loadErrors(try specFile(caFile: key, in: dir)) == [
            "pools[0].healthCheck.caFile: \(key) holds no PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)"
        ])
        let damaged = dir.appendingPathComponent("damaged.crt")
        let pem = try String(contentsOf: ca.certificate, encoding: .utf8)
        try (pem + pem.replacingOccurrences(of: "\n-----END", with: "!!\n-----END")).write(to: damaged, atomically: true, encoding: .utf8)
        #expect(loadErrors(try specFile(caFile: damaged.path, in: dir)) == [
            "pools[0].healthCheck.caFile: \(damaged.path) holds a damaged certificate (certificate 2 is not base64 DER)"
        ])
        #expect(loadErrors(try specFile(caFile: "/dev/zero", in: dir)) == [
            "pools[0].healthCheck.caFile: cannot read /dev/zero: not a regular file"
        ])
        // render, diff, apply and delete never read the CA, and say nothing about it.
        #expect(loadErrors(try specFile(caFile: missing, in: dir), readingCAFiles: false) == [])
    }

    /// Each pool that names a bad file gets its own line, all at once.
    @Test func everyPoolNamingABadFileIsReported() throws {
        let ca = try ThrowawayCA("twopools")
        let missing = ca.dir.appendingPathComponent("gone.crt").path
        let spec = """
            pools:
              - name: a
                frontends: [{address: 10.0.0.1, port: 443}]
                backends: [{address: 10.0.1.1}]
                healthCheck: {type: https, caFile: \(missing)}
              - name: b
                frontends: [{address: 10.0.0.2, port: 443}]
                backends: [{address: 10.0.1.1}]
                healthCheck: {type: https, caFile: \(ca.certificate.path)}
              - name: c
                frontends: [{address: 10.0.0.3, port: 443}]
                backends: [{address: 10.0.1.1}]
                healthCheck: {type: https, caFile: \(missing)}
            """
        let url = ca.dir.appendingPathComponent("spec.yaml")
        try spec.write(to: url, atomically: true, encoding: .utf8)
        #expect(loadErrors(url.path) == [
            "pools[0].healthCheck.caFile: cannot read \(missing): No such file or directory",
            "pools[2].healthCheck.caFile: cannot read \(missing): No such file or directory",
        ])
    }
}
