import Foundation

/// A TCP listener on 127.0.0.1 for probe tests: answers every connection with `answer` (after reading the
/// request) and closes, or (silent) accepts and never says anything.
final class Listener: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    private var open = true

    init(answer: String?, silent: Bool = false, keepOpen: Bool = false) throws {
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
                if silent { continue }  // held open, never answered
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

    func close() {
        guard open else { return }
        open = false
        shutdown(fd, Int32(SHUT_RDWR))
        Foundation.close(fd)
    }

    deinit { close() }
}
