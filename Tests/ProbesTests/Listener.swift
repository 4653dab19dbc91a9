import Foundation

/// A TCP listener on 127.0.0.1 for probe tests: answers every connection with `answer` (after reading the
/// request) and closes, or (silent) accepts and never says anything. With `requestsPerConnection` it
/// serves that many requests on each connection (HTTP keep-alive), then closes on the next one without
/// answering, as a server closing an idle connection just as a request arrives.
final class Listener: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    private let lock = NSLock()
    private var open = true
    private var clients: [Int32] = []
    private var acceptedCount = 0

    /// Connections accepted so far.
    var accepted: Int { lock.withLock { acceptedCount } }

    init(answer: String?, silent: Bool = false, keepOpen: Bool = false, requestsPerConnection: Int? = nil) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard bound == 0, listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
        Thread.detachNewThread {
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { return }
                // Connections left open are ended by close(); the others are closed here (and their fd
                // numbers may be reused by anyone in the process, so never touched again).
                let leftOpen = silent || keepOpen || requestsPerConnection != nil
                self.lock.withLock {
                    self.acceptedCount += 1
                    if leftOpen { self.clients.append(c) }
                }
                if silent { continue }  // held open, never answered
                if let answer, let requestsPerConnection {
                    Thread.detachNewThread { Self.serve(c, answer: answer, requests: requestsPerConnection) }
                    continue
                }
                if let answer {
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    _ = read(c, &buffer, buffer.count)
                    _ = answer.withCString { write(c, $0, strlen($0)) }
                }
                if keepOpen { continue }  // the client must close first
                Foundation.close(c)
            }
        }
    }

    private static func serve(_ c: Int32, answer: String, requests: Int) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<requests {
            guard read(c, &buffer, buffer.count) > 0 else { return }
            _ = answer.withCString { write(c, $0, strlen($0)) }
        }
        _ = read(c, &buffer, buffer.count)
        shutdown(c, Int32(SHUT_RDWR))
    }

    /// Stops listening and ends every accepted connection, as a killed server's kernel does.
    func close() {
        let clients: [Int32]? = lock.withLock {
            guard open else { return nil }
            open = false
            return self.clients
        }
        guard let clients else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        Foundation.close(fd)
        for c in clients { shutdown(c, Int32(SHUT_RDWR)) }
    }

    deinit { close() }
}
