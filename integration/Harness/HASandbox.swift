import Foundation
import TestSupport

/// Two LB nodes made highly available by `nftpool ha-config`'s keepalived and conntrackd, for one test,
/// torn down after it (every process of its namespaces killed, namespaces and files deleted), also when
/// the test fails. Addresses exist only inside its namespaces.
///
///     client (eth0 10.50.0.100/24)
///        │
///     switch namespace: bridge br0 ── lb-a eth0 10.50.0.2/24, lb-b eth0 10.50.0.3/24 (VIP 10.50.0.10 floats)
///                       bridge br1 ── lb-a eth1 10.60.0.2/24, lb-b eth1 10.60.0.3/24 (SNAT 10.60.0.100 floats)
///                                 └─ backends b0, b1, b2: 10.60.0.11..13/24, echo on :6443
///     lb-a eth2 10.70.0.1/24 ──veth── lb-b eth2 10.70.0.2/24 (conntrackd FTFW)
///
/// Each node runs `nftpool run --netns NODE` (table loaded on both), `conntrackd -C` and `keepalived -n -l
/// -D -f ... -p -r -c` (as `nftpool ha-config` prints them) inside its namespace; every pid, lock, socket,
/// fifo and track file lives in the sandbox's own runtime directory.
public final class HASandbox {
    public struct Options: Sendable {
        /// Start conntrackd on the nodes (false: the no-sync baseline).
        public var conntrackd = true
        /// What balances on each node: nftpool (its table), or the baseline HAProxy (tcp mode, binding the
        /// VIP) under the same keepalived settings without nftpool's track file and check, and without
        /// conntrackd (a proxy's sockets cannot move).
        public var engine = Engine.nftpool
        public enum Engine: Sendable { case nftpool, haproxy }
        public var scheduler = "round-robin"
        public init() {}
    }

    public struct Node: Sendable {
        public let name: String
        public let namespace: String
        public let address: String
        public let backendAddress: String
        public let syncAddress: String
        public let priority: Int
    }

    public static let table = "hatest"
    public static let vip = "10.50.0.10"
    public static let port = 6443
    public static let snatAddress = "10.60.0.100"
    public static let clientAddress = "10.50.0.100"
    public static func backendAddress(_ i: Int) -> String { "10.60.0.\(11 + i)" }

    public let tag: String
    public let client: String
    public let switchNS: String
    public let nodes: [Node]
    public let backends: [String]
    public let dir: URL
    public let runDir: String
    public let options: Options
    private var servers: [Process] = []
    /// Per node: the engines started since its last (re)start.
    private var engines: [[Process]] = [[], []]
    private var clients: [Process] = []
    private var starts = [0, 0]
    /// Per node: each engine's current log file.
    private var logFiles: [[String: URL]] = [[:], [:]]
    private var logCount = 0
    /// Stand-in mode only (the daemon does not read the notify fifo itself): the harness holds each fifo
    /// open so keepalived's writes never block, and collects the role lines.
    private var fifos: [Int32] = [-1, -1]
    public private(set) var roleLines: [String] = ["", ""]

    public init(_ label: String, _ options: Options = Options()) throws {
        try ScratchNamespace.requireKernelTools()
        for tool in ["/usr/sbin/keepalived", "/usr/sbin/conntrackd"] + (options.engine == .haproxy ? ["/usr/sbin/haproxy"] : [])
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw KernelTestError("the HA tests need \(tool) (apt-get install keepalived conntrackd haproxy)")
        }
        Sandbox.sweepLeftovers()
        let tag = Sandbox.nextTag()
        self.tag = tag
        self.options = options
        client = "\(tag)-client"
        switchNS = "\(tag)-sw"
        nodes = [
            Node(name: "lb-a", namespace: "\(tag)-lb-a", address: "10.50.0.2", backendAddress: "10.60.0.2", syncAddress: "10.70.0.1", priority: 150),
            Node(name: "lb-b", namespace: "\(tag)-lb-b", address: "10.50.0.3", backendAddress: "10.60.0.3", syncAddress: "10.70.0.2", priority: 100),
        ]
        backends = (0..<3).map { "\(tag)-b\($0)" }
        // Short: conntrackd's socket path must fit in 107 bytes.
        dir = URL(fileURLWithPath: "/tmp").appendingPathComponent("\(tag)-\(label)")
        runDir = dir.appendingPathComponent("run").path
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        do {
            try build()
            try startBackends()
            try writeSpecAndConfigs()
            for i in nodes.indices { try startNode(i) }
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    public var allNamespaces: [String] { [client, switchNS] + nodes.map(\.namespace) + backends }

    // MARK: topology

    private func build() throws {
        for ns in allNamespaces { try ip(["netns", "add", ns]) }
        let sw = switchNS
        var swCmds = [
            "link set lo up",
            "link add br0 type bridge stp_state 0 forward_delay 0", "link set br0 up",
            "link add br1 type bridge stp_state 0 forward_delay 0", "link set br1 up",
        ]
        try ip(["link", "add", "eth0", "netns", client, "type", "veth", "peer", "name", "cl", "netns", sw])
        swCmds += ["link set cl master br0", "link set cl up"]
        try batch(client, ["link set lo up", "link set eth0 up", "addr add \(Self.clientAddress)/24 dev eth0"])
        for (i, node) in nodes.enumerated() {
            let ns = node.namespace
            try ip(["link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "n\(i)c", "netns", sw])
            try ip(["link", "add", "eth1", "netns", ns, "type", "veth", "peer", "name", "n\(i)b", "netns", sw])
            swCmds += ["link set n\(i)c master br0", "link set n\(i)c up", "link set n\(i)b master br1", "link set n\(i)b up"]
        }
        try ip(["link", "add", "eth2", "netns", nodes[0].namespace, "type", "veth", "peer", "name", "eth2", "netns", nodes[1].namespace])
        for (i, ns) in backends.enumerated() {
            try ip(["link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "b\(i)", "netns", sw])
            swCmds += ["link set b\(i) master br1", "link set b\(i) up"]
            try batch(ns, [
                "link set lo up", "link set eth0 up", "addr add \(Self.backendAddress(i))/24 dev eth0",
                // Replies to the floating SNAT address's network go out on the LB side (it is on-link
                // here; the default route via it covers anything else).
                "route add default via \(Self.snatAddress)",
            ])
        }
        try batch(sw, swCmds)
        for node in nodes {
            try batch(node.namespace, [
                "link set lo up",
                "addr add \(node.address)/24 dev eth0", "addr add \(node.backendAddress)/24 dev eth1",
                "addr add \(node.syncAddress)/24 dev eth2",
                "link set eth0 up", "link set eth1 up", "link set eth2 up",
            ])
            try sysctls(node.namespace)
        }
    }

    /// Inside a node's namespace only (the host's sysctls are never touched): forwarding; ARP answered
    /// only for addresses of the interface asked on, announced from the interface's own addresses (the
    /// floating addresses must not leak to the other side's segment); loose TCP pickup left on, as in the
    /// measurements (HA-NOTES; with direct injection the synced entry is already there at takeover); TCP
    /// window tracking liberal, because conntrackd does not carry sequence windows: after a split brain the
    /// loser's entries had stale windows, every packet of its 50 held connections was INVALID once it took
    /// the VIPs back, and the takeover guard dropped them (0 of 50 kept in 5 of 5 trials).
    private func sysctls(_ ns: String) throws {
        let r = try exec(ns, "sysctl", ["-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                                         "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
                                         "net.netfilter.nf_conntrack_tcp_loose=1", "net.netfilter.nf_conntrack_tcp_be_liberal=1"])
        guard r.status == 0 else { throw KernelTestError("sysctl in \(ns): \(r.err)") }
    }

    private func startBackends() throws {
        for (i, ns) in backends.enumerated() {
            let ready = dir.appendingPathComponent("b\(i).ready")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            p.arguments = ["netns", "exec", ns, "python3", Sandbox.scripts.appendingPathComponent("backend.py").path,
                           "--name", "b\(i)", "--ready-file", ready.path, "--echo-port", "\(Self.port)"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle(forWritingAtPath: "/dev/stderr")
            try p.run()
            servers.append(p)
        }
        let deadline = Date().addingTimeInterval(15)
        for i in backends.indices {
            while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("b\(i).ready").path) {
                guard Date() < deadline, servers[i].isRunning else { throw KernelTestError("backend b\(i) did not start") }
                usleep(20_000)
            }
        }
    }

    // MARK: spec and generated configs

    public var specFile: URL { dir.appendingPathComponent("spec.yaml") }
    public func configDir(_ i: Int) -> String { dir.appendingPathComponent(nodes[i].name).path }

    /// rulesets/ha-pair.yaml moved into the sandbox: one pool on the VIP, SNAT to the floating address
    /// (ha validation requires none or snatAddress), tcp probes to the echo port.
    public func spec() -> String {
        var s = """
            table: \(Self.table)
            pools:
              - name: api
                frontends:
                  - address: \(Self.vip)
                    port: \(Self.port)
                scheduler: \(options.scheduler)
                snat: \(Self.snatAddress)
                healthCheck:
                  type: tcp
                  interval: 1s
                  fastInterval: 200ms
                  timeout: 200ms
                  rise: 2
                  fall: 2
                backends:

            """
        for i in backends.indices { s += "      - address: \(Self.backendAddress(i))\n" }
        s += """
            ha:
              interface: eth0
              backendInterface: eth1
              snatAddress: \(Self.snatAddress)
              routerId: 51
              advertInterval: 200ms
              sync: {interface: eth2}
              nodes:

            """
        for n in nodes {
            s += "    - {name: \(n.name), address: \(n.address), syncAddress: \(n.syncAddress), priority: \(n.priority)}\n"
        }
        return s
    }

    /// `nftpool ha-config` for each node; keeps the command lines it prints, and checks they are the ones
    /// this harness runs.
    public private(set) var printedCommands: [String] = ["", ""]

    private func writeSpecAndConfigs() throws {
        try spec().write(to: specFile, atomically: true, encoding: .utf8)
        for i in nodes.indices {
            let r = try Repo.run(Repo.nftpool, ["ha-config", specFile.path, "--node", nodes[i].name, "--dir", configDir(i), "--runtime-dir", runDir])
            guard r.status == 0 else { throw KernelTestError("nftpool ha-config --node \(nodes[i].name) exited \(r.status): \(r.err)") }
            printedCommands[i] = r.out
            for line in [keepalivedArguments(i), conntrackdArguments(i)].map({ $0.joined(separator: " ") }) where !r.out.contains(line) {
                throw KernelTestError("ha-config did not print the command line the harness runs (\(line)):\n\(r.out)")
            }
        }
    }

    func keepalivedArguments(_ i: Int) -> [String] {
        let t = Self.table, n = nodes[i].name
        return ["keepalived", "-n", "-l", "-D", "-f", "\(configDir(i))/keepalived.conf",
                "-p", "\(runDir)/keepalived.\(t).\(n).pid", "-r", "\(runDir)/keepalived-vrrp.\(t).\(n).pid",
                "-c", "\(runDir)/keepalived-checker.\(t).\(n).pid"]
    }

    func conntrackdArguments(_ i: Int) -> [String] { ["conntrackd", "-C", "\(configDir(i))/conntrackd.conf"] }

    public func trackFile(_ i: Int) -> String { "\(runDir)/\(Self.table).\(nodes[i].name).track" }
    public func pidFile(_ i: Int) -> String { "\(runDir)/\(Self.table).\(nodes[i].name).pid" }
    public func notifyFifo(_ i: Int) -> String { "\(runDir)/\(Self.table).\(nodes[i].name).notify" }
    public func statusFile(_ i: Int) -> String { dir.appendingPathComponent("\(nodes[i].name).status.json").path }
    /// Node i's current log of `engine` (each start of an engine writes a new one).
    public func log(_ i: Int, _ engine: String) -> URL {
        logFiles[i][engine] ?? dir.appendingPathComponent("\(nodes[i].name).\(engine).none.log")
    }

    private func newLog(_ i: Int, _ engine: String) -> URL {
        logCount += 1
        let url = dir.appendingPathComponent("\(nodes[i].name).\(engine).\(logCount).log")
        logFiles[i][engine] = url
        return url
    }

    // MARK: the engines

    /// Whether the built `nftpool run` takes `--node` and `--runtime-dir` (the daemon's HA step), in which
    /// case it writes the pid and track files and reads the notify fifo itself.
    public static let daemonSpeaksHA: Bool = {
        guard let r = try? Repo.run(Repo.nftpool, ["run", "--help"]) else { return false }
        return (r.out + r.err).contains("--node") && (r.out + r.err).contains("--runtime-dir")
    }()

    /// Starts node i's engines in the order a node boots: nftpool (table loaded), its readiness reported
    /// to keepalived, conntrackd (unless the baseline leaves it out), keepalived.
    public func startNode(_ i: Int) throws {
        starts[i] += 1
        if options.engine == .haproxy { return try startHAProxyNode(i) }
        var args = ["run", "--netns", nodes[i].namespace, "--status-file", statusFile(i)]
        if Self.daemonSpeaksHA { args += ["--node", nodes[i].name, "--runtime-dir", runDir] }
        let daemon = try spawn(Repo.nftpool, args + [specFile.path], log: newLog(i, "nftpool"))
        engines[i].append(daemon)
        daemons[i] = daemon
        try reportDaemonReady(i, daemon: daemon)
        if options.conntrackd {
            let a = conntrackdArguments(i)
            engines[i].append(try spawn(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "exec", nodes[i].namespace] + a, log: newLog(i, "conntrackd")))
        }
        try startKeepalived(i)
    }

    /// The HAProxy baseline's node: haproxy in the foreground (binding the VIP before holding it needs
    /// ip_nonlocal_bind), then keepalived with ha-config's file stripped of what only nftpool answers.
    /// HAProxy connects from the node's own backend-side address: a proxy's connections cannot move, so
    /// a floating source buys nothing, and with one the backup's health checks fail (measured: servers
    /// down on the backup, a 1.7-1.9 s blackout at takeover while they rise again).
    private func startHAProxyNode(_ i: Int) throws {
        let ns = nodes[i].namespace
        let r = try exec(ns, "sysctl", ["-qw", "net.ipv4.ip_nonlocal_bind=1"])
        guard r.status == 0 else { throw KernelTestError("sysctl in \(ns): \(r.err)") }
        var cfg = """
            global
                maxconn 4000
            defaults
                mode tcp
                timeout connect 1s
                timeout client 60s
                timeout server 60s
            frontend api
                bind \(Self.vip):\(Self.port)
                default_backend api
            backend api
                balance roundrobin

            """
        for b in backends.indices { cfg += "    server b\(b) \(Self.backendAddress(b)):\(Self.port) check inter 1s fall 2 rise 2\n" }
        let cfgPath = "\(configDir(i))/haproxy.cfg"
        try cfg.write(toFile: cfgPath, atomically: true, encoding: .utf8)
        let haproxy = try spawn(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "exec", ns, "haproxy", "-db", "-f", cfgPath], log: newLog(i, "haproxy"))
        engines[i].append(haproxy)
        try startKeepalived(i)
    }

    /// ha-config's keepalived.conf without the track file, the nftpool check, the notify script and fifo.
    private func haproxyKeepalivedConf(_ i: Int) throws -> String {
        var conf = try String(contentsOfFile: "\(configDir(i))/keepalived.conf", encoding: .utf8)
        for block in [#"\n    track_file \{[^}]*\}"#, #"\n    track_script \{[^}]*\}"#, #"\n    notify "[^"\n]*""#, #"\n    notify_fifo [^\n]*"#] {
            conf = conf.replacingOccurrences(of: block, with: "", options: .regularExpression)
        }
        let confPath = "\(configDir(i))/keepalived-haproxy.conf"
        try conf.write(toFile: confPath, atomically: true, encoding: .utf8)
        return confPath
    }

    private func startKeepalived(_ i: Int) throws {
        var a = keepalivedArguments(i)
        if options.engine == .haproxy {
            let conf = try haproxyKeepalivedConf(i)
            a = a.map { $0.hasSuffix("/keepalived.conf") ? conf : $0 }
        }
        let p = try spawn(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "exec", nodes[i].namespace] + a, log: newLog(i, "keepalived"))
        keepalived[i] = p
        engines[i].append(p)
    }

    private var keepalived: [Process?] = [nil, nil]
    /// Per node: its current `nftpool run`.
    private var daemons: [Process?] = [nil, nil]

    /// The one place that bridges the daemon's HA step: once it lands (`daemonSpeaksHA`), the daemon
    /// writes the pid file and `0` to the track file itself and this only waits for that; until then
    /// the harness stands in: it waits for the table to be loaded and every backend up, then writes the
    /// daemon's pid and `0` (atomically), and holds the notify fifo open.
    func reportDaemonReady(_ i: Int, daemon: Process) throws {
        let deadline = Date().addingTimeInterval(10)
        func check() throws {
            guard daemon.isRunning else { throw KernelTestError("nftpool run on \(nodes[i].name) exited: \(logText(i, "nftpool"))") }
            guard Date() < deadline else { throw KernelTestError("nftpool run on \(nodes[i].name) not ready in 10 s: \(logText(i, "nftpool"))") }
            usleep(20_000)
        }
        if Self.daemonSpeaksHA {
            while (try? String(contentsOfFile: trackFile(i), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) != "0" { try check() }
            return
        }
        while health(i).count < backends.count || health(i).values.contains(where: { $0 != "up" }) { try check() }
        while (try? exec(nodes[i].namespace, "nft", ["list", "table", "inet", Self.table]))?.status != 0 { try check() }
        try writeAtomically("\(daemon.processIdentifier)\n", to: pidFile(i))
        try writeAtomically("0\n", to: trackFile(i))
        if fifos[i] < 0 {
            if !FileManager.default.fileExists(atPath: notifyFifo(i)) { mkfifo(notifyFifo(i), 0o600) }
            fifos[i] = open(notifyFifo(i), O_RDWR | O_NONBLOCK | O_CLOEXEC)  // RDWR: never blocks
        }
    }

    private func writeAtomically(_ text: String, to path: String) throws {
        try text.write(toFile: path + ".tmp", atomically: false, encoding: .utf8)
        guard rename(path + ".tmp", path) == 0 else { throw KernelTestError("rename to \(path): \(String(cString: strerror(errno)))") }
    }

    /// The role lines keepalived wrote to node i's notify fifo so far (stand-in mode only).
    public func roles(_ i: Int) -> String {
        guard fifos[i] >= 0 else { return "" }
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = read(fifos[i], &buffer, buffer.count)
            if n <= 0 { break }
            roleLines[i] += String(decoding: buffer[..<n], as: UTF8.self)
        }
        return roleLines[i]
    }

    /// The role node i's daemon publishes in its status file (`ha.role`: MASTER, BACKUP, FAULT, STOP,
    /// UNKNOWN), learnt from keepalived's notify fifo; nil without one.
    public func publishedRole(_ i: Int) -> String? {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: statusFile(i))),
            let doc = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let ha = doc["ha"] as? [String: Any]
        else { return nil }
        return ha["role"] as? String
    }

    /// Node i's published `ha` section (its status file), as JSON.
    public func publishedHA(_ i: Int) -> [String: Any]? {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: statusFile(i))),
            let doc = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return doc["ha"] as? [String: Any]
    }

    /// Node i's view of its one peer: (role, resynced, sameTable, lost), from its status file.
    public func publishedPeer(_ i: Int) -> (role: String, resynced: Bool, sameTable: Bool, lost: Bool)? {
        guard let peer = (publishedHA(i)?["peers"] as? [[String: Any]])?.first else { return nil }
        return (peer["role"] as? String ?? "", peer["resynced"] as? Bool ?? false, peer["sameTable"] as? Bool ?? false, peer["lost"] as? Bool ?? true)
    }

    /// Kills backend i's echo server (its namespace and address stay): probes see it refuse.
    public func stopBackend(_ i: Int) {
        guard servers[i].isRunning else { return }
        servers[i].terminate()
        servers[i].waitUntilExit()
    }

    /// Rewrites the spec every node reads and sends SIGHUP to every running daemon.
    public func reload(spec text: String) throws {
        try text.write(to: specFile, atomically: true, encoding: .utf8)
        for d in daemons.compactMap({ $0 }) where d.isRunning { kill(d.processIdentifier, SIGHUP) }
    }

    /// Node i's Prometheus text from its daemon's default metrics address, inside its namespace.
    public func scrape(_ i: Int) -> String {
        (try? exec(nodes[i].namespace, "curl", ["-s", "--max-time", "5", "http://127.0.0.1:9742/metrics"]).out) ?? ""
    }

    /// Node i's published health per backend endpoint.
    public func health(_ i: Int) -> [String: String] {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: statusFile(i))),
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

    private func spawn(_ executable: URL, _ arguments: [String], log: URL) throws -> Process {
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        // As under systemd: SIGTERM and friends deliverable (the test runner's threads block them).
        try Sandbox.withStopSignalsUnblocked { try p.run() }
        return p
    }

    public func logText(_ i: Int, _ engine: String) -> String {
        (try? String(contentsOf: log(i, engine), encoding: .utf8)) ?? ""
    }

    /// Every engine log of node i since its last start, for failure messages (tails).
    public func logs(_ i: Int) -> String {
        (options.engine == .haproxy ? ["haproxy", "keepalived"] : ["nftpool", "conntrackd", "keepalived"]).map { e in
            let t = logText(i, e)
            return "--- \(nodes[i].name) \(e) (start \(starts[i])):\n" + String(t.suffix(3000))
        }.joined(separator: "\n")
    }

    // MARK: roles

    /// `ip -n NODE -o addr show dev eth0` holds the VIP.
    public func holdsVIP(_ i: Int) -> Bool {
        let r = try? Repo.run(URL(fileURLWithPath: "/usr/sbin/ip"), ["-n", nodes[i].namespace, "-o", "-4", "addr", "show", "dev", "eth0"])
        return r?.out.contains("inet \(Self.vip)/32") ?? false
    }

    public func holdsSNAT(_ i: Int) -> Bool {
        let r = try? Repo.run(URL(fileURLWithPath: "/usr/sbin/ip"), ["-n", nodes[i].namespace, "-o", "-4", "addr", "show", "dev", "eth1"])
        return r?.out.contains("inet \(Self.snatAddress)/32") ?? false
    }

    /// The node holding the VIP once exactly one does, steadily for `steady` seconds, every running node
    /// has left FAULT (its keepalived logged BACKUP or MASTER since its start), and the master holds the
    /// SNAT address too; nil after `timeout`.
    public func waitForSingleMaster(timeout: Double = 10, steady: Double = 1.0) -> Int? {
        let end = Date().addingTimeInterval(timeout)
        var since: Date?, holder: Int?
        while Date() < end {
            let holders = nodes.indices.filter { holdsVIP($0) }
            let settled = nodes.indices.allSatisfy { i in
                !keepalivedRunning(i) || logText(i, "keepalived").contains("Entering BACKUP STATE")
                    || logText(i, "keepalived").contains("Entering MASTER STATE")
            }
            if holders.count == 1, settled, holdsSNAT(holders[0]) {
                if holder != holders[0] { holder = holders[0]; since = Date() }
                if let since, Date().timeIntervalSince(since) >= steady { return holder }
            } else {
                holder = nil
                since = nil
            }
            usleep(50_000)
        }
        return nil
    }

    /// Waits until every node whose daemon runs has written 0 to its track file (HAGate: ready, nothing
    /// pending, no hold) and the VIP is on one node; true if that happened within `timeout`. The HAProxy
    /// baseline has no daemon: true at once.
    @discardableResult
    public func waitForSettledGate(timeout: Double) -> Bool {
        guard options.engine == .nftpool else { return true }
        return waitUntil(timeout: timeout) {
            nodes.indices.allSatisfy { i in
                !daemonRunning(i) || (try? String(contentsOfFile: trackFile(i), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
            } && nodes.indices.filter { holdsVIP($0) }.count == 1
        } != nil
    }

    /// Polls `condition` every 20 ms for up to `timeout` seconds; the wall-clock time it first held, or nil.
    public func waitUntil(timeout: Double, _ condition: () -> Bool) -> Double? {
        let end = Date().addingTimeInterval(timeout)
        while true {
            if condition() { return Date().timeIntervalSince1970 }
            if Date() >= end { return nil }
            usleep(20_000)
        }
    }

    // MARK: faults

    /// Hard kill of node i: every process in its namespace (nftpool, conntrackd, keepalived's parent and
    /// its VRRP and checker children, any script they run) SIGKILLed, then its links set down, as a
    /// machine that loses power. Returns the wall-clock time just before the first kill.
    @discardableResult
    public func hardKill(_ i: Int) -> Double {
        let ns = nodes[i].namespace
        let pids = namespacePIDs(ns)
        let at = Date().timeIntervalSince1970
        for pid in pids { kill(pid, SIGKILL) }
        for pid in namespacePIDs(ns) { kill(pid, SIGKILL) }  // anything forked meanwhile
        _ = try? batch(ns, ["link set eth0 down", "link set eth1 down", "link set eth2 down"])
        for p in engines[i] { p.waitUntilExit() }
        return at
    }

    /// Planned switchover: SIGTERM to keepalived's parent on node i (as `systemctl stop keepalived`): it
    /// sends a priority-0 advert and removes the addresses. Returns the wall-clock time of the signal.
    @discardableResult
    public func stopKeepalived(_ i: Int) -> Double {
        let at = Date().timeIntervalSince1970
        if let p = keepalived[i], p.isRunning { kill(p.processIdentifier, SIGTERM) }
        return at
    }

    public func keepalivedRunning(_ i: Int) -> Bool { keepalived[i]?.isRunning ?? false }

    /// Waits (up to `timeout`) for node i's keepalived to exit after stopKeepalived; true if it did.
    public func waitKeepalivedExit(_ i: Int, timeout: Double = 5) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while keepalivedRunning(i) && Date() < end { usleep(20_000) }
        return !keepalivedRunning(i)
    }

    /// Starts node i's keepalived again after stopKeepalived (the rest of the node kept running).
    public func restartKeepalived(_ i: Int) throws {
        guard waitKeepalivedExit(i) else { throw KernelTestError("keepalived on \(nodes[i].name) did not stop") }
        try startKeepalived(i)
    }

    /// nftpool crash on node i: SIGKILL to its `nftpool run` only (keepalived and conntrackd keep running;
    /// the kernel table stays loaded). Returns the wall-clock time just before the kill.
    @discardableResult
    public func killDaemon(_ i: Int) -> Double {
        let at = Date().timeIntervalSince1970
        if let p = daemons[i], p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        return at
    }

    public func daemonRunning(_ i: Int) -> Bool { daemons[i]?.isRunning ?? false }

    /// Per node: the processes `freeze` stopped.
    private var frozen: [[Int32]] = [[], []]

    /// Hung node i: SIGSTOP to every process in its namespace (nftpool, conntrackd, keepalived's parent and
    /// its VRRP and checker children, any script they run); links and kernel state untouched. Returns the
    /// wall-clock time just before the first signal.
    @discardableResult
    public func freeze(_ i: Int) -> Double {
        let ns = nodes[i].namespace
        let at = Date().timeIntervalSince1970
        var stopped = Set<Int32>()
        for _ in 0..<2 {  // the second pass catches anything forked meanwhile
            for pid in namespacePIDs(ns) where !stopped.contains(pid) {
                kill(pid, SIGSTOP)
                stopped.insert(pid)
            }
        }
        frozen[i] = Array(stopped)
        return at
    }

    /// SIGCONT to every process `freeze` stopped on node i. Returns the wall-clock time of the first signal.
    @discardableResult
    public func thaw(_ i: Int) -> Double {
        let at = Date().timeIntervalSince1970
        for pid in frozen[i] { kill(pid, SIGCONT) }
        frozen[i] = []
        return at
    }

    /// A partition between the two LB nodes while both still reach the client and the backends: each
    /// node's namespace drops the other's VRRP adverts (a table of the harness's own, `hapartition`, not
    /// nftpool's), and the sync link goes down (conntrackd and the daemons' beats stop). Returns the
    /// wall-clock time just before the cut.
    @discardableResult
    public func partition() -> Double {
        let at = Date().timeIntervalSince1970
        for (i, node) in nodes.enumerated() {
            let other = nodes[1 - i].address
            _ = try? exec(node.namespace, "nft", ["add table ip hapartition; add chain ip hapartition in { type filter hook prerouting priority -300; policy accept; }; add rule ip hapartition in ip saddr \(other) drop"])
        }
        _ = try? batch(nodes[0].namespace, ["link set eth2 down"])
        return at
    }

    /// Ends `partition`. Returns the wall-clock time just before the links come back.
    @discardableResult
    public func heal() -> Double {
        let at = Date().timeIntervalSince1970
        for node in nodes { _ = try? exec(node.namespace, "nft", ["delete table ip hapartition"]) }
        _ = try? batch(nodes[0].namespace, ["link set eth2 up"])
        return at
    }

    /// Removes node i's floating addresses (what a hard-killed node still has configured; a rebooted one
    /// comes back without them).
    public func dropFloatingAddresses(_ i: Int) {
        let ns = nodes[i].namespace
        _ = try? batch(ns, ["addr del \(Self.vip)/32 dev eth0"])
        _ = try? batch(ns, ["addr del \(Self.snatAddress)/32 dev eth1"])
    }

    /// Brings a hard-killed (or otherwise failed) node back as a rebooted one would come: whatever still
    /// runs there killed, its stale floating addresses removed (HA-NOTES: otherwise it answers ARP for the
    /// VIP alongside the master), the runtime files a reboot clears removed (conntrackd refuses to start
    /// over its stale lock file, keepalived over a pid file whose process is not reaped yet), links up,
    /// engines started again.
    public func restore(_ i: Int) throws {
        let ns = nodes[i].namespace
        for pid in namespacePIDs(ns) { kill(pid, SIGKILL) }
        for p in engines[i] { p.waitUntilExit() }
        engines[i] = []
        dropFloatingAddresses(i)
        let n = nodes[i].name, t = Self.table
        // keepalived's pid files too: right after the SIGKILL its VRRP child may not be reaped yet, and a
        // new keepalived that finds the pid still there exits with "daemon is already running".
        for f in [trackFile(i), pidFile(i), "\(runDir)/conntrackd.\(t).\(n).lock", "\(runDir)/conntrackd.\(t).\(n).ctl",
                  "\(runDir)/keepalived.\(t).\(n).pid", "\(runDir)/keepalived-vrrp.\(t).\(n).pid",
                  "\(runDir)/keepalived-checker.\(t).\(n).pid"] {
            try? FileManager.default.removeItem(atPath: f)
        }
        try batch(ns, ["link set eth0 up", "link set eth1 up", "link set eth2 up"])
        try startNode(i)
    }

    public func namespacePIDs(_ ns: String) -> [Int32] {
        let out = (try? Repo.run(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "pids", ns]).out) ?? ""
        return out.split(separator: "\n").compactMap { Int32($0) }
    }

    // MARK: traffic

    /// Starts integration/servers/haclient.py in the client namespace against the VIP; `nextLine()` gives
    /// its `ready` line, `finish()` its summary.
    public func startClient(_ arguments: [String]) throws -> Sandbox.Background {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", client, "python3", Sandbox.scripts.appendingPathComponent("haclient.py").path,
                       "--target", Self.vip, "--port", "\(Self.port)"] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: "/dev/stderr")
        try Sandbox.withStopSignalsUnblocked { try p.run() }
        clients.append(p)
        return Sandbox.Background(process: p, output: out.fileHandleForReading)
    }

    // MARK: plumbing

    @discardableResult
    public func exec(_ namespace: String, _ command: String, _ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        try NetnsCommands.exec(namespace, command, arguments)
    }

    private func ip(_ arguments: [String]) throws { try NetnsCommands.ip(arguments) }

    private func batch(_ namespace: String, _ commands: [String]) throws { try NetnsCommands.batch(namespace, commands) }

    // MARK: teardown

    /// Kills every process of the sandbox (engines, servers, clients, and anything else left in its
    /// namespaces), deletes the namespaces and the scratch directory. Safe to call twice.
    public func close() {
        for i in frozen.indices { thaw(i) }
        for p in clients + servers + engines.flatMap({ $0 }) where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        clients = []
        servers = []
        engines = [[], []]
        for fd in fifos where fd >= 0 { Foundation.close(fd) }
        fifos = [-1, -1]
        for ns in allNamespaces { Sandbox.deleteNamespace(ns) }
        try? FileManager.default.removeItem(at: dir)
    }
}
