/// The outcome of one probe, with the reason a person reads in the logs:
/// `https /readyz: status 503`, `tcp: connection refused`, `timeout after 1s`.
public struct ProbeResult: Equatable, Sendable {
    public var ok: Bool
    public var reason: String

    public init(ok: Bool, reason: String) {
        self.ok = ok
        self.reason = reason
    }

    public static func success(_ reason: String) -> ProbeResult { ProbeResult(ok: true, reason: reason) }
    public static func failure(_ reason: String) -> ProbeResult { ProbeResult(ok: false, reason: reason) }
}
