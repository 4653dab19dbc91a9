#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum IPFamily: String, Equatable, Hashable, Sendable {
    case ipv4 = "IPv4"
    case ipv6 = "IPv6"
}

/// An IPv4 or IPv6 address in network byte order. Printed in the canonical form (inet_ntop), which is what
/// nft prints too, so rendered text and listings agree whatever spelling the spec used.
public struct IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]

    public var family: IPFamily { bytes.count == 4 ? .ipv4 : .ipv6 }

    public init?(_ text: String) {
        // A C string ends at NUL: "10.0.0.1\0junk" would otherwise read as 10.0.0.1.
        guard !text.utf8.contains(0) else { return nil }
        // inet_pton accepts only dotted quads and RFC 4291 text: no hostnames, no zones, no prefixes.
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 4 || bytes.count == 16, "an IP address has 4 or 16 bytes")
        self.bytes = bytes
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let af = family == .ipv4 ? AF_INET : AF_INET6
        bytes.withUnsafeBytes { raw in
            _ = inet_ntop(af, raw.baseAddress, &buffer, socklen_t(buffer.count))
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var isUnspecified: Bool { bytes.allSatisfy { $0 == 0 } }

    public var isMulticast: Bool {
        family == .ipv4 ? (bytes[0] & 0xF0) == 0xE0 : bytes[0] == 0xFF
    }

    public var isLimitedBroadcast: Bool { family == .ipv4 && bytes.allSatisfy { $0 == 0xFF } }

    /// ::ffff:a.b.c.d: the kernel sees such traffic as IPv4, so the spec must say it as IPv4.
    public var isIPv4Mapped: Bool {
        family == .ipv6 && bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        if a.bytes.count != b.bytes.count { return a.bytes.count < b.bytes.count }
        return a.bytes.lexicographicallyPrecedes(b.bytes)
    }
}
