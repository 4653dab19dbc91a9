import Foundation
import Logging
import Testing

@testable import Daemon

/// `nftpool run --log-format text|json`, and text lines when standard error is the journal.
struct DaemonLogHandlerTests {
    /// What a handler wrote, line by line.
    final class Written: @unchecked Sendable {
        private let lock = NSLock()
        private var chunks: [String] = []
        func append(_ s: String) { lock.withLock { chunks.append(s) } }
        var all: [String] { lock.withLock { chunks } }
    }

    /// 2025-06-15T15:06:40.123Z
    static let instant = Date(timeIntervalSince1970: 1_750_000_000.1234)

    static func logger(_ format: DaemonLogHandler.Format, journal: Bool = false) -> (Logger, Written) {
        let written = Written()
        let handler = DaemonLogHandler(label: "nftpool", format: format, journal: journal, clock: { instant }, write: written.append)
        return (Logger(label: "nftpool") { _ in handler }, written)
    }

    static func object(_ line: String) throws -> [String: Any] {
        #expect(line.hasSuffix("\n") && line.dropLast().allSatisfy { $0 != "\n" && $0 != "\r" }, "one line: \(line.debugDescription)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
    }

    @Test func aJSONLineHasTsLevelMsgAndTheMetadataAsFields() throws {
        let (logger, written) = Self.logger(.json)
        logger.notice(
            "pool web backend 10.1.0.1:80: up → down",
            metadata: ["pool": "web", "backend": "10.1.0.1:80", "duration": .stringConvertible(41.234), "closed": .stringConvertible(3),
                       "tls": .stringConvertible(true), "nested": ["b": "2", "a": ["x"]]])
        let lines = written.all
        try #require(lines.count == 1)
        #expect(lines[0].hasPrefix(#"{"ts":"2025-06-15T15:06:40.123Z","level":"notice","msg":"pool web backend 10.1.0.1:80: up → down","#), "\(lines[0])")
        let o = try Self.object(lines[0])
        #expect(o["ts"] as? String == "2025-06-15T15:06:40.123Z")
        #expect(o["level"] as? String == "notice")
        #expect(o["msg"] as? String == "pool web backend 10.1.0.1:80: up → down")
        #expect(o["pool"] as? String == "web" && o["backend"] as? String == "10.1.0.1:80")
        #expect(o["duration"] as? Double == 41.234, "a number, not text: \(lines[0])")
        #expect(o["closed"] as? Int == 3 && o["tls"] as? Bool == true)
        #expect((o["nested"] as? [String: Any])?["a"] as? [String] == ["x"])
        #expect(Set(o.keys) == ["ts", "level", "msg", "pool", "backend", "duration", "closed", "tls", "nested"])
    }

    /// The handler's own metadata joins each line; a field named ts, level or msg does not replace ours.
    @Test func loggerMetadataJoinsAndCannotReplaceTheFixedFields() throws {
        var (logger, written) = Self.logger(.json)
        logger[metadataKey: "node"] = "lb-a"
        logger.error("boom", metadata: ["msg": "not this", "level": "debug"])
        let o = try Self.object(try #require(written.all.first))
        #expect(o["node"] as? String == "lb-a" && o["msg"] as? String == "boom" && o["level"] as? String == "error", "\(o)")
    }

    @Test func quotesNewlinesAndControlCharactersStayOnOneLine() throws {
        let (logger, written) = Self.logger(.json)
        let hostile = "say \"hi\"\\ \n second line\r\n\t\u{0}\u{1}\u{7f}\u{1b}[31mred\u{2028}é\u{FFFD} {\"msg\":\"x\"}"
        logger.warning("\(hostile)", metadata: ["reason": .string(hostile), hostile: "key too"])
        let line = try #require(written.all.first)
        let o = try Self.object(line)
        #expect(o["msg"] as? String == hostile)
        #expect(o["reason"] as? String == hostile)
        #expect(o[hostile] as? String == "key too")
        #expect(!line.contains("\u{1b}") && !line.contains("\u{0}"), "control characters are escaped: \(line.debugDescription)")
    }

    @Test func textLinesAreAsBeforeAndLeaveMetadataToJSON() throws {
        let (logger, written) = Self.logger(.text)
        logger.notice("pool web backend 10.1.0.1:80: up → down", metadata: ["pool": "web"])
        let line = try #require(written.all.first)
        let stamp = DaemonLogHandler.localTimestamp(Self.instant)
        #expect(line == "\(stamp) notice nftpool: [DaemonCoreTests] pool web backend 10.1.0.1:80: up → down\n", "\(line)")
        #expect(stamp.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}/) != nil, "\(stamp)")
        logger.info("below info is not written"); logger.debug("no")
        #expect(written.all.count == 2)
    }

    @Test func journalTextLinesCarryThePriorityAndNoTime() throws {
        let (logger, written) = Self.logger(.text, journal: true)
        logger.critical("c"); logger.error("e"); logger.warning("w"); logger.notice("n"); logger.info("i")
        logger.notice("two\nlines")
        #expect(written.all == [
            "<2>critical nftpool: [DaemonCoreTests] c\n", "<3>error nftpool: [DaemonCoreTests] e\n",
            "<4>warning nftpool: [DaemonCoreTests] w\n", "<5>notice nftpool: [DaemonCoreTests] n\n",
            "<6>info nftpool: [DaemonCoreTests] i\n", "<5>notice nftpool: [DaemonCoreTests] two\n<5>lines\n",
        ])
        #expect(DaemonLogHandler.priority(.debug) == 7 && DaemonLogHandler.priority(.trace) == 7)
        // json is never prefixed.
        let (json, jsonWritten) = Self.logger(.json, journal: true)
        json.notice("n")
        #expect(jsonWritten.all.first?.hasPrefix("{\"ts\":") == true, "\(jsonWritten.all)")
    }

    static func journalStream(of fd: Int32) throws -> String {
        var st = stat()
        try #require(fstat(fd, &st) == 0)
        return "\(st.st_dev):\(st.st_ino)"
    }

    /// As sd-daemon(3) says: the journal when $JOURNAL_STREAM names the very stream fd 2 is.
    @Test func theJournalIsStandardErrorOnlyWhenJOURNAL_STREAMNamesIt() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-journal-\(getpid())-\(UUID().uuidString.prefix(8))").path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd); unlink(path) }
        let stream = try Self.journalStream(of: fd)
        #expect(DaemonLogHandler.isJournal(fd, journalStream: stream))
        let parts = stream.split(separator: ":")
        #expect(!DaemonLogHandler.isJournal(fd, journalStream: "\(parts[0]):\(UInt64(parts[1])! + 1)"), "another inode")
        #expect(!DaemonLogHandler.isJournal(fd, journalStream: "\(UInt64(parts[0])! + 1):\(parts[1])"), "another device")
        for bad in [nil, "", "12", "a:b", "1:2:3", "\(stream) "] as [String?] {
            #expect(!DaemonLogHandler.isJournal(fd, journalStream: bad), "\(bad ?? "nil")")
        }
        #expect(!DaemonLogHandler.isJournal(-1, journalStream: stream), "a closed descriptor")

        // The factory reads $JOURNAL_STREAM and fstat(2)s standard error itself.
        let saved = getenv("JOURNAL_STREAM").map { String(cString: $0) }
        defer { if let saved { setenv("JOURNAL_STREAM", saved, 1) } else { unsetenv("JOURNAL_STREAM") } }
        setenv("JOURNAL_STREAM", try Self.journalStream(of: STDERR_FILENO), 1)
        #expect(DaemonLogHandler.standardError(label: "nftpool", format: .text).journal)
        setenv("JOURNAL_STREAM", stream, 1)  // a stream, but not the one standard error is
        #expect(!DaemonLogHandler.standardError(label: "nftpool", format: .text).journal)
        unsetenv("JOURNAL_STREAM")
        #expect(!DaemonLogHandler.standardError(label: "nftpool", format: .text).journal)
    }
}
