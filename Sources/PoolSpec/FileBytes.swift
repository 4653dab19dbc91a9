#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads with the reason in strerror's words ("Is a directory", "Permission denied"):
/// Foundation's FileHandle opens a directory and then fails its read with an NSCocoaErrorDomain error.
public enum FileBytes {
    /// The bytes of `path` (standard input for nil), or why they cannot be read. With `regularOnly`, a
    /// directory, FIFO or device is refused before reading (a caFile of /dev/zero would never end);
    /// with `limit`, a longer file is refused.
    public static func read(_ path: String?, regularOnly: Bool = false, limit: Int? = nil) -> Result<[UInt8], Failure> {
        let fd: Int32
        if let path {
            // O_NONBLOCK with regularOnly: opening a FIFO would otherwise wait for a writer (a caFile
            // that is a FIFO hung validate and the daemon's reload) before fstat could refuse it.
            fd = open(path, O_RDONLY | O_CLOEXEC | (regularOnly ? O_NONBLOCK : 0))
            guard fd >= 0 else { return .failure(.init(errno: errno)) }
        } else {
            fd = dup(STDIN_FILENO)
            guard fd >= 0 else { return .failure(.init(errno: errno)) }
        }
        defer { close(fd) }
        if regularOnly {
            var st = stat()
            guard fstat(fd, &st) == 0 else { return .failure(.init(errno: errno)) }
            if (st.st_mode & S_IFMT) == S_IFDIR { return .failure(.init(errno: EISDIR)) }
            guard (st.st_mode & S_IFMT) == S_IFREG else { return .failure(.init(reason: "not a regular file")) }
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { readFD(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(.init(errno: errno))
            }
            if n == 0 { return .success(bytes) }
            bytes.append(contentsOf: chunk[0..<n])
            if let limit, bytes.count > limit { return .failure(.init(reason: "larger than \(limit / 1024) KiB")) }
        }
    }

    public struct Failure: Error, Equatable {
        public var reason: String

        init(reason: String) { self.reason = reason }
        init(errno code: Int32) { reason = String(cString: strerror(code)) }
    }
}

/// read(2), named apart from FileBytes.read.
private func readFD(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}
