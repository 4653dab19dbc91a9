/// Reads typed values out of a SpecNode tree, recording one error per bad field and carrying on, so that a
/// spec with five mistakes reports five lines. Every reader returns nil after recording its error.
struct FieldReader {
    var errors: [SpecError] = []

    mutating func fail(_ path: String, _ message: String) {
        errors.append(SpecError(path: path, message: message))
    }

    /// A mapping whose keys must all be in `allowed`; unknown keys are errors (with a suggestion).
    mutating func mapping(_ node: SpecNode, _ path: @autoclosure () -> String, allowed: [String]) -> Fields? {
        guard case .mapping(let entries) = node else {
            fail(path(), "must be a mapping of fields, not \(Self.kind(of: node))")
            return nil
        }
        for entry in entries where !allowed.contains(entry.key) {
            let child = Self.joinKey(path(), entry.key)
            if let guess = Self.closest(entry.key, in: allowed) {
                fail(child, "unknown field (did you mean \"\(guess)\"?)")
            } else {
                fail(child, "unknown field; known fields here: \(allowed.joined(separator: ", "))")
            }
        }
        return Fields(entries: entries)
    }

    /// A mapping's fields, looked up by a walk over its few entries: at 100,000 backends a dictionary
    /// per backend was a tenth of reading the spec. The last of duplicate keys wins (JSON's rule; YAML
    /// refuses duplicates before this).
    struct Fields {
        let entries: [SpecNode.Entry]

        subscript(key: String) -> SpecNode? { entries.last { $0.key == key }?.value }

        var keys: [String] { entries.map(\.key) }
    }

    mutating func sequence(_ node: SpecNode, _ path: @autoclosure () -> String) -> [SpecNode]? {
        guard case .sequence(let items) = node else {
            fail(path(), "must be a list, not \(Self.kind(of: node))")
            return nil
        }
        return items
    }

    mutating func string(_ node: SpecNode, _ path: @autoclosure () -> String) -> String? {
        guard case .scalar(let s) = node, !s.isNull else {
            fail(path(), "must be a string, not \(Self.kind(of: node))")
            return nil
        }
        return s.text
    }

    mutating func integer(_ node: SpecNode, _ path: @autoclosure () -> String, in range: ClosedRange<Int>, what: String = "a number")
        -> Int?
    {
        guard case .scalar(let s) = node, !s.isNull else {
            fail(path(), "must be \(what) from \(range.lowerBound) to \(range.upperBound), not \(Self.kind(of: node))")
            return nil
        }
        guard s.kind == .plain, let value = Int(s.text) else {
            if s.kind == .plain, Self.isDecimal(s.text) {  // beyond Int: out of range, not "not a number"
                fail(path(), "\(Self.show(s.text, quoted: false)) is out of range (\(range.lowerBound)-\(range.upperBound))")
                return nil
            }
            let shown = s.kind == .string ? "the string \(Self.show(s.text))" : Self.show(s.text)
            fail(path(), "must be \(what) from \(range.lowerBound) to \(range.upperBound), not \(shown)")
            return nil
        }
        guard range.contains(value) else {
            fail(path(), "\(value) is out of range (\(range.lowerBound)-\(range.upperBound))")
            return nil
        }
        return value
    }

    mutating func port(_ node: SpecNode, _ path: @autoclosure () -> String) -> UInt16? {
        integer(node, path(), in: 1...65535, what: "a port").map { UInt16($0) }
    }

    mutating func bool(_ node: SpecNode, _ path: @autoclosure () -> String) -> Bool? {
        if case .scalar(let s) = node, s.kind == .plain {
            switch s.text {
            case "true", "True", "TRUE": return true
            case "false", "False", "FALSE": return false
            default: break
            }
        }
        fail(path(), "must be true or false, not \(Self.kind(of: node))")
        return nil
    }

    mutating func choice<E: RawRepresentable & CaseIterable>(_ node: SpecNode, _ path: @autoclosure () -> String, as: E.Type) -> E?
    where E.RawValue == String {
        guard let text = string(node, path()) else { return nil }
        if let value = E(rawValue: text) { return value }
        let names = E.allCases.map(\.rawValue)
        fail(path(), "\(Self.show(text)) is not one of \(names.joined(separator: ", "))")
        return nil
    }

    mutating func address(_ node: SpecNode, _ path: @autoclosure () -> String) -> IPAddress? {
        guard let text = string(node, path()) else { return nil }
        guard let address = IPAddress(text) else {
            fail(path(), "\(Self.show(text)) is not an IPv4 or IPv6 address")
            return nil
        }
        if address.isUnspecified || address.isLimitedBroadcast || address.isMulticast {
            fail(path(), "\(Self.show(text)) is not a unicast address")
            return nil
        }
        if address.isIPv4Mapped {
            fail(path(), "\(Self.show(text)) is an IPv4-mapped IPv6 address; write the IPv4 address itself")
            return nil
        }
        return address
    }

    mutating func duration(_ node: SpecNode, _ path: @autoclosure () -> String) -> Duration? {
        guard case .scalar(let s) = node, !s.isNull else {
            fail(path(), "must be a duration such as 500ms, 2s or 1m, not \(Self.kind(of: node))")
            return nil
        }
        guard let d = DurationText.parse(s.text) else {
            fail(path(), "\(Self.show(s.text)) is not a duration (write e.g. 500ms, 2s, 1m or 1m30s)")
            return nil
        }
        guard d > .zero, d <= .seconds(3600) else {
            fail(path(), "\(Self.show(s.text, quoted: false)) is out of range (1ms-1h)")
            return nil
        }
        return d
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// `join` for a key from the document: one that is not a plain name (empty, spaces, dots, brackets)
    /// is quoted, so that every path still reads as one: `pools[0]."a b"`, never `pools[0].a b` or "";
    /// a long one is also elided.
    static func joinKey(_ path: String, _ key: String) -> String {
        join(path, isPlainName(key) && key.utf8.count <= 64 ? key : show(key))
    }

    private static func isPlainName(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.allSatisfy { $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }
    }

    static func isDecimal(_ text: String) -> Bool {
        let digits = text.first == "-" || text.first == "+" ? text.utf8.dropFirst() : text.utf8[...]
        return !digits.isEmpty && digits.allSatisfy { (0x30...0x39).contains($0) }
    }

    /// Spec text as an error message shows it: quoted, control characters escaped (an error is one
    /// line), and elided past 64 characters (a crafted megabyte-long value is not echoed whole).
    static func show(_ text: String, quoted: Bool = true) -> String {
        var shown = SpecError.escaped(text.count > 64 ? String(text.prefix(48)) : text)
        if text.count > 64 { shown += "… (\(text.count) characters)" }
        guard quoted else { return shown }
        // A quote stays a character of its own: a combining mark first (or a prepended mark last)
        // would fuse with it into one grapheme, on screen and for any reader that splits characters.
        if let first = shown.unicodeScalars.first, "\"\(first)".count == 1 {
            shown = escapedScalar(first) + String(shown.unicodeScalars.dropFirst())
        }
        if let last = shown.unicodeScalars.last, "\(last)\"".count == 1 {
            shown = String(shown.unicodeScalars.dropLast()) + escapedScalar(last)
        }
        return "\"\(shown)\""
    }

    private static func escapedScalar(_ u: Unicode.Scalar) -> String { "\\u{\(String(u.value, radix: 16))}" }

    static func kind(of node: SpecNode) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let s) where s.isNull: return "null"
        case .scalar(let s): return show(s.text)
        }
    }

    /// A known name within edit distance 2 of a misspelt one.
    static func closest(_ word: String, in names: [String]) -> String? {
        // Edit distance is length × length: a megabyte-long key would take seconds, and is no typo.
        guard word.utf8.count <= 64 else { return nil }
        let scored = names.map { ($0, editDistance(word.lowercased(), $0.lowercased())) }
        // A suggestion must keep part of the word: "" or "x" is no typo of "ha".
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= 2, best.1 < word.count else { return nil }
        return best.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return a.isEmpty ? b.count : row[b.count]
    }
}
