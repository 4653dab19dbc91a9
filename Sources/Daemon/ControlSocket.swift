import Dispatch
import Foundation
import NIOConcurrencyHelpers

/// The daemon's runtime control: a unix stream socket beside its lock (/run/nftpool/<table>.<netns>.sock),
/// mode 0600 in a 0700 directory, and a peer must also be root (or the daemon's own user) by SO_PEERCRED.
/// One thread accepts and reads each request (bounded in size and time, so a client that sends nothing
/// holds it two seconds at most); the daemon's loop decides; the reply is written from a queue of its own,
/// so a client that does not read cannot stall the loop.
public final class ControlSocket: Sendable {
    public let path: String
    private let fd: Int32
    private let stopped = NIOLockedValueBox(false)
    private let writer = DispatchQueue(label: "nftpool.control.reply")

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func defaultPath(table: String, namespace: UInt64) -> String {
        "\(DaemonLock.directory)/\(table).\(namespace).sock"
    }

    /// Every control socket in the directory.
    public static func all(in directory: String = DaemonLock.directory) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".sock") }.sorted().map { "\(directory)/\($0)" }
    }

    /// Binds and listens. A socket file already at `path` is a dead daemon's: whoever runs this holds the
    /// table's lock, so no live daemon can be serving it.
    public init(path: String) throws(Failure) {
        self.path = path
        guard Array(path.utf8).count <= UnixSocketAddress.maxPath else {
            throw Failure(description: "the control socket path \(path) is longer than \(UnixSocketAddress.maxPath) bytes")
        }
        let dir = (path as NSString).deletingLastPathComponent
        mkdir(dir, 0o700)
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot open the control socket: \(String(cString: strerror(errno)))") }
        // Created 0600 (umask), not chmod-ed after bind: no moment where others could connect.
        let old = umask(0o177)
        let bound = UnixSocketAddress.with(path) { sa, len in bind(fd, sa, len) == 0 } ?? false
        let e = errno
        umask(old)
        guard bound, listen(fd, 16) == 0 else {
            // deinit closes fd: every stored property is set, so it runs after this throw too.
            throw Failure(description: "cannot serve the control socket \(path): \(String(cString: strerror(bound ? errno : e)))")
        }
    }

    deinit { close(fd) }

    /// Hands every request to `handle`, on the accepting thread, with the way to answer it.
    public func serve(_ handle: @escaping @Sendable (ControlMessage.Request, Responder) -> Void) {
        let fd = self.fd
        let stopped = self.stopped
        let writer = self.writer
        Thread {
            while !stopped.withLockedValue({ $0 }) {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    if errno == EMFILE || errno == ENFILE {
                        // Out of descriptors: the probes need them more; try again shortly.
                        usleep(100_000)
                        continue
                    }
                    return  // shut down
                }
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                let responder = Responder(fd: client, queue: writer)
                var timeout = timeval(tv_sec: 2, tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                timeout.tv_sec = 5
                setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                guard Self.peerAllowed(client) else {
                    responder.reply(.init(exit: 1, message: "permission denied: the control socket answers root only"))
                    continue
                }
                switch Self.readRequest(client) {
                case .success(let request): handle(request, responder)
                case .failure(let why): responder.reply(.init(exit: 64, message: why.description))
                }
            }
        }.start()
    }

    /// Stops accepting and removes the socket file.
    public func stop() {
        stopped.withLockedValue { $0 = true }
        shutdown(fd, Int32(SHUT_RDWR))
        unlink(path)
    }

    static func peerAllowed(_ fd: Int32) -> Bool {
        var cred = PeerCredentials()
        var len = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 else { return false }
        return cred.uid == 0 || cred.uid == geteuid()
    }

    /// struct ucred (pid, uid, gid), which Glibc's module leaves out without _GNU_SOURCE.
    struct PeerCredentials {
        var pid: Int32 = 0
        var uid: UInt32 = .max
        var gid: UInt32 = .max
    }

    /// One line of JSON, at most ControlMessage.maxRequest bytes.
    static func readRequest(_ fd: Int32) -> Result<ControlMessage.Request, Failure> {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        // 2 s for the whole request, not per read: a client trickling a byte at a time cannot hold the thread.
        let deadline = ContinuousClock.now + .seconds(2)
        while !bytes.contains(10) {
            guard ContinuousClock.now < deadline else { return .failure(Failure(description: "no whole request within 2 s")) }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            if n < 0 {
                let e = errno
                return .failure(Failure(description: e == EAGAIN || e == EWOULDBLOCK ? "no whole request within 2 s" : "cannot read the request: \(String(cString: strerror(e)))"))
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > ControlMessage.maxRequest { return .failure(Failure(description: "request larger than \(ControlMessage.maxRequest) bytes")) }
        }
        let line = bytes.split(separator: 10, maxSplits: 1, omittingEmptySubsequences: false).first ?? []
        guard let request = try? JSONDecoder().decode(ControlMessage.Request.self, from: Data(line)) else {
            return .failure(Failure(description: "not a control request (one line of JSON)"))
        }
        return .success(request)
    }

    /// Answers one request, once, then closes the connection.
    public final class Responder: Sendable {
        private let fd: Int32
        private let queue: DispatchQueue
        private let done = NIOLockedValueBox(false)

        init(fd: Int32, queue: DispatchQueue) {
            self.fd = fd
            self.queue = queue
        }

        public func reply(_ reply: ControlMessage.Reply) {
            guard done.withLockedValue({ let was = $0; $0 = true; return !was }) else { return }
            let fd = self.fd
            let bytes = ((try? JSONEncoder().encode(reply)).map(Array.init) ?? Array(#"{"exit":1,"message":"cannot encode the reply"}"#.utf8)) + [10]
            queue.async {
                var sent = 0
                while sent < bytes.count {
                    let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if n < 0, errno == EINTR { continue }
                    if n <= 0 { break }  // gone, or not reading for 5 s
                    sent += n
                }
                close(fd)
            }
        }

        deinit {
            // A request the loop never answered (the daemon stopping) still closes its connection.
            if !done.withLockedValue({ $0 }) { close(fd) }
        }
    }
}
