import Foundation
import Logging
import NIOConcurrencyHelpers

/// `nftpool run`'s log lines on standard error, one per event, in one of two formats:
///
/// - `text` (the default): `2025-06-01T12:00:00+0000 notice nftpool: [Daemon] pool web backend …`, local
///   time, as swift-log's StreamLogHandler wrote them. When standard error is the journal (below), each
///   line starts with its syslog priority instead of a time (`<5>notice nftpool: [Daemon] …`): journald
///   keeps the priority and adds its own time.
/// - `json`: one object per line, `ts` (RFC 3339, UTC, milliseconds), `level`, `msg`, then the metadata
///   as fields (a health transition carries pool, backend, from, to, reason and duration in seconds).
///   Whatever the message holds (quotes, newlines, control characters), the line is one JSON object
///   on one line, written by JSONEncoder. Never prefixed.
///
/// Metadata appears in json only: the text message already says what it holds.
public struct DaemonLogHandler: LogHandler {
    public enum Format: String, Sendable, CaseIterable {
        case text, json
    }

    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public let label: String
    public let format: Format
    /// Standard error is journald's stream: text lines carry `<N>` priorities and no time.
    public let journal: Bool
    let clock: @Sendable () -> Date
    let write: @Sendable (String) -> Void

    public init(
        label: String, format: Format, journal: Bool,
        clock: @escaping @Sendable () -> Date = { Date() },
        write: @escaping @Sendable (String) -> Void
    ) {
        self.label = label
        self.format = format
        self.journal = journal
        self.clock = clock
        self.write = write
    }

    /// Writing to standard error, journal or not as `$JOURNAL_STREAM` says.
    public static func standardError(label: String, format: Format) -> DaemonLogHandler {
        DaemonLogHandler(
            label: label, format: format,
            journal: isJournal(STDERR_FILENO, journalStream: ProcessInfo.processInfo.environment["JOURNAL_STREAM"]),
            write: writeStandardError)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        switch format {
        case .text: write(textLine(event))
        case .json: write(jsonLine(event))
        }
    }

    func textLine(_ event: LogEvent) -> String {
        let rest = "\(event.level)\(label.isEmpty ? "" : " ")\(label): [\(event.source)] \(event.message)"
        guard journal else { return "\(Self.localTimestamp(clock())) \(rest)\n" }
        // journald makes one entry per line: every line of a multi-line message keeps the priority.
        let prefix = "<\(Self.priority(event.level))>"
        return prefix + rest.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n" + prefix) + "\n"
    }

    func jsonLine(_ event: LogEvent) -> String {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let explicit = event.metadata { fields.merge(explicit) { $1 } }
        if let error = event.error { fields["error"] = "\(error)" }
        let head: [(String, Logger.Metadata.Value)] = [
            ("ts", .string(Self.utcTimestamp(clock()))), ("level", .string(event.level.rawValue)), ("msg", .string("\(event.message)")),
        ]
        let rest = fields.sorted { $0.key < $1.key }.filter { key, _ in !head.contains { $0.0 == key } }
        return Self.jsonObject(head + rest) + "\n"
    }

    /// `{"ts":…,"level":…,"msg":…,"pool":…}` in this order (JSONEncoder keeps no order but a sorted one,
    /// which would put `ts` last): every key and every value is written by JSONEncoder, so quotes,
    /// backslashes and control characters are escaped and the object stays on one line; only the braces,
    /// colons and commas between them are ours.
    static func jsonObject(_ fields: [(String, Logger.Metadata.Value)]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]  // sorted: within a nested object
        func json(_ value: some Encodable) -> String? { (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } }
        var members: [String] = []
        for (key, value) in fields {
            // A value JSON cannot hold (none is made today) goes out as its text.
            guard let k = json(key), let v = json(JSONValue(value)) ?? json(value.description) else { continue }
            members.append(k + ":" + v)
        }
        return "{" + members.joined(separator: ",") + "}"
    }

    /// syslog(3) priorities, as sd-daemon(3)'s `<N>` prefixes.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// systemd sets `$JOURNAL_STREAM` to `DEVICE:INODE` of the stream it connected to standard output and
    /// error; it is the journal only while `fd` is still that stream (sd-daemon(3), systemd.exec(5)).
    public static func isJournal(_ fd: Int32, journalStream: String?) -> Bool {
        guard let journalStream else { return false }
        let parts = journalStream.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return false }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    /// `2025-06-01T12:00:00.123Z`.
    static func utcTimestamp(_ date: Date) -> String {
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(ms >= 0 ? ms / 1000 : (ms - 999) / 1000)
        var t = tm()
        gmtime_r(&seconds, &t)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
            Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday), Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec),
            Int(ms - Int64(seconds) * 1000))
    }

    /// `2025-06-01T14:00:00+0200`, as StreamLogHandler.
    static func localTimestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var t = tm()
        localtime_r(&seconds, &t)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &t)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static let stderrLock = NIOLock()

    /// One write(2) per line, whole, and lines from different threads never interleaved.
    @Sendable static func writeStandardError(_ line: String) {
        let bytes = Array(line.utf8)
        stderrLock.withLock {
            bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = Foundation.write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { return }
                    offset += n
                }
            }
        }
    }

    /// A metadata value as JSON: numbers and booleans as themselves (`duration: 1.5`), the rest as text.
    struct JSONValue: Encodable {
        var value: Logger.Metadata.Value
        init(_ value: Logger.Metadata.Value) { self.value = value }

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ s: String) { stringValue = s }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        func encode(to encoder: any Encoder) throws {
            switch value {
            case .string(let s):
                var c = encoder.singleValueContainer()
                try c.encode(s)
            case .stringConvertible(let v):
                var c = encoder.singleValueContainer()
                switch v {
                case let b as Bool: try c.encode(b)
                case let i as Int: try c.encode(i)
                case let i as Int64: try c.encode(i)
                case let i as UInt64: try c.encode(i)
                case let i as Int32: try c.encode(i)
                case let i as UInt32: try c.encode(i)
                case let d as Double where d.isFinite: try c.encode(d)
                default: try c.encode(v.description)
                }
            case .dictionary(let d):
                var c = encoder.container(keyedBy: Key.self)
                for (key, v) in d { try c.encode(JSONValue(v), forKey: Key(key)) }
            case .array(let a):
                var c = encoder.unkeyedContainer()
                for v in a { try c.encode(JSONValue(v)) }
            }
        }
    }
}
