import PoolSpec

/// `--metrics-address`: `ADDR:PORT` (an IPv6 address in brackets, `[::1]:9742`) or `off`.
public struct MetricsAddress: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    /// Loopback only: metrics and health say which backends exist and how they fare.
    public static let defaultText = "127.0.0.1:9742"

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// nil for `off`; throws a one-line message for anything else that is not ADDR:PORT.
    public static func parse(_ text: String) throws(Invalid) -> MetricsAddress? {
        if text == "off" { return nil }
        let host: Substring, port: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw Invalid(text: text) }
            port = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw Invalid(text: text) }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard let address = IPAddress(String(host)), !(host.contains(":") && !text.hasPrefix("[")),
            port.allSatisfy({ ("0"..."9").contains($0) }), let number = Int(port), (1...65535).contains(number)
        else { throw Invalid(text: text) }
        return MetricsAddress(host: address.description, port: number)
    }

    public struct Invalid: Error, CustomStringConvertible {
        public var text: String
        public var description: String {
            "--metrics-address: \(String(reflecting: String(text.prefix(64)))) is not ADDR:PORT (an IP address and a port 1-65535, e.g. \(MetricsAddress.defaultText) or [::1]:9742) or off"
        }
    }
}
