import Foundation
import TestSupport

/// `ip` and `ip netns exec`, for every sandbox: run, and throw with ip's own words when it fails.
enum NetnsCommands {
    static let ipTool = URL(fileURLWithPath: "/usr/sbin/ip")

    static func exec(_ namespace: String, _ command: String, _ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        try Repo.run(ipTool, ["netns", "exec", namespace, command] + arguments)
    }

    static func ip(_ arguments: [String]) throws {
        let r = try Repo.run(ipTool, arguments)
        guard r.status == 0 else { throw KernelTestError("ip \(arguments.joined(separator: " ")): \(r.err)") }
    }

    /// Many `ip` commands in one namespace, one process.
    static func batch(_ namespace: String, _ commands: [String]) throws {
        let r = try Repo.run(ipTool, ["-n", namespace, "-batch", "-"], stdin: commands.joined(separator: "\n") + "\n")
        guard r.status == 0 else { throw KernelTestError("ip -n \(namespace) -batch: \(r.err)") }
    }
}
