/// Durations as the spec writes them: `500ms`, `2s`, `1m`, `1h`, or sums such as `1m30s`.
public enum DurationText {
    private static let units: [(suffix: String, milliseconds: Int64)] = [
        ("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000),
    ]

    /// Longest suffix first, so that "ms" is not read as "m".
    private static let unitsByLength = units.sorted { $0.suffix.count > $1.suffix.count }

    /// nil for text that is not a duration. A sum too large for Int64 milliseconds (`999999999h` written
    /// many times) is Int64.max milliseconds, which every range check refuses: plain `+` trapped on it.
    public static func parse(_ text: String) -> Duration? {
        var rest = Substring(text)
        var total: Int64 = 0
        var overflowed = false
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count <= 9, let value = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            guard let unit = unitsByLength.first(where: { rest.hasPrefix($0.suffix) }) else { return nil }
            rest = rest.dropFirst(unit.suffix.count)
            let (term, o1) = value.multipliedReportingOverflow(by: unit.milliseconds)
            let (sum, o2) = total.addingReportingOverflow(term)
            if o1 || o2 { overflowed = true } else { total = sum }
        }
        return .milliseconds(overflowed ? .max : total)
    }

    /// The shortest spelling that parses back to the same value (`1500ms`, `2s`, `1m`).
    public static func format(_ d: Duration) -> String {
        let ms = d.milliseconds
        for (suffix, size) in units.reversed() where ms != 0 && ms % size == 0 {
            return "\(ms / size)\(suffix)"
        }
        return "\(ms)ms"
    }
}

extension Duration {
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}
