import Foundation
import Testing
import TestSupport
import Yams

@testable import PoolSpec

/// The spec's YAML is read straight from libyaml's events (YAMLDocument). What it gives must be the tree
/// Yams composed before (scalar text, quoted or plain, key order), for every example and for the shapes
/// YAML can take; what it refuses, it refuses as Yams did.
@Suite struct YAMLEventsTests {
    /// The tree as the decoder built it through Yams' node tree (the code YAMLDocument replaced).
    static func throughYams(_ text: String) throws -> SpecNode? {
        guard let root = try Yams.compose(yaml: text, .basic) else { return nil }
        func convert(_ node: Node) -> SpecNode {
            switch node {
            case .scalar(let s):
                return .scalar(.init(text: s.string, kind: s.style == .plain || s.style == .any ? .plain : .string))
            case .sequence(let seq):
                return .sequence(seq.map(convert))
            case .mapping(let map):
                return .mapping(map.compactMap { k, v in
                    guard case .scalar(let key) = k else { return nil }
                    return SpecNode.Entry(key: key.string, value: convert(v))
                })
            case .alias:
                return .scalar(.init(text: "", kind: .plain))
            }
        }
        return convert(root)
    }

    static let shapes: [String] = [
        "table: lb\npools: []\n",
        "{table: lb, pools: [{name: a, backends: [{address: 10.0.0.1, port: 80}]}]}",
        "pools:\n- name: a\n  frontends:\n  - {address: 10.0.0.1, port: 80}\n",
        "a: 'single'\nb: \"double \\t esc\"\nc: plain text\nd: |\n  literal\n  block\ne: >\n  folded\n  block\n",
        "a:\nb: ~\nc: null\nd: \"\"\ne: ''\n",
        "a: !!int \"2\"\nb: !custom 3\nc: &anchor 4\nd: !!str 5\n",
        "# comment\na: 1 # trailing\n\n\nb:\n  - 1\n  -   2\n  - [3, 4, {x: y}]\n",
        "\"quoted key\": 1\n'other': 2\n? complex\n: 3\n",
        "ünï: cödé\nemoji: \"\u{1F600}\"\n",
        "--- \n",
        "---\na: 1\n...\n",
        "a: [1, 2, 3,]\nb: {}\nc: []\n",
        "a: 1.5\nb: 0x1F\nc: -3\nd: +4\ne: true\nf: 1e3\n",
        "- - - deep\n    - x\n- y\n",
    ]

    @Test func everyExampleReadsAsThroughYams() throws {
        for name in Repo.exampleNames {
            let text = try String(contentsOf: Repo.rulesets.appendingPathComponent("\(name).yaml"), encoding: .utf8)
            #expect(try YAMLDocument.parse(text) == Self.throughYams(text), "\(name)")
        }
    }

    @Test(arguments: shapes) func shapesReadAsThroughYams(text: String) throws {
        #expect(try YAMLDocument.parse(text) == Self.throughYams(text))
    }

    @Test func aLargeSpecReadsAsThroughYams() throws {
        var text = "table: bench\npools:\n"
        for p in 0..<20 {
            text += "  - name: p\(p)\n    frontends: [{address: 10.0.\(p).1, port: 443}]\n    backends:\n"
            for b in 0..<50 { text += "      - {address: 172.16.\(p).\(b + 1), port: 8000}\n" }
        }
        #expect(try YAMLDocument.parse(text) == Self.throughYams(text))
    }

    func errors(_ text: String) -> [String] {
        do {
            _ = try YAMLDocument.parse(text)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    @Test func refusalsAreAsBefore() {
        // Duplicate keys: the innermost mapping that closes first, its keys sorted, where it starts.
        #expect(errors("a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\n  y: 4\na: 2\n") == [
            "spec: not valid YAML: expected all keys to be unique but found the following duplicated key(s): 'x', 'y' (in the mapping at line 3, column 3)"
        ])
        #expect(errors("pools: []\npools: []\n").first?.contains("duplicated key(s): 'pools'") == true)
        // Many keys: the duplicate is still found (a Set past 16 keys).
        let many = (0..<40).map { "k\($0): 1" }.joined(separator: "\n") + "\nk7: 2\n"
        #expect(errors(many).first?.contains("duplicated key(s): 'k7'") == true)
        #expect(errors("--- {table: a}\n--- {table: b}\n") == [
            "spec: not valid YAML: expected a single document in the stream but found another document (line 2)"
        ])
        #expect(errors("? [a]\n: 1\nb:\n  ? {c: d}\n  : 2\n") == ["spec: a mapping key must be a plain name", "b: a mapping key must be a plain name"])
        #expect(errors("# only a comment\n") == ["spec: the document is empty"])
        let fault = errors("pools:\n  - name: p\n\tx: 1\n")
        #expect(fault.count == 1 && fault[0].hasPrefix("spec: not valid YAML: 3:1: error: scanner: ") && fault[0].hasSuffix(": x: 1"), "\(fault)")
    }

    /// Aliases win over every other fault, and are found past a duplicate key or a second document.
    @Test func aliasesAreReportedWithTheirPathsWhateverElseIsWrong() {
        #expect(errors("a: &x 1\nb: [1, *x]\nc: {d: *x}\n") == [
            "b[1]: YAML aliases are not supported: write the value out (line 2)",
            "c.d: YAML aliases are not supported: write the value out (line 3)",
        ])
        #expect(errors("a: 1\na: 2\nb: &x 1\nc: *x\n") == ["c: YAML aliases are not supported: write the value out (line 4)"])
        #expect(errors("--- {a: 1}\n--- {b: &x 1, c: *x}\n") == ["c: YAML aliases are not supported: write the value out (line 2)"])
        #expect(errors("a: &x 1\nb: *x\nc: [\n") == ["b: YAML aliases are not supported: write the value out (line 2)"])
    }
}
