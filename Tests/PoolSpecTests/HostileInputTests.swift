import Foundation
import Testing

@testable import PoolSpec

/// Crafted input ends in a spec or in field-path errors, one line each, never in a crash (issue 11).
/// Each case here was a trap found by reading the decoder or by the fuzzer (scripts/fuzz-spec).
@Suite struct HostileInputTests {
    /// Every error is one line that starts with a path.
    func expectWellFormed(_ lines: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!lines.isEmpty, sourceLocation: sourceLocation)
        for line in lines {
            #expect(!line.contains("\n") && !line.contains("\r") && !line.hasPrefix(":") && line.contains(": "), "\(line)", sourceLocation: sourceLocation)
        }
    }

    /// `999999999h` many times overflowed Int64 milliseconds: validate died with SIGILL.
    @Test func durationSumsTooLargeForInt64AreOutOfRange() {
        let huge = String(repeating: "999999999h", count: 3000)
        #expect(errors(edited("path: /readyz", "path: /readyz\n      interval: \(huge)")) == [
            "pools[0].healthCheck.interval: 999999999h999999999h999999999h999999999h99999999… (30000 characters) is out of range (1ms-1h)"
        ])
        #expect(DurationText.parse("999999999h999999999h999999999h") == .milliseconds(3 * 999_999_999 * 3_600_000))
        #expect(DurationText.parse(huge) == .milliseconds(Int64.max))
        #expect(DurationText.parse("1m30s") == .milliseconds(90_000))
    }

    @Test func hugeAndNegativeNumbersAreOutOfRange() {
        #expect(errors(edited("weight: 2", "weight: 99999999999999999999999999")) == [
            "pools[0].backends[1].weight: 99999999999999999999999999 is out of range (1-1000)"
        ])
        #expect(errors(edited("port: 6443", "port: -9223372036854775809")) == [
            "pools[0].frontends[0].port: -9223372036854775809 is out of range (1-65535)"
        ])
        #expect(errors(edited("weight: 2", "weight: -1")) == ["pools[0].backends[1].weight: -1 is out of range (1-1000)"])
        let json = #"{"pools": [{"name": "p", "slots": 1e400, "frontends": [{"address": "10.0.0.1", "port": 99999999999999999999}], "backends": [{"address": "10.0.1.1"}]}]}"#
        expectWellFormed(errors(json))
    }

    @Test func nulBytesAreRefusedWithTheirLine() {
        #expect(errors("table: lb\npools: []\u{0}\n") == ["spec: line 2 holds a NUL byte"])
        #expect(errors("{\"table\": \"lb\u{0}\"}") == ["spec: line 1 holds a NUL byte"])
        #expect(IPAddress("10.0.0.1\u{0}junk") == nil)
    }

    @Test func bytesThatAreNotUTF8() {
        #expect(throws: SpecErrors([SpecError(path: "spec", message: "the spec is not UTF-8 text")])) {
            try SpecDecoder.decode([0x74, 0x61, 0xFF, 0xFE, 0x0A])
        }
    }

    /// Line breaks inside quoted values and keys are escaped: an error is one line.
    @Test func controlCharactersInValuesAndKeysStayOnOneLine() {
        #expect(errors(edited("192.168.1.110", #""10.0.0.1\nrm -rf /""#)) == [
            #"pools[0].backends[0].address: "10.0.0.1\nrm -rf /" is not an IPv4 or IPv6 address"#
        ])
        #expect(errors(edited("table: lb", "table: lb\n\"a\\nb\": 1")) == [
            #""a\nb": unknown field; known fields here: table, pools, ha"#
        ])
        // A key that is empty or not a plain name is quoted, so the path is never empty or ambiguous.
        #expect(errors(edited("table: lb", "table: lb\n\"\": 1\n\"x.y\": 2")) == [
            #""": unknown field; known fields here: table, pools, ha"#,
            #""x.y": unknown field; known fields here: table, pools, ha"#,
        ])
        #expect(errors("pools[0]: 1\n") == [
            #""pools[0]": unknown field; known fields here: table, pools, ha"#,
            "pools: required: a list of one or more pools",
        ])
    }

    /// Found by the fuzzer: a key that starts with a combining mark (U+06EA) fused with its opening
    /// quote into one character, so the path no longer read as a quoted key. Such a mark is escaped,
    /// and so is a prepended mark (U+0600) that would fuse with the closing quote.
    @Test func aQuoteNeverFusesWithAMarkInTheKey() {
        #expect(errors(edited("table: lb", "table: lb\n\"\u{6ea}\u{113}ess Wetn:t\": 1")) == [
            #""\u{6ea}ēess Wetn:t": unknown field; known fields here: table, pools, ha"#
        ])
        #expect(errors(edited("table: lb", "table: lb\n\"a\u{600}\": 1")) == [
            #""a\u{600}": unknown field; known fields here: table, pools, ha"#
        ])
        for e in errors(edited("table: lb", "table: lb\n\"\u{301}x\": 1")) {
            #expect(e.first == "\"", "\(e)")
        }
    }

    /// Found by the fuzzer: libyaml quotes the line it refused, here 150 control characters, each
    /// escaped to `\u{1a}`; the message was cut before escaping and came out over 1,000 characters.
    @Test func aParserMessageIsCutAfterEscaping() {
        let e = errors("pools:\n  - name: p\n" + String(repeating: "\u{1a}", count: 150) + "\n")
        #expect(e.count == 1 && e[0].hasPrefix("spec: not valid YAML: ") && e[0].count < 300, "\(e.map { $0.prefix(300) })")
        expectWellFormed(e)
    }

    @Test func longValuesAreElidedInErrors() {
        let long = String(repeating: "x", count: 100_000)
        let e = errors(edited("192.168.1.110", long))
        // A long unknown key gets no suggestion (edit distance would cost length²), and is elided too.
        #expect(errors("{\"\(long)x\": 1, \"pools\": []}") == [
            "\"\(String(repeating: "x", count: 48))… (100001 characters)\": unknown field; known fields here: table, pools, ha",
            "pools: must hold at least one pool",
        ])
        // libyaml's own message quotes the line it stopped on: that is cut short too.
        let yaml = errors("table: lb\n\(long)x: 1\n")
        #expect(yaml.count == 1 && yaml[0].hasPrefix("spec: not valid YAML: ") && yaml[0].count < 300, "\(yaml.map { $0.prefix(300) })")
        #expect(e == ["pools[0].backends[0].address: \"\(String(repeating: "x", count: 48))… (100000 characters)\" is not an IPv4 or IPv6 address"])
    }

    /// libyaml stops at 1,000 levels, JSON's parser at 512: errors, not stack overflows. Just below the
    /// limits the whole depth goes through Yams' and our own recursive conversion.
    @Test func deepNestingIsAnErrorNotAStackOverflow() {
        for depth in [511, 999, 1_000, 100_000] {
            expectWellFormed(errors("pools: " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth)))
            expectWellFormed(errors(String(repeating: "- ", count: depth) + "x\n"))
            expectWellFormed(errors("{\"pools\": " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"))
        }
    }

    @Test func hugeListsAreCountedNotCrashedOn() {
        let many = (0..<70_000).map { "{address: 10.\($0 >> 16).\(($0 >> 8) & 255).\($0 & 255), port: 80}" }.joined(separator: ", ")
        let spec = "pools:\n  - name: p\n    frontends: [{address: 192.168.0.1, port: 80}]\n    backends: [\(many)]\n"
        let e = errors(spec)
        #expect(e.contains("pools[0].backends: 70000 backends; a pool holds at most 65521"))
        expectWellFormed(e)
    }

    /// Tags are ignored (a quoted scalar stays a string); anchors are fine, aliases refused.
    @Test func yamlTagsAnchorsAndAliases() {
        #expect(errors(edited("weight: 2", "weight: !!int \"2\"")) == [
            "pools[0].backends[1].weight: must be a number from 1 to 1000, not the string \"2\""
        ])
        #expect(errors(edited("weight: 2", "weight: !custom 2")) == [])
        #expect(errors(edited("weight: 2", "weight: &w 2")) == [])
        #expect(errors(edited("weight: 2", "weight: &w 2\n      - address: 192.168.1.112\n        weight: *w")) == [
            "pools[0].backends[2].weight: YAML aliases are not supported: write the value out (line 12)"
        ])
        // Nested aliases ("billion laughs") are refused before anything expands or hashes them.
        let laughs = (1...30).map { "l\($0): &l\($0) [" + Array(repeating: "*l\($0 - 1)", count: 9).joined(separator: ", ") + "]" }
        let e = errors("l0: &l0 [lol]\n" + laughs.joined(separator: "\n") + "\n? *l30\n: x\n")
        #expect(e.count == 30 * 9 + 1 && e.first == "l1[0]: YAML aliases are not supported: write the value out (line 2)")
        #expect(e.last == "spec: YAML aliases are not supported: write the value out (line 32)")
        expectWellFormed(errors("--- {table: a}\n--- {table: b}\n"))
    }
}
