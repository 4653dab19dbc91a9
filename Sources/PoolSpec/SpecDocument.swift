import Foundation

/// A parsed spec document, before it means anything: what YAML and JSON have in common. Keeping the
/// mapping's key order and knowing whether a scalar was quoted lets validation say exactly what is wrong.
public indirect enum SpecNode: Equatable, Sendable {
    case mapping([Entry])
    case sequence([SpecNode])
    case scalar(Scalar)

    public struct Entry: Equatable, Sendable {
        public var key: String
        public var value: SpecNode
    }

    public struct Scalar: Equatable, Sendable {
        public enum Kind: Equatable, Sendable {
            /// YAML plain scalar or JSON number/bool/null: its meaning comes from its text.
            case plain
            /// Quoted: always a string, even when it looks like a number.
            case string
        }
        public var text: String
        public var kind: Kind

        public var isNull: Bool { kind == .plain && ["", "~", "null", "Null", "NULL"].contains(text) }
    }
}

/// Turns file bytes into a SpecNode tree. Errors here are whole-document errors (path `spec`).
enum SpecDocument {
    static func parse(_ text: String) throws(SpecErrors) -> SpecNode {
        let trimmed = text.drop { $0.isWhitespace || $0 == "\u{FEFF}" }
        if trimmed.isEmpty {
            throw SpecErrors([SpecError(path: "spec", message: "the document is empty")])
        }
        // Neither YAML nor JSON allows NUL in text; refused here with its line, before any C parser.
        if let nul = text.utf8.firstIndex(of: 0) {
            let line = text.utf8[..<nul].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            throw SpecErrors([SpecError(path: "spec", message: "line \(line) holds a NUL byte")])
        }
        if trimmed.first == "{" || trimmed.first == "[" {
            return try parseJSON(text)
        }
        return try parseYAML(text)
    }

    private static func parseJSON(_ text: String) throws(SpecErrors) -> SpecNode {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [])
        } catch {
            let reason = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            throw SpecErrors([SpecError(path: "spec", message: "not valid JSON: \(oneLine(reason))")])
        }
        return node(fromJSON: object)
    }

    private static func node(fromJSON value: Any) -> SpecNode {
        switch value {
        case let dict as [String: Any]:
            // JSONSerialization loses key order; sort for deterministic error order.
            return .mapping(dict.keys.sorted().map { SpecNode.Entry(key: $0, value: node(fromJSON: dict[$0]!)) })
        case let array as [Any]:
            return .sequence(array.map(node(fromJSON:)))
        case let string as String:
            return .scalar(.init(text: string, kind: .string))
        case is NSNull:
            return .scalar(.init(text: "null", kind: .plain))
        case let number as NSNumber:
            if String(cString: number.objCType) == "c" {  // how Foundation marks a JSON true/false
                return .scalar(.init(text: number.boolValue ? "true" : "false", kind: .plain))
            }
            return .scalar(.init(text: number.stringValue, kind: .plain))
        default:
            return .scalar(.init(text: "\(value)", kind: .plain))
        }
    }

    private static func parseYAML(_ text: String) throws(SpecErrors) -> SpecNode {
        try YAMLDocument.parse(text)
    }

    /// A parser's message on one line, cut short: libyaml's quotes the whole line it stopped on. Cut
    /// after escaping, which makes a control character up to eight.
    static func oneLine(_ s: String) -> String {
        let line = SpecError.escaped(
            s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " "))
        return line.count > 240 ? line.prefix(200) + "… (cut)" : line
    }
}
