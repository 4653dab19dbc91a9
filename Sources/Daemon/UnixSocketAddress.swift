import Foundation

/// A filesystem path as a sockaddr_un, for the control socket's server and client.
enum UnixSocketAddress {
    /// sun_path holds 108 bytes with its terminating NUL.
    static let maxPath = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// nil when the path does not fit.
    static func with<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T? {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= maxPath, !bytes.contains(0) else { return nil }
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sun.sun_path) { $0.copyBytes(from: bytes + [0]) }
        return withUnsafePointer(to: &sun) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
