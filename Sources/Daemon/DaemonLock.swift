import Foundation

/// One daemon per table and network namespace: `nftpool run` holds a write lock (fcntl, released by the
/// kernel when the process dies, however it dies) on /run/nftpool/<table>.<netns inode>.lock for its
/// whole life. A second daemon is refused, and `apply`/`delete` ask the lock who holds the table.
public final class DaemonLock {
    public static let directory = "/run/nftpool"
    let fd: Int32
    public let path: String

    public enum Failure: Error, CustomStringConvertible {
        case held(path: String, pid: Int32)
        case system(path: String, errno: Int32)

        public var description: String {
            switch self {
            case .held(let path, let pid): return "another nftpool daemon (\(DaemonLock.describe(pid))) runs this table (it holds \(path))"
            case .system(let path, let e): return "cannot lock \(path): \(String(cString: strerror(e)))"
            }
        }
    }

    /// The namespace a table lives in, as a number: tables of the same name in two namespaces are two.
    public static func namespaceID(named netns: String? = nil) -> UInt64 {
        var st = stat()
        let path = netns.map { "/var/run/netns/\($0)" } ?? "/proc/self/ns/net"
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : 0
    }

    public static func path(table: String, namespace: UInt64) -> String {
        "\(directory)/\(table).\(namespace).lock"
    }

    /// Takes the lock for this process's life, or says who holds it.
    public init(table: String, namespace: UInt64 = DaemonLock.namespaceID()) throws(Failure) {
        path = Self.path(table: table, namespace: namespace)
        mkdir(Self.directory, 0o700)
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .system(path: path, errno: errno) }
        var lock = flock(l_type: Int16(F_WRLCK), l_whence: Int16(SEEK_SET), l_start: 0, l_len: 0, l_pid: 0)
        guard fcntl(fd, F_SETLK, &lock) == 0 else {
            let e = errno
            let holder = Self.holder(path: path)
            close(fd)
            if let holder { throw .held(path: path, pid: holder) }
            throw .system(path: path, errno: e)
        }
        _ = ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(fd, $0, strlen($0)) }
    }

    deinit { close(fd) }

    /// The kernel reports 0 for a holder in another pid namespace (a container).
    public static func describe(_ pid: Int32) -> String {
        pid > 0 ? "pid \(pid)" : "in another pid namespace"
    }

    /// The pid of the daemon holding table's lock, or nil when none runs. Takes no lock itself, so it
    /// can never make a starting daemon fail.
    public static func holder(table: String, namespace: UInt64) -> Int32? {
        holder(path: path(table: table, namespace: namespace))
    }

    public static func holder(path: String) -> Int32? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var lock = flock(l_type: Int16(F_WRLCK), l_whence: Int16(SEEK_SET), l_start: 0, l_len: 0, l_pid: 0)
        guard fcntl(fd, F_GETLK, &lock) == 0, lock.l_type != Int16(F_UNLCK) else { return nil }
        return lock.l_pid
    }
}
