import CYaml

/// A pass over libyaml's events before Yams composes the document, to refuse aliases with their field
/// path. Yams resolves an alias to the anchored node itself, so after composing an alias cannot be told
/// from a copy, and a few nested aliases ("billion laughs") become an exponential tree to walk and to
/// hash (Yams hashes every mapping key to find duplicates). Events are flat: nothing here recurses.
enum YAMLAliases {
    /// One error per alias. A document libyaml cannot parse gives what was found before the fault;
    /// Yams then reports the fault itself.
    static func errors(in text: String) -> [SpecError] {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return [] }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBufferPointer { buffer in
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var paths = PathTracker()
            var errors: [SpecError] = []
            var event = yaml_event_t()
            while yaml_parser_parse(&parser, &event) == 1 {
                let type = event.type
                switch type {
                case YAML_SEQUENCE_START_EVENT: paths.open(mapping: false)
                case YAML_MAPPING_START_EVENT: paths.open(mapping: true)
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT: paths.close()
                case YAML_SCALAR_EVENT:
                    let s = event.data.scalar
                    paths.scalar(String(decoding: UnsafeBufferPointer(start: s.value, count: Int(s.length)), as: UTF8.self))
                case YAML_ALIAS_EVENT:
                    errors.append(SpecError(path: paths.next, message: "YAML aliases are not supported: write the value out (line \(event.start_mark.line + 1))"))
                    paths.scalar(nil)
                default: break
                }
                yaml_event_delete(&event)
                if type == YAML_STREAM_END_EVENT { break }
            }
            return errors
        }
    }

    /// The field path of the node about to start, named as FieldReader names it.
    struct PathTracker {
        struct Frame {
            var path: String
            var mapping: Bool
            var index = 0
            var key: String?
            var awaitingKey = true
        }
        var stack: [Frame] = []

        var next: String {
            guard let top = stack.last else { return "spec" }
            if !top.mapping { return "\(top.path)[\(top.index)]" }
            let base = top.path == "spec" ? "" : top.path
            if top.awaitingKey { return top.path }  // a key itself: its mapping's path
            return FieldReader.joinKey(base, top.key ?? "?")
        }

        mutating func open(mapping: Bool) {
            stack.append(Frame(path: next, mapping: mapping))
        }

        mutating func close() {
            stack.removeLast()
            done(key: nil)
        }

        mutating func scalar(_ text: String?) { done(key: text) }

        private mutating func done(key: String?) {
            guard !stack.isEmpty else { return }
            if !stack[stack.count - 1].mapping {
                stack[stack.count - 1].index += 1
            } else if stack[stack.count - 1].awaitingKey {
                stack[stack.count - 1].key = key
                stack[stack.count - 1].awaitingKey = false
            } else {
                stack[stack.count - 1].awaitingKey = true
            }
        }
    }
}
