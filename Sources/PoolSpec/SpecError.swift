/// One problem in a spec, named by the path of the field it is about (`pools[0].backends[2].address`).
public struct SpecError: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    /// The one line printed for the user.
    public var description: String { "\(path): \(message)" }
}

/// Every problem found in one pass; never empty.
public struct SpecErrors: Error, Equatable, Sendable, CustomStringConvertible {
    public var errors: [SpecError]

    public init(_ errors: [SpecError]) {
        precondition(!errors.isEmpty, "SpecErrors needs at least one error")
        self.errors = errors
    }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
