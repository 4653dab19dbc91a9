import CNetfilter
import Foundation

/// Why the kernel did not do what we asked, in words a person can act on. One line each.
public enum KernelError: Error, CustomStringConvertible, Equatable {
    /// A system call failed outside a transaction.
    case system(String, Int32)
    /// The kernel refused a transaction; nothing of it was applied. One entry per refused message.
    case refused([Refusal])
    /// The table exists and carries no nftpool ownership mark.
    case notOurs(table: String)
    case namespace(String, Int32)
    /// The batch was planned against ruleset generation `generation` and someone committed since: the
    /// kernel refused it whole (ERESTART) before looking at any message. Nothing was applied.
    case stale(generation: UInt32)
    /// The ruleset kept changing while nftpool read or wrote it, `attempts` times in a row.
    case busy(String, attempts: Int)

    public struct Refusal: Equatable, Sendable {
        public var object: String
        public var errno: Int32
        public var modules: [String]
        /// The kernel's extended ACK: its words, and what it pointed at in the message.
        public var kernelText: String? = nil
        public var pointedAt: String? = nil
    }

    public var description: String {
        switch self {
        case .system(let what, let e):
            return "\(what): \(Self.words(e))"
        case .refused(let refusals):
            return refusals.map { r in
                var line = "the kernel refused \(r.object): \(Self.words(r.errno))"
                if let text = r.kernelText { line += " (\(text))" }
                if let at = r.pointedAt { line += " at \(at)" }
                line += "; nothing was applied"
                if (r.errno == ENOENT || r.errno == EOPNOTSUPP) && !r.modules.isEmpty {
                    line += " (is the kernel module \(r.modules.joined(separator: " or ")) available? try modprobe)"
                }
                return line
            }.joined(separator: "\n")
        case .notOurs(let table):
            return "table inet \(table) exists and was not made by nftpool (it has no nftpool mark); refusing to change it. Pick another `table:` in the spec, or pass --force to take it over"
        case .stale(let generation):
            return "the ruleset changed after nftpool read it (generation \(generation)): the kernel refused the transaction (ERESTART); nothing was applied"
        case .busy(let what, let attempts):
            return "the ruleset kept changing while nftpool \(what) (\(attempts) attempts); nothing was applied. Is another program rewriting nftables in a loop?"
        case .namespace(let name, let e):
            return "cannot enter network namespace \(name): \(Self.words(e))"
        }
    }

    static func words(_ e: Int32) -> String {
        switch e {
        case EPERM, EACCES:
            return "permission denied: programming nftables needs root or CAP_NET_ADMIN"
        default:
            return String(cString: strerror(e))
        }
    }
}
