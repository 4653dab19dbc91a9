import Foundation
import PoolSpec

/// Where the runtime overrides outlive the daemon: a JSON file written atomically after each change and
/// read at start. Under /var/lib/nftpool by default, so that a drain survives a reboot of the node as well
/// as a restart; named by table and `ip netns` name (a namespace's inode changes at every boot).
public struct RuntimeStateFile: Sendable {
    public static let directory = "/var/lib/nftpool"
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public static func defaultPath(table: String, netns: String?) -> String {
        "\(directory)/\(table)\(netns.map { "@\($0)" } ?? "").json"
    }

    struct Document: Codable {
        var version: Int
        var table: String
        var overrides: RuntimeOverrides
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The overrides stored for `table`; none when there is no file. A file that cannot be read or parsed
    /// (or names another table) is moved aside to `<path>.bad` and reported: the daemon starts from the spec
    /// rather than not at all, and the next change does not overwrite the evidence.
    public func load(table: String) -> (RuntimeOverrides, Failure?) {
        guard FileManager.default.fileExists(atPath: path) else { return (.init(), nil) }
        let why: String
        switch FileBytes.read(path, regularOnly: true, limit: 64 << 20) {
        case .failure(let f):
            why = f.reason
        case .success(let bytes):
            do {
                let doc = try JSONDecoder().decode(Document.self, from: Data(bytes))
                if doc.version == 1, doc.table == table {
                    // A value the CLI could never have set (a hand edit): not used, and not half used.
                    if let bad = doc.overrides.backends.first(where: { _, e in
                        e.weight.map { !Backend.weights.contains($0) } ?? false || e.state.map { AdminState(rawValue: $0) == nil } ?? false
                    }) {
                        why = "backend \(bad.key) has a state or weight nftpool does not take (\(bad.value.state ?? "-"), \(bad.value.weight.map(String.init) ?? "-"))"
                    } else {
                        return (doc.overrides, nil)
                    }
                } else {
                    why = doc.version != 1 ? "version \(doc.version) is not 1" : "it is for table \(doc.table)"
                }
            } catch let error as DecodingError {
                why = "not valid runtime state (\(Self.describe(error)))"
            } catch {
                why = "not valid runtime state"
            }
        }
        let aside = path + ".bad"
        let moved = rename(path, aside) == 0
        return (.init(), Failure(description: "cannot use the runtime state \(path): \(why); starting from the spec alone\(moved ? " (the file is kept as \(aside))" : "")"))
    }

    public func save(_ overrides: RuntimeOverrides, table: String) throws(Failure) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(Document(version: 1, table: table, overrides: overrides)) else {
            throw Failure(description: "cannot encode the runtime state")
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: dir) {
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw Failure(description: "cannot create \(dir): \(String(cString: strerror(errno)))")
            }
        }
        do {
            try AtomicFile.write(Array(data) + [10], to: path, mode: 0o600)
        } catch {
            throw Failure(description: error.description)
        }
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let c), .keyNotFound(_, let c), .typeMismatch(_, let c), .valueNotFound(_, let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
        @unknown default:
            return "unreadable"
        }
    }
}
