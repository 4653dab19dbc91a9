import Foundation
import Synchronization

/// Paths inside the repository, found from this file's location so tests run from any directory.
public enum Repo {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    public static let rulesets = root.appendingPathComponent("rulesets")

    /// Every example spec, by base name (`kube-apiserver`), sorted.
    public static var exampleNames: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: rulesets.path)) ?? []
        return files.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// The built `nftpool` executable beside the test bundle (`.build/<triple>/<config>/`).
    public static var nftpool: URL {
        let bundle = Bundle.allBundles.map(\.bundleURL).first { $0.pathExtension == "xctest" }
            ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return bundle.deletingLastPathComponent().appendingPathComponent("nftpool")
    }

    public static func run(_ executable: URL, _ arguments: [String], stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

/// A network namespace made for one test and deleted afterwards, whatever happens. Its name carries the
/// process id so that parallel tests and runs never share one; nothing here touches the host's namespace.
public final class ScratchNamespace {
    public let name: String
    /// Locked: parallel tests that read the same count would name the same namespace.
    private static let counter = Mutex(0)

    public init(_ label: String) throws {
        let n = Self.counter.withLock { n in
            n += 1
            return n
        }
        name = "nftpool-t\(getpid())-\(n)-\(label)".prefix(60).description
        let r = try Repo.run(Self.ip, ["netns", "add", name])
        guard r.status == 0 else {
            throw KernelTestError("cannot create network namespace \(name) (root and iproute2 needed): \(r.err)")
        }
    }

    deinit {
        _ = try? Repo.run(Self.ip, ["netns", "del", name])
    }

    /// Runs a command inside the namespace.
    public func exec(_ command: String, _ arguments: [String], stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
        try Repo.run(Self.ip, ["netns", "exec", name, command] + arguments, stdin: stdin)
    }

    public static let ip = URL(fileURLWithPath: "/usr/sbin/ip")

    /// Fails, never skips, when the machine cannot run kernel tests: CI requires them.
    public static func requireKernelTools() throws {
        guard getuid() == 0 else { throw KernelTestError("kernel tests need root (run as root or under sudo)") }
        for tool in ["/usr/sbin/ip", "/usr/sbin/nft"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw KernelTestError("kernel tests need \(tool) (apt-get install iproute2 nftables)")
        }
    }
}

public struct KernelTestError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public enum Listing {
    /// `nft list` output with each `elements = { ... }` block's entries sorted: nft prints hash sets in
    /// kernel hash order, which may differ between two loads of the same set.
    public static func normalized(_ listing: String) -> String {
        var out: [String] = []
        var pending: [String]? = nil
        var prefix = ""
        for line in listing.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if pending == nil, let r = line.range(of: "elements = { ") {
                prefix = String(line[..<r.upperBound])
                pending = [String(line[r.upperBound...])]
            } else if pending != nil {
                pending!.append(line.trimmingCharacters(in: .whitespaces))
            } else {
                out.append(line)
            }
            if let p = pending, p.last!.hasSuffix(" }") {
                var body = p.joined(separator: " ")
                body.removeLast(2)
                let entries = body.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.sorted()
                out.append(prefix + entries.joined(separator: ", ") + " }")
                pending = nil
            }
        }
        return out.joined(separator: "\n")
    }
}
