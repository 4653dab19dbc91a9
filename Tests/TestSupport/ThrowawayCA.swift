import Foundation

/// A CA made with openssl for one test, in a scratch directory removed afterwards, and server
/// certificates it signs for 127.0.0.1. Nothing is committed: each run makes new keys.
public final class ThrowawayCA {
    public let dir: URL
    public let certificate: URL
    let key: URL

    public init(_ name: String) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-ca-\(getpid())-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        certificate = dir.appendingPathComponent("ca.crt")
        key = dir.appendingPathComponent("ca.key")
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                          "-keyout", key.path, "-out", certificate.path, "-days", "2", "-subj", "/CN=\(name)"])
    }

    deinit { try? FileManager.default.removeItem(at: dir) }

    /// A certificate for IP 127.0.0.1 signed by this CA, and its key (PEM files).
    public func serverCertificate() throws -> (certificate: URL, key: URL) {
        let base = dir.appendingPathComponent("server-\(UUID().uuidString.prefix(8))")
        let crt = base.appendingPathExtension("crt"), key = base.appendingPathExtension("key")
        let csr = base.appendingPathExtension("csr"), ext = base.appendingPathExtension("ext")
        try "subjectAltName=IP:127.0.0.1\n".write(to: ext, atomically: true, encoding: .utf8)
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                          "-keyout", key.path, "-out", csr.path, "-subj", "/CN=127.0.0.1"])
        try Self.openssl(["x509", "-req", "-in", csr.path, "-CA", certificate.path, "-CAkey", self.key.path,
                          "-CAcreateserial", "-out", crt.path, "-days", "2", "-extfile", ext.path])
        return (crt, key)
    }

    static func openssl(_ arguments: [String]) throws {
        let r = try Repo.run(URL(fileURLWithPath: "/usr/bin/openssl"), arguments)
        guard r.status == 0 else { throw OpenSSLFailed(description: "openssl \(arguments.joined(separator: " ")): \(r.err)") }
    }
}

public struct OpenSSLFailed: Error, CustomStringConvertible {
    public var description: String
}
