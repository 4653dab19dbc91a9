import CYaml

/// A YAML spec straight from libyaml's event stream into a SpecNode tree, in one pass and without
/// recursion: no Yams node tree, no second parse. What the document must not hold is refused here with
/// what Yams said before: aliases (with their field path, before anything could expand them: Yams
/// resolves an alias to the anchored node itself, so a few nested aliases, "billion laughs", became an
/// exponential tree), duplicate keys, a second document, mapping keys that are not scalars. Tags are
/// ignored: FieldReader types every scalar by its text, and a quoted scalar stays a string.
enum YAMLDocument {
    static func parse(_ text: String) throws(SpecErrors) -> SpecNode {
        var text = text
        let result = text.withUTF8 { bytes -> Result<SpecNode, SpecErrors> in
            var builder = Builder(text: bytes)
            do throws(SpecErrors) { return .success(try builder.run()) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// A container being filled: a sequence's items or a mapping's entries, and for a mapping the key
    /// whose value comes next.
    struct Frame {
        var mapping: Bool
        var items: [SpecNode] = []
        var entries: [SpecNode.Entry] = []
        var awaitingKey = true
        /// The pending key's text; nil when it was not a scalar (its entry is dropped).
        var key: String?
        /// Where the mapping starts (for the duplicate-key message).
        var line = 0, column = 0

        init(mapping: Bool) { self.mapping = mapping }
    }

    struct Builder {
        let text: UnsafeBufferPointer<UInt8>
        var stack: [Frame] = []
        var root: SpecNode?
        var documents = 0
        /// Errors by alias, collected over the whole stream (they win over everything else).
        var aliasErrors: [SpecError] = []
        /// The first fault that ends the document (Yams stopped at its first): a parser error, a
        /// duplicate key, a second document. After one the stream is still read for aliases.
        var fatal: SpecError?
        /// Mapping keys that are not scalars (Yams composed them; SpecDocument refused them).
        var keyErrors: [SpecError] = []
        /// > 0 while inside a non-scalar mapping key: what it holds is dropped with it.
        var inKey = 0

        init(text: UnsafeBufferPointer<UInt8>) { self.text = text }

        mutating func run() throws(SpecErrors) -> SpecNode {
            var parser = yaml_parser_t()
            guard yaml_parser_initialize(&parser) == 1 else {
                throw SpecErrors([SpecError(path: "spec", message: "not valid YAML: out of memory")])
            }
            defer { yaml_parser_delete(&parser) }
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            yaml_parser_set_input_string(&parser, text.baseAddress, text.count)
            var event = yaml_event_t()
            while true {
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    if fatal == nil { fatal = SpecError(path: "spec", message: "not valid YAML: " + SpecDocument.oneLine(Self.describe(parser, text))) }
                    break
                }
                let type = event.type
                handle(&event)
                yaml_event_delete(&event)
                if type == YAML_STREAM_END_EVENT { break }
            }
            if !aliasErrors.isEmpty { throw SpecErrors(aliasErrors) }
            if let fatal { throw SpecErrors([fatal]) }
            if !keyErrors.isEmpty { throw SpecErrors(keyErrors) }
            guard let root else { throw SpecErrors([SpecError(path: "spec", message: "the document is empty")]) }
            return root
        }

        mutating func handle(_ event: inout yaml_event_t) {
            switch event.type {
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents == 2, fatal == nil {
                    fatal = SpecError(
                        path: "spec",
                        message: "not valid YAML: expected a single document in the stream but found another document (line \(event.start_mark.line + 1))")
                }
            case YAML_ALIAS_EVENT:
                aliasErrors.append(SpecError(path: nextPath, message: "YAML aliases are not supported: write the value out (line \(event.start_mark.line + 1))"))
                add(.scalar(.init(text: "", kind: .plain)), key: nil)
            case YAML_SCALAR_EVENT:
                let s = event.data.scalar
                let value = String(decoding: UnsafeBufferPointer(start: s.value, count: Int(s.length)), as: UTF8.self)
                let plain = s.style == YAML_PLAIN_SCALAR_STYLE || s.style == YAML_ANY_SCALAR_STYLE
                add(.scalar(.init(text: value, kind: plain ? .plain : .string)), key: value)
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                if let top = stack.last, top.mapping, top.awaitingKey { inKey += 1 }
                var frame = Frame(mapping: event.type == YAML_MAPPING_START_EVENT)
                frame.line = Int(event.start_mark.line) + 1
                frame.column = Int(event.start_mark.column) + 1
                stack.append(frame)
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let frame = stack.removeLast()
                if fatal == nil, frame.mapping, let duplicate = Self.duplicates(frame.entries) {
                    fatal = SpecError(
                        path: "spec",
                        message: "not valid YAML: expected all keys to be unique but found the following duplicated key(s): "
                            + duplicate.map { "'\(SpecError.escaped($0))'" }.joined(separator: ", ")
                            + " (in the mapping at line \(frame.line), column \(frame.column))")
                }
                if let top = stack.last, top.mapping, top.awaitingKey { inKey -= 1 }
                add(frame.mapping ? .mapping(frame.entries) : .sequence(frame.items), key: nil)
            default:
                break
            }
        }

        /// A finished node into its container (or as the root). `key`: its text when it is a scalar.
        mutating func add(_ node: SpecNode, key: String?) {
            guard !stack.isEmpty else {
                root = node
                return
            }
            let top = stack.count - 1
            if !stack[top].mapping {
                stack[top].items.append(node)
            } else if stack[top].awaitingKey {
                if key == nil, inKey == 0 {
                    keyErrors.append(SpecError(path: path(of: top), message: "a mapping key must be a plain name"))
                }
                stack[top].key = key
                stack[top].awaitingKey = false
            } else {
                if let k = stack[top].key { stack[top].entries.append(.init(key: k, value: node)) }
                stack[top].key = nil
                stack[top].awaitingKey = true
            }
        }

        /// The keys that appear more than once, sorted; nil when every key is unique.
        static func duplicates(_ entries: [SpecNode.Entry]) -> [String]? {
            if entries.count < 2 { return nil }
            if entries.count <= 16 {
                var found: [String] = []
                for i in 1..<entries.count where !found.contains(entries[i].key) {
                    for j in 0..<i where entries[j].key == entries[i].key {
                        found.append(entries[i].key)
                        break
                    }
                }
                return found.isEmpty ? nil : found.sorted()
            }
            var seen = Set<String>(minimumCapacity: entries.count), found = Set<String>()
            for e in entries where !seen.insert(e.key).inserted { found.insert(e.key) }
            return found.isEmpty ? nil : found.sorted()
        }

        /// The field path of frame `index`, named as FieldReader names it.
        func path(of index: Int) -> String {
            var path = "spec"
            for i in 0..<index {
                path = Self.child(of: path, in: stack[i])
            }
            return path
        }

        /// The path of the node that comes next (an alias's).
        var nextPath: String {
            guard let top = stack.indices.last else { return "spec" }
            if stack[top].mapping && stack[top].awaitingKey { return path(of: top) }  // a key: its mapping's path
            return Self.child(of: path(of: top), in: stack[top])
        }

        static func child(of path: String, in frame: Frame) -> String {
            if !frame.mapping { return "\(path)[\(frame.items.count)]" }
            return FieldReader.joinKey(path == "spec" ? "" : path, frame.key ?? "?")
        }

        /// libyaml's fault in the words Yams used: `line:column: error: scanner: while ... problem`.
        static func describe(_ parser: yaml_parser_t, _ text: UnsafeBufferPointer<UInt8>) -> String {
            let problem = parser.problem.map { String(cString: $0) } ?? "unknown problem"
            let mark = parser.problem_mark
            switch parser.error {
            case YAML_MEMORY_ERROR:
                return "out of memory"
            case YAML_READER_ERROR:
                return "reader: \(problem) at byte \(parser.problem_offset)"
            default:
                let stage = parser.error == YAML_SCANNER_ERROR ? "scanner" : parser.error == YAML_PARSER_ERROR ? "parser" : "composer"
                var context = ""
                if let c = parser.context {
                    context = "\(String(cString: c)) in line \(parser.context_mark.line + 1), column \(parser.context_mark.column + 1) "
                }
                return "\(mark.line + 1):\(mark.column + 1): error: \(stage): \(context)\(problem): \(line(Int(mark.line), of: text))"
            }
        }

        /// Line `n` (from 0) of the text, as Yams quoted it after its message.
        static func line(_ n: Int, of text: UnsafeBufferPointer<UInt8>) -> String {
            var current = 0, start = 0
            for i in 0..<text.count where current < n && text[i] == UInt8(ascii: "\n") {
                current += 1
                start = i + 1
            }
            guard current == n, start <= text.count else { return "" }
            var end = start
            while end < text.count && text[end] != UInt8(ascii: "\n") { end += 1 }
            while start < end && (text[start] == UInt8(ascii: " ") || text[start] == UInt8(ascii: "\t")) { start += 1 }
            return String(decoding: UnsafeBufferPointer(rebasing: text[start..<end]), as: UTF8.self)
        }
    }
}
