/// The outcome of one probe, with the reason a person reads in the logs:
/// `https /readyz: status 503`, `tcp: connection refused`, `timeout after 1s`.
public struct ProbeResult: Equatable, Sendable {
    /// What kind of result it was, for counting (metrics label `outcome`); the reason says the rest.
    public enum Outcome: String, Sendable, CaseIterable {
        case success
        /// Connection refused.
        case refused
        case timeout
        /// Reset by the peer, or closed before a response.
        case reset
        /// No route: host or network unreachable.
        case unreachable
        /// TLS handshake or verification failed, or the CA file cannot be used.
        case tls
        /// An HTTP status not in expectStatus.
        case status
        case error
    }

    public var ok: Bool
    public var reason: String
    public var outcome: Outcome

    public init(ok: Bool, reason: String, outcome: Outcome? = nil) {
        self.ok = ok
        self.reason = reason
        self.outcome = outcome ?? (ok ? .success : .error)
    }

    public static func success(_ reason: String) -> ProbeResult { ProbeResult(ok: true, reason: reason) }
    public static func failure(_ reason: String, _ outcome: Outcome = .error) -> ProbeResult {
        ProbeResult(ok: false, reason: reason, outcome: outcome)
    }
}
