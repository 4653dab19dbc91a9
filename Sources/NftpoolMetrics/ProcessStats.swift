import Foundation

/// The process's own figures from /proc, read at scrape time: the `process_*` families every
/// Prometheus client library exports, under the same names, so existing dashboards work.
struct ProcessStats: Equatable {
    var cpuSeconds: Double
    var residentBytes: Double
    var virtualBytes: Double
    /// nil where /proc/stat is hidden (systemd's ProcSubset=pid, as in deploy/systemd).
    var startTime: Double?
    var openFDs: Double
    var maxFDs: Double

    /// nil when /proc cannot be read (not Linux, or no procfs mounted).
    static func read() -> ProcessStats? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state): utime is field 14, stime 15, starttime 22, vsize 23, rss 24.
        guard fields.count > 21, let utime = Double(fields[11]), let stime = Double(fields[12]),
            let start = Double(fields[19]), let vsize = Double(fields[20]), let rss = Double(fields[21])
        else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return ProcessStats(
            cpuSeconds: (utime + stime) / ticks, residentBytes: rss * page, virtualBytes: vsize,
            startTime: bootTime().map { $0 + start / ticks }, openFDs: Double(max(0, fds - 1)),  // less the directory's own
            maxFDs: Double(limit.rlim_cur))
    }

    private static func bootTime() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
