/// The control socket's protocol: one JSON request line from `nftpool backend …` or `nftpool status`, one
/// JSON reply line from the daemon, then the daemon closes the connection.
public enum ControlMessage {
    public struct Request: Codable, Equatable, Sendable {
        public enum Command: String, Codable, Sendable {
            /// Change a backend's admin state and/or weight.
            case set
            /// How many connections the backend still has (drain --wait).
            case connections
            /// The daemon's status document, as of now.
            case status
        }

        public var command: Command
        public var pool: String?
        /// An endpoint (`10.0.0.1:6443`, `[fd00::1]:6443`) or an address its pool has once.
        public var backend: String?
        public var state: String?
        public var weight: Int?
        /// Drain or disable the pool's last serving backend anyway.
        public var force: Bool?
        /// With disable: also end the backend's established connections.
        public var closeConnections: Bool?

        public init(command: Command, pool: String? = nil, backend: String? = nil, state: String? = nil, weight: Int? = nil,
                    force: Bool? = nil, closeConnections: Bool? = nil) {
            self.command = command
            self.pool = pool
            self.backend = backend
            self.state = state
            self.weight = weight
            self.force = force
            self.closeConnections = closeConnections
        }
    }

    public struct Reply: Codable, Sendable {
        /// The exit status the CLI should end with: 0 done, 1 refused or failed, 2 no such pool or backend
        /// (or a bad value).
        public var exit: Int32
        /// One line for the operator.
        public var message: String
        /// The backend's endpoint as the daemon names it.
        public var backend: String?
        public var connections: Int?
        public var status: StatusFile.Document?

        public init(exit: Int32, message: String, backend: String? = nil, connections: Int? = nil, status: StatusFile.Document? = nil) {
            self.exit = exit
            self.message = message
            self.backend = backend
            self.connections = connections
            self.status = status
        }
    }

    /// A request larger than this is refused. (Replies are not capped: the status of 10,000 backends is a
    /// few MB.)
    public static let maxRequest = 64 * 1024
}
