import Foundation

/// The pass after decoding that reads each https check's caFile. NIOSSL loads the file only when the
/// first probe runs; a missing or damaged one then failed every probe of every https backend, though
/// `validate` had passed. Reading it here makes it a spec error, with its field path, at load time.
enum CAFileCheck {
    /// CA bundles are a few hundred KiB (Debian's whole ca-certificates.crt is about 200 KiB).
    static let sizeLimit = 4 << 20

    static func errors(in spec: Spec) -> [SpecError] {
        var verdicts: [String: String?] = [:]  // one read per file, however many pools name it
        var errors: [SpecError] = []
        for (i, pool) in spec.pools.enumerated() {
            guard let check = pool.healthCheck, check.type == .https, let file = check.caFile else { continue }
            if verdicts[file] == nil { verdicts[file] = problem(file) }
            if let problem = verdicts[file]! {
                errors.append(SpecError(path: "pools[\(i)].healthCheck.caFile", message: problem))
            }
        }
        return errors
    }

    /// Why `file` cannot serve as trust roots, or nil when it can.
    static func problem(_ file: String) -> String? {
        switch FileBytes.read(file, regularOnly: true, limit: sizeLimit) {
        case .failure(let f): return "cannot read \(file): \(f.reason)"
        case .success(let bytes): return pemProblem(bytes).map { "\(file) \($0)" }
        }
    }

    /// The trust-root loader takes PEM only and refuses a file with any damaged certificate, so every
    /// CERTIFICATE block must hold base64 DER, and there must be at least one.
    static func pemProblem(_ bytes: [UInt8]) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        let begin = "-----BEGIN CERTIFICATE-----", end = "-----END CERTIFICATE-----"
        var rest = text[...]
        var count = 0
        while let b = rest.range(of: begin) {
            count += 1
            guard let e = rest[b.upperBound...].range(of: end) else {
                return "has an unterminated certificate (no \(end) after certificate \(count))"
            }
            let body = rest[b.upperBound..<e.lowerBound].filter { !$0.isWhitespace }
            guard let der = Data(base64Encoded: String(body)), isDERSequence(der) else {
                return "holds a damaged certificate (certificate \(count) is not base64 DER)"
            }
            rest = rest[e.upperBound...]
        }
        return count == 0 ? "holds no PEM certificate (\(begin) ... \(end))" : nil
    }

    /// A DER SEQUENCE whose length is exactly the data's: a certificate's outermost shape.
    static func isDERSequence(_ der: Data) -> Bool {
        let d = [UInt8](der)
        guard d.count >= 2, d[0] == 0x30 else { return false }
        var length = Int(d[1]), header = 2
        if d[1] & 0x80 != 0 {
            let n = Int(d[1] & 0x7F)
            guard (1...4).contains(n), d.count >= 2 + n else { return false }
            length = d[2..<(2 + n)].reduce(0) { $0 << 8 | Int($1) }
            header = 2 + n
        }
        return header + length == d.count
    }
}
