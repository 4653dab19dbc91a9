import Foundation

/// `nftpool backend …` and `nftpool status`'s side of the control socket: one request, one reply.
public enum ControlClient {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func ask(_ request: ControlMessage.Request, at path: String, timeout seconds: Int = 10) throws(Failure) -> ControlMessage.Reply {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot open a socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let connected = UnixSocketAddress.with(path, { sa, len in connect(fd, sa, len) == 0 }) else {
            throw Failure(description: "the control socket path \(path) is too long")
        }
        guard connected else {
            let e = errno
            let hint = e == ENOENT || e == ECONNREFUSED ? " (is `nftpool run` running?)" : ""
            throw Failure(description: "cannot reach the daemon at \(path): \(String(cString: strerror(e)))\(hint)")
        }
        guard let body = try? JSONEncoder().encode(request) else { throw Failure(description: "cannot encode the request") }
        let bytes = Array(body) + [10]
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw Failure(description: "cannot send to the daemon at \(path): \(String(cString: strerror(errno)))") }
            sent += n
        }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            if n < 0 {
                let e = errno
                throw Failure(description: e == EAGAIN ? "the daemon at \(path) did not answer within \(seconds) s" : "cannot read the daemon's answer: \(String(cString: strerror(e)))")
            }
            if n == 0 { break }
            reply += chunk[0..<n]
        }
        guard let answer = try? JSONDecoder().decode(ControlMessage.Reply.self, from: Data(reply)) else {
            throw Failure(description: reply.isEmpty ? "the daemon at \(path) closed the connection without an answer" : "the daemon at \(path) answered something that is not a reply")
        }
        return answer
    }
}
