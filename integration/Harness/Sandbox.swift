import Foundation
import Synchronization
import TestSupport

/// A topology of network namespaces for real traffic through nftpool, made for one test and torn down
/// after it (servers killed, namespaces deleted), also when the test fails. Addresses exist only inside
/// its namespaces; the host's own ruleset and interfaces are never touched.
///
///     client ──veth── lb ──bridge── backend 0, backend 1, ...
///     10.10.0.2/16    10.10.0.1/16 (l0), 10.20.0.1/24 (br0)      10.20.0.11, .12, ...
///     fd00:10::2      fd00:10::1, fd00:20::1                      fd00:20::11, ::12, ...
///
/// The VIPs (10.99.0.1, fd00:99::1) sit on the LB's loopback: clients route to them via the LB, whose
/// nat prerouting rewrites them, and a process inside the LB reaches them through nat output.
public final class Sandbox {
    public struct Options: Sendable {
        public var backends = 3
        /// Backends route back through the LB (default route via 10.20.0.1). False: they reach only their
        /// own subnet, so replies to a client find their way only when the LB masquerades.
        public var backendsRouteViaLB = true
        /// Extra client source addresses (10.10.1.1 ... ) for source-hash tests.
        public var extraClientAddresses = 0
        /// Serve HTTPS with a throwaway CA (for /readyz checks).
        public var https = false
        public init() {}
    }

    public static let vip4 = "10.99.0.1"
    public static let vip6 = "fd00:99::1"
    public static let lbBackendSide = "10.20.0.1"

    public let tag: String
    public let client: String
    public let lb: String
    public let backends: [String]
    public let dir: URL
    public let options: Options
    private var servers: [Process] = []
    private var background: [Process] = []
    /// Locked: tests run in parallel, and two that read the same count built the same namespaces
    /// ("File exists", then both failed).
    private static let counter = Mutex(0)

    /// This run's next sandbox name prefix (`npi<pid>-<n>`): sweepLeftovers knows it by that.
    static func nextTag() -> String {
        let n = counter.withLock { n in
            n += 1
            return n
        }
        return "npi\(getpid())-\(n)"
    }

    public static func backendName(_ i: Int) -> String { "b\(i)" }
    public static func backendAddress(_ i: Int) -> String { "10.20.0.\(11 + i)" }
    public static func backendAddress6(_ i: Int) -> String { "fd00:20::\(11 + i)" }
    public static func clientSource(_ i: Int) -> String { "10.10.\(1 + i / 250).\(1 + i % 250)" }
    public var clientSources: [String] { (0..<options.extraClientAddresses).map(Self.clientSource) }
    public var caFile: URL { dir.appendingPathComponent("ca.crt") }

    public init(_ label: String, _ options: Options = Options()) throws {
        try ScratchNamespace.requireKernelTools()
        Self.sweepLeftovers()
        let tag = Self.nextTag()
        self.tag = tag
        self.options = options
        client = "\(tag)-client"
        lb = "\(tag)-lb"
        backends = (0..<options.backends).map { "\(tag)-b\($0)" }
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(tag)-\(label)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        do {
            try build()
            try startServers()
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    // MARK: topology

    private func build() throws {
        for ns in [client, lb] + backends { try ip(["netns", "add", ns]) }
        try ip(["link", "add", "c0", "netns", client, "type", "veth", "peer", "name", "l0", "netns", lb])
        var clientCmds = [
            "link set lo up", "link set c0 up",
            "addr add 10.10.0.2/16 dev c0", "addr add fd00:10::2/64 dev c0 nodad",
            "route add default via 10.10.0.1", "route add ::/0 via fd00:10::1",
        ]
        clientCmds += clientSources.map { "addr add \($0)/16 dev c0" }
        try batch(client, clientCmds)
        var lbCmds = [
            "link set lo up", "link set l0 up", "link add br0 type bridge", "link set br0 up",
            "addr add 10.10.0.1/16 dev l0", "addr add fd00:10::1/64 dev l0 nodad",
            "addr add 10.20.0.1/24 dev br0", "addr add fd00:20::1/64 dev br0 nodad",
            "addr add \(Self.vip4)/32 dev lo", "addr add \(Self.vip6)/128 dev lo",
        ]
        for (i, ns) in backends.enumerated() {
            try ip(["link", "add", "e0", "netns", ns, "type", "veth", "peer", "name", "vb\(i)", "netns", lb])
            lbCmds += ["link set vb\(i) master br0", "link set vb\(i) up"]
            var cmds = [
                "link set lo up", "link set e0 up",
                "addr add \(Self.backendAddress(i))/24 dev e0", "addr add \(Self.backendAddress6(i))/64 dev e0 nodad",
            ]
            if options.backendsRouteViaLB {
                cmds += ["route add default via 10.20.0.1", "route add ::/0 via fd00:20::1"]
            }
            try batch(ns, cmds)
        }
        try batch(lb, lbCmds)
        try exec(lb, "sysctl", ["-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                                "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.br0.send_redirects=0"])
    }

    private func startServers() throws {
        var tlsArgs: [String] = []
        if options.https {
            try makeCertificates()
            tlsArgs = ["--cert", dir.appendingPathComponent("server.crt").path,
                       "--key", dir.appendingPathComponent("server.key").path]
        }
        self.tlsArgs = tlsArgs
        for i in backends.indices { servers.append(try startServer(i)) }
        try waitReady(Array(backends.indices))
    }

    private var tlsArgs: [String] = []

    private func startServer(_ i: Int) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", backends[i], "python3", Self.scripts.appendingPathComponent("backend.py").path,
                       "--name", Self.backendName(i), "--ready-file", readyFile(i).path,
                       "--not-ready", notReadyFile(i).path] + tlsArgs
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle(forWritingAtPath: "/dev/stderr")
        try p.run()
        return p
    }

    private func waitReady(_ indices: [Int]) throws {
        let deadline = Date().addingTimeInterval(15)
        for i in indices {
            while !FileManager.default.fileExists(atPath: readyFile(i).path) {
                guard Date() < deadline, servers[i].isRunning else {
                    throw KernelTestError("backend server \(Self.backendName(i)) did not start")
                }
                usleep(20_000)
            }
        }
    }

    private func readyFile(_ i: Int) -> URL { dir.appendingPathComponent("b\(i).ready") }
    public func notReadyFile(_ i: Int) -> URL { dir.appendingPathComponent("b\(i).not-ready") }

    /// A CA and one server certificate valid for every backend address and the VIPs.
    private func makeCertificates() throws {
        let sans = (backends.indices.flatMap { ["IP:\(Self.backendAddress($0))", "IP:\(Self.backendAddress6($0))"] }
            + ["IP:\(Self.vip4)", "IP:\(Self.vip6)", "DNS:kubernetes"]).joined(separator: ",")
        let d = dir.path
        let script = """
            set -e
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=sandbox-ca \
              -keyout \(d)/ca.key -out \(d)/ca.crt 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=kube-apiserver \
              -keyout \(d)/server.key -out \(d)/server.csr 2>/dev/null
            printf 'subjectAltName=\(sans)\\n' > \(d)/san.ext
            openssl x509 -req -in \(d)/server.csr -CA \(d)/ca.crt -CAkey \(d)/ca.key -CAcreateserial -days 2 \
              -extfile \(d)/san.ext -out \(d)/server.crt 2>/dev/null
            """
        let r = try Repo.run(URL(fileURLWithPath: "/bin/sh"), ["-c", script])
        guard r.status == 0 else { throw KernelTestError("openssl failed: \(r.err)") }
    }

    // MARK: driving it

    /// `nftpool apply --netns <lb>` of the given spec text; throws with nftpool's message on failure.
    @discardableResult
    public func apply(_ spec: String) throws -> String {
        let file = dir.appendingPathComponent("spec.yaml")
        try spec.write(to: file, atomically: true, encoding: .utf8)
        let r = try Repo.run(Repo.nftpool, ["apply", "--netns", lb, file.path])
        guard r.status == 0 else { throw KernelTestError("nftpool apply exited \(r.status): \(r.err)") }
        return r.out
    }

    /// Runs the traffic client in the client namespace (or `in:` another) and returns its last JSON line.
    public func traffic(_ arguments: [String], in namespace: String? = nil) throws -> [String: Any] {
        let r = try exec(namespace ?? client, "python3", [Self.scripts.appendingPathComponent("client.py").path] + arguments)
        guard r.status == 0, let line = r.out.split(separator: "\n").last,
            let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { throw KernelTestError("client \(arguments) failed (\(r.status)): \(r.err)\(r.out)") }
        return json
    }

    /// Starts the traffic client in the background; `Background.first` reads its first JSON line,
    /// `finish()` waits for its last.
    public func startTraffic(_ arguments: [String]) throws -> Background {
        try startScript("client.py", arguments, in: client)
    }

    /// Runs one of servers/ in the background inside `namespace`, its JSON lines read as startTraffic's.
    public func startScript(_ script: String, _ arguments: [String], in namespace: String) throws -> Background {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", namespace, "python3", Self.scripts.appendingPathComponent(script).path] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: "/dev/stderr")
        try p.run()
        background.append(p)
        return Background(process: p, output: out.fileHandleForReading)
    }

    public final class Background {
        let process: Process
        let output: FileHandle
        private var buffer = Data()

        init(process: Process, output: FileHandle) {
            self.process = process
            self.output = output
        }

        /// The next JSON line the client prints (blocks until it does).
        public func nextLine() throws -> [String: Any] {
            while true {
                if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = buffer[buffer.startIndex..<nl]
                    buffer = Data(buffer[(nl + 1)...])
                    return try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] ?? [:]
                }
                let chunk = output.availableData
                if chunk.isEmpty { throw KernelTestError("background client ended without output") }
                buffer.append(chunk)
            }
        }

        /// Asks the client to stop early (SIGINT); it still prints its summary.
        public func stop() { process.interrupt() }

        public func finish() throws -> [String: Any] {
            let line = try nextLine()
            process.waitUntilExit()
            return line
        }
    }

    /// Stops backend i's servers (the process is killed; its namespace and address stay).
    public func killBackend(_ i: Int) {
        kill(servers[i].processIdentifier, SIGKILL)
        servers[i].waitUntilExit()
    }

    /// Starts backend i's servers again after killBackend.
    public func reviveBackend(_ i: Int) throws {
        try? FileManager.default.removeItem(at: readyFile(i))
        servers[i] = try startServer(i)
        try waitReady([i])
    }

    /// Makes backend i's /readyz answer 503 (true) or 200 (false); it keeps serving everything else.
    public func setNotReady(_ i: Int, _ notReady: Bool) {
        if notReady {
            FileManager.default.createFile(atPath: notReadyFile(i).path, contents: Data())
        } else {
            try? FileManager.default.removeItem(at: notReadyFile(i))
        }
    }

    // MARK: the daemon

    public var daemonLog: URL { dir.appendingPathComponent("daemon.log") }
    public var statusFile: URL { dir.appendingPathComponent("status.json") }
    public var specFile: URL { dir.appendingPathComponent("spec.yaml") }
    private var daemon: Process?

    /// Starts `nftpool run --netns <lb>` on the spec; its log goes to daemonLog. `fromStdin`: the spec
    /// is given as `-` on standard input (written and closed at once) instead of the spec file.
    /// `environment`: variables added to the daemon's (NOTIFY_SOCKET, say). `journal`: `$JOURNAL_STREAM`
    /// names the log file (its device:inode), as systemd names journald's stream.
    public func startDaemon(_ spec: String, extra: [String] = [], fromStdin: Bool = false, environment: [String: String] = [:], journal: Bool = false) throws {
        try spec.write(to: specFile, atomically: true, encoding: .utf8)
        guard FileManager.default.createFile(atPath: daemonLog.path, contents: nil) else { throw KernelTestError("cannot create \(daemonLog.path)") }
        var environment = environment
        if journal {
            var st = stat()
            guard stat(daemonLog.path, &st) == 0 else { throw KernelTestError("cannot stat \(daemonLog.path)") }
            environment["JOURNAL_STREAM"] = "\(st.st_dev):\(st.st_ino)"
        }
        let p = Process()
        p.executableURL = Repo.nftpool
        p.arguments = ["run", "--netns", lb, "--status-file", statusFile.path] + extra + [fromStdin ? "-" : specFile.path]
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let log = try FileHandle(forWritingTo: daemonLog)
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        let input = Pipe()
        p.standardInput = fromStdin ? input : FileHandle.nullDevice
        // As under systemd or a shell: SIGHUP and SIGTERM deliverable from the first instruction, not
        // blocked as in the test runner's threads (a child inherits its parent thread's mask).
        try Self.withStopSignalsUnblocked { try p.run() }
        if fromStdin {
            input.fileHandleForWriting.write(Data(spec.utf8))
            try input.fileHandleForWriting.close()
        }
        daemon = p
        background.append(p)
    }

    /// Runs `body` with SIGHUP, SIGINT and SIGTERM unblocked on this thread, so that a process it
    /// starts (Foundation's Process spawns from the calling thread) inherits them unblocked.
    public static func withStopSignalsUnblocked<T>(_ body: () throws -> T) rethrows -> T {
        var set = sigset_t(), old = sigset_t()
        sigemptyset(&set)
        for s in [SIGHUP, SIGINT, SIGTERM] { sigaddset(&set, s) }
        pthread_sigmask(SIG_UNBLOCK, &set, &old)
        defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
        return try body()
    }

    /// The running (or last started) daemon's process id.
    public var daemonPID: Int32? { daemon?.processIdentifier }

    /// Whether the last started daemon is still running.
    public var daemonRunning: Bool { daemon?.isRunning ?? false }

    /// Runs `nftpool ARGUMENTS` to its end, killed after `timeout` seconds (then `timedOut`).
    public func nftpool(_ arguments: [String], timeout: Double = 10) throws -> (status: Int32, out: String, err: String, timedOut: Bool) {
        let p = Process()
        p.executableURL = Repo.nftpool
        p.arguments = arguments
        let outURL = dir.appendingPathComponent("nftpool-\(UUID().uuidString).out")
        let errURL = dir.appendingPathComponent("nftpool-\(UUID().uuidString).err")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        p.standardOutput = try FileHandle(forWritingTo: outURL)
        p.standardError = try FileHandle(forWritingTo: errURL)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        background.append(p)
        let end = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < end { usleep(10_000) }
        let timedOut = p.isRunning
        if timedOut {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        let out = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return (Self.shellStatus(p), out, err, timedOut)
    }

    /// A finished process's status as a shell shows it: its exit code, or 128 + the signal that killed
    /// it (Foundation's terminationStatus is the bare signal number then: SIGHUP would read as exit 1).
    public static func shellStatus(_ p: Process) -> Int32 {
        p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
    }

    /// Waits for the daemon to end; its shell status (exit code, or 128 + signal), nil if it still runs
    /// after `timeout`.
    public func waitDaemonExit(timeout: Double = 5) -> Int32? {
        guard let daemon, waitDaemon(timeout: timeout) != nil else { return nil }
        return Self.shellStatus(daemon)
    }

    /// `nft ARGUMENTS` inside the LB namespace.
    @discardableResult
    public func nft(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        try exec(lb, "nft", arguments)
    }

    /// Commits `script` with nft inside the LB namespace (one transaction, as by hand) and times how long
    /// the daemon takes to put its table back (servers/fault.py): `until: "same"` waits for the listing
    /// taken before the change, `"valid"` for a table that sends the VIP to the pool with every slot filled.
    /// Returns fault.py's JSON (`nft_status`, `restored`, `ms`, `start`, `end`, `restored_at`).
    /// Several scripts take turns over `repeat` transactions (a burst; timed from the last).
    public func foreignChange(table: String, _ scripts: String..., repeat count: Int = 1, until: String = "same", timeout: Double = 5) throws -> [String: Any] {
        let r = try exec(lb, "python3", [Self.scripts.appendingPathComponent("fault.py").path, "--table", table]
                         + scripts.flatMap { ["--script", $0] }
                         + ["--repeat", "\(count)", "--until", until, "--timeout", "\(timeout)"])
        guard let line = r.out.split(separator: "\n").last,
            let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { throw KernelTestError("fault.py failed (\(r.status)): \(r.err)\(r.out)") }
        return json
    }

    /// Rewrites the spec file in place (for a SIGHUP reload).
    public func writeSpec(_ spec: String) throws {
        try spec.write(to: specFile, atomically: true, encoding: .utf8)
    }

    public func signalDaemon(_ signal: Int32) {
        if let daemon { kill(daemon.processIdentifier, signal) }
    }

    /// Waits for the daemon to exit; its status, or nil if it is still running after `timeout`.
    public func waitDaemon(timeout: Double = 5) -> Int32? {
        guard let daemon else { return nil }
        let end = Date().addingTimeInterval(timeout)
        while daemon.isRunning && Date() < end { usleep(10_000) }
        return daemon.isRunning ? nil : daemon.terminationStatus
    }

    /// `nftpool status --netns <lb> --output json|text` of the running daemon.
    public func status(json: Bool) throws -> (status: Int32, out: String, err: String) {
        try Repo.run(Repo.nftpool, ["status", "--netns", lb, "--status-file", statusFile.path, "--output", json ? "json" : "text", specFile.path])
    }

    public func daemonLogText() -> String { (try? String(contentsOf: daemonLog, encoding: .utf8)) ?? "" }

    /// The daemon's published health per backend endpoint (`10.20.0.11:80` → `up`).
    public func health() -> [String: String] {
        guard let data = try? Data(contentsOf: statusFile),
            let doc = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let pools = doc["pools"] as? [[String: Any]]
        else { return [:] }
        var out: [String: String] = [:]
        for pool in pools {
            for b in pool["backends"] as? [[String: Any]] ?? [] {
                if let e = b["endpoint"] as? String, let h = b["health"] as? String { out[e] = h }
            }
        }
        return out
    }

    /// Polls until `condition` holds (true) or `timeout` passes (false).
    public func wait(timeout: Double, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    @discardableResult
    public func exec(_ namespace: String, _ command: String, _ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        try NetnsCommands.exec(namespace, command, arguments)
    }

    private func ip(_ arguments: [String]) throws { try NetnsCommands.ip(arguments) }

    private func batch(_ namespace: String, _ commands: [String]) throws { try NetnsCommands.batch(namespace, commands) }

    // MARK: teardown

    /// Kills every process left in the sandbox's namespaces, deletes them and the scratch directory.
    /// Safe to call twice.
    public func close() {
        // SIGKILL: a child inherits the test runner's blocked-signal mask, so SIGTERM may never arrive.
        for p in servers + background where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        servers = []
        background = []
        for ns in [client, lb] + backends { Self.deleteNamespace(ns) }
        try? FileManager.default.removeItem(at: dir)
    }

    static func deleteNamespace(_ ns: String) {
        let ip = URL(fileURLWithPath: "/usr/sbin/ip")
        if let pids = try? Repo.run(ip, ["netns", "pids", ns]).out {
            for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
        }
        _ = try? Repo.run(ip, ["netns", "del", ns])
    }

    /// Namespaces of an earlier run that died before it could clean up (its pid no longer exists).
    static func sweepLeftovers() {
        guard let list = try? Repo.run(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "list"]).out else { return }
        for line in list.split(separator: "\n") {
            let name = String(line.split(separator: " ")[0])
            guard name.hasPrefix("npi"), let pid = Int32(name.dropFirst(3).prefix { $0.isNumber }),
                pid != getpid(), kill(pid, 0) != 0
            else { continue }
            deleteNamespace(name)
        }
    }

    public static let scripts = Repo.root.appendingPathComponent("integration/servers")
}
