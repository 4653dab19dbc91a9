import PoolSpec

/// A spec's `ha` section and one node's name ─► keepalived.conf, conntrackd.conf and the notify script
/// keepalived runs, as text. Pure: no file, no clock, no process; `nftpool ha-config` writes the files.
/// Why each setting: docs/ha.md (measurements in ../shared/HA-NOTES.md).
public enum HAConfig {
    public static let defaultRuntimeDirectory = "/run/nftpool"
    public static let keepalivedFile = "keepalived.conf"
    public static let conntrackdFile = "conntrackd.conf"
    public static let notifyScriptFile = "nftpool-notify.sh"
    /// conntrackd's FTFW port (UDP unicast, or the multicast group's port).
    public static let syncPort = 3780
    /// nftpool daemons' beats to each other (HAPeerBeat), on the sync link beside conntrackd.
    public static let peerPort = 3781

    /// What nftpool writes to the track file (`Paths.trackFile`); keepalived reads it with weight 1.
    public enum TrackValue: Int, Sendable {
        /// Table loaded, probes agree, conntrack state resynced: full priority.
        case ready = 0
        /// May hold the VIPs only if no peer is there (priority drops to 1): not yet resynced. Used so that
        /// a returning node takes the VIPs back (preempts) only once conntrackd reports the resync.
        case notResynced = -253
        /// Must not hold the VIPs (FAULT): table not loaded yet, daemon stopping, or `yieldWhenAllDown`.
        /// Also what keepalived writes at its start when the file does not exist.
        case fault = -254
    }

    public struct Files: Equatable, Sendable {
        public var keepalived: String
        public var conntrackd: String
        public var notifyScript: String
    }

    /// Every path the three engines and the daemon share; all runtime files under `runtimeDirectory`.
    public struct Paths: Equatable, Sendable {
        public var configDirectory: String
        public var runtimeDirectory: String
        public var table: String
        public var node: String

        public init(configDirectory: String, runtimeDirectory: String, table: String, node: String) {
            self.configDirectory = HAConfig.trimmed(configDirectory)
            self.runtimeDirectory = HAConfig.trimmed(runtimeDirectory)
            self.table = table
            self.node = node
        }

        func run(_ name: String) -> String { runtimeDirectory == "/" ? "/\(name)" : "\(runtimeDirectory)/\(name)" }
        func config(_ name: String) -> String { configDirectory == "/" ? "/\(name)" : "\(configDirectory)/\(name)" }

        public var keepalivedConf: String { config(HAConfig.keepalivedFile) }
        public var conntrackdConf: String { config(HAConfig.conntrackdFile) }
        public var notifyScript: String { config(HAConfig.notifyScriptFile) }
        /// The daemon writes a TrackValue here, atomically (temp + rename).
        public var trackFile: String { run("\(table).\(node).track") }
        /// keepalived writes `INSTANCE "<name>" MASTER|BACKUP|FAULT|STOP <priority>` lines here.
        public var notifyFifo: String { run("\(table).\(node).notify") }
        /// The daemon's pid, written by `nftpool run --node`: keepalived's liveness check reads it.
        public var daemonPidFile: String { run("\(table).\(node).pid") }
        public var keepalivedPid: String { run("keepalived.\(table).\(node).pid") }
        public var keepalivedVRRPPid: String { run("keepalived-vrrp.\(table).\(node).pid") }
        public var keepalivedCheckerPid: String { run("keepalived-checker.\(table).\(node).pid") }
        public var conntrackdLock: String { run("conntrackd.\(table).\(node).lock") }
        public var conntrackdSocket: String { run("conntrackd.\(table).\(node).ctl") }

        /// How to start each engine with these files (also printed by `nftpool ha-config`).
        public var keepalivedCommand: String {
            "keepalived -n -l -D -f \(keepalivedConf) -p \(keepalivedPid) -r \(keepalivedVRRPPid) -c \(keepalivedCheckerPid)"
        }
        public var conntrackdCommand: String { "conntrackd -C \(conntrackdConf)" }
    }

    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case noHA
        case unknownNode(String, known: [String])
        /// A path that the generated files cannot hold, or a setup the generator does not produce.
        case unusable(String)

        public var description: String {
            switch self {
            case .noHA: return "ha: this spec has no ha section"
            case .unknownNode(let name, let known):
                return "--node: no node \"\(name)\" in ha.nodes (\(known.joined(separator: ", ")))"
            case .unusable(let why): return why
            }
        }
    }

    /// The three files for `node`. Directories must be absolute: keepalived runs the script by path
    /// and both daemons resolve their files from whatever directory they were started in.
    public static func generate(_ spec: Spec, node name: String, configDirectory: String, runtimeDirectory: String = defaultRuntimeDirectory) throws(Failure) -> Files {
        guard let ha = spec.ha else { throw .noHA }
        guard let me = ha.node(named: name) else { throw .unknownNode(name, known: ha.nodes.map(\.name)) }
        for (flag, dir) in [("--dir", configDirectory), ("--runtime-dir", runtimeDirectory)] {
            guard dir.hasPrefix("/") else { throw .unusable("\(flag): \(dir) must be an absolute path") }
            // One bare word in both config languages: no blanks, quotes, comment or block characters.
            if dir.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F || "\"'#!{};\\".unicodeScalars.contains($0) }) {
                throw .unusable("\(flag): \(dir) holds a blank, a quote or one of # ! { } ; \\ which keepalived.conf and conntrackd.conf cannot hold")
            }
        }
        let paths = Paths(
            configDirectory: configDirectory, runtimeDirectory: runtimeDirectory, table: spec.table, node: name)
        // sun_path holds 108 bytes with its NUL.
        guard paths.conntrackdSocket.utf8.count <= 107 else {
            throw .unusable("--runtime-dir: \(paths.conntrackdSocket) is longer than a UNIX socket path may be (107 bytes)")
        }
        let peers = ha.nodes.filter { $0.name != name }
        if peers.count > 1, me.syncAddress.family == .ipv6 {
            throw .unusable("ha.nodes: with 3 or more nodes conntrackd needs multicast, which nftpool generates for IPv4 sync addresses only; give the nodes IPv4 syncAddress values")
        }
        // keepalived refuses an instance whose virtual_ipaddress is empty ("No VIP specified"), and all of
        // it must be of the family of the adverts (the nodes' addresses).
        let floating = HA.virtualAddresses(of: spec.pools) + [ha.snatAddress]
        guard floating.contains(where: { $0.family == me.address.family }) else {
            let family = me.address.family.rawValue
            throw .unusable("ha.nodes: the nodes' addresses are \(family) but no frontend address and not snatAddress is; keepalived needs at least one floating \(family) address in the family of its adverts")
        }
        return Files(
            keepalived: keepalived(spec, ha, me, peers, paths),
            conntrackd: conntrackd(spec, ha, me, peers, paths),
            notifyScript: notifyScript(spec, me, paths))
    }

    static func trimmed(_ dir: String) -> String {
        var d = dir
        while d.count > 1, d.hasSuffix("/") { d.removeLast() }
        return d
    }

    /// keepalived's advert_int: seconds, two decimals at most (the spec allows whole centiseconds).
    static func seconds(_ d: Duration) -> String {
        let cs = d.milliseconds / 10
        let whole = cs / 100, frac = cs % 100
        if frac == 0 { return "\(whole)" }
        return frac % 10 == 0 ? "\(whole).\(frac / 10)" : "\(whole).\(frac < 10 ? "0" : "")\(frac)"
    }

    static func prefix(_ a: IPAddress) -> String { "\(a)/\(a.family == .ipv4 ? 32 : 128)" }

    static func keepalived(_ spec: Spec, _ ha: HA, _ me: HANode, _ peers: [HANode], _ paths: Paths) -> String {
        let instance = "nftpool_\(spec.table)"
        let family = me.address.family
        // (address, interface): every frontend address on the client side, the SNAT address toward backends.
        let floating = HA.virtualAddresses(of: spec.pools).map { ($0, ha.interface) } + [(ha.snatAddress, ha.backendInterface)]
        // All of virtual_ipaddress must be of the instance's family (its adverts'); the other family goes to
        // virtual_ipaddress_excluded, which moves with the instance the same way but is not advertised.
        let vips = floating.filter { $0.0.family == family }
        let excluded = floating.filter { $0.0.family != family }
        var out = """
            # keepalived.conf for node \(me.name) of table inet \(spec.table): generated by `nftpool ha-config`.
            # Regenerate rather than edit; docs/ha.md explains each setting. Run as:
            #   \(paths.keepalivedCommand)
            # \(paths.runtimeDirectory) must exist (systemd: RuntimeDirectory=nftpool).

            global_defs {
                router_id \(spec.table)-\(me.name)
                vrrp_version 3
                # Gratuitous ARPs/NAs: 3 at takeover, again 1 s later.
                vrrp_garp_master_delay 1
                vrrp_garp_master_repeat 3
                # After a split brain heals, the loser's advert makes the winner send its ARPs/NAs again, so
                # clients follow the node that stays master.
                vrrp_higher_prio_send_advert true
                script_user root
                enable_script_security
                # Role changes for `nftpool run --node \(me.name)`: INSTANCE "\(instance)" MASTER|BACKUP|FAULT|STOP PRIORITY
                notify_fifo \(paths.notifyFifo)
            }

            # Written by nftpool: 0 ready; -253 not resynced yet (priority 1: takes the VIPs only when no peer
            # is there, so a returning node preempts only after it holds the master's connections); above 0 a
            # master holding the VIPs one priority above a peer that could preempt it while that peer is gone
            # or not resynced (a hung master resuming, say); -254 FAULT (table not loaded, daemon stopping,
            # yieldWhenAllDown). keepalived creates it holding -254. docs/ha.md: the resync gate.
            track_file nftpool_ready {
                file "\(paths.trackFile)"
                weight 1
                init_file \(TrackValue.fault.rawValue)
            }

            # A crashed nftpool gives up the VIPs (the kernel table keeps forwarding until the move). A check
            # rather than vrrp_track_process: the process connector that needs works in the initial network
            # namespace only (in another, keepalived stays in FAULT), and it cannot tell two nodes' daemons apart.
            vrrp_script nftpool_alive {
                script "\(paths.notifyScript) alive"
                interval 1
                timeout 1
                fall 2
                rise 1
                weight 0
                init_fail
            }

            vrrp_instance \(instance) {
                # Every node starts as BACKUP; the election follows priority and the track file.
                state BACKUP
                interface \(ha.interface)
                virtual_router_id \(ha.routerId)
                priority \(me.priority)
                advert_int \(seconds(ha.advertInterval))
                unicast_src_ip \(me.address)
                unicast_peer {

            """
        for p in peers { out += "        \(p.address)\n" }
        out += """
                }
                check_unicast_src

            """
        if !vips.isEmpty {
            out += "    virtual_ipaddress {\n"
            for (a, dev) in vips { out += "        \(prefix(a)) dev \(dev)\n" }
            out += "    }\n"
        }
        if !excluded.isEmpty {
            out += "    virtual_ipaddress_excluded {\n"
            for (a, dev) in excluded { out += "        \(prefix(a)) dev \(dev)\n" }
            out += "    }\n"
        }
        out += """
                track_file {
                    nftpool_ready
                }
                track_script {
                    nftpool_alive
                }
                notify "\(paths.notifyScript)"
            }

            """
        return out
    }

    static func conntrackd(_ spec: Spec, _ ha: HA, _ me: HANode, _ peers: [HANode], _ paths: Paths) -> String {
        let v = me.syncAddress.family == .ipv4 ? "IPv4" : "IPv6"
        var out = """
            # conntrackd.conf for node \(me.name): generated by `nftpool ha-config`. Run as:
            #   \(paths.conntrackdCommand)
            Sync {
                Mode FTFW {
                    # Direct injection: the other nodes' entries go straight into this kernel's table, so a
                    # takeover needs no commit (none of the reset window of an external cache + `-c`).
                    DisableExternalCache On
                    # A node that starts asks the others for their whole table.
                    StartupResync On
                }

            """
        if peers.count == 1 {
            out += """
                    UDP {
                        \(v)_address \(me.syncAddress)
                        \(v)_Destination_Address \(peers[0].syncAddress)
                        Port \(syncPort)
                        Interface \(ha.sync.interface)
                        Checksum on
                    }

                """
        } else {
            // UDP reaches one peer only: 3 or more nodes share a multicast group on the sync link.
            out += """
                    Multicast {
                        IPv4_address 225.0.0.\(ha.routerId)
                        IPv4_interface \(me.syncAddress)
                        Group \(syncPort)
                        Interface \(ha.sync.interface)
                        Checksum on
                    }

                """
        }
        out += """
            }

            General {
                Systemd off
                HashSize 32768
                HashLimit 131072
                LogFile off
                Syslog on
                LockFile \(paths.conntrackdLock)
                UNIX {
                    Path \(paths.conntrackdSocket)
                }
                NetlinkBufferSize 2097152
                NetlinkBufferSizeMaxGrowth 8388608
                NetlinkEventsReliable On
                NetlinkOverrunResync Off
                Filter From Userspace {
                    Protocol Accept {
                        TCP
                        UDP
                    }
                    # Matched against a flow's original source and reply source only: loopback, the nodes'
                    # own and sync addresses, the floating addresses (flows the nodes open themselves). Never
                    # client or backend networks: those are the flows to replicate.
                    Address Ignore {

            """
        var ignored: [IPAddress] = [IPAddress("127.0.0.1")!, IPAddress("::1")!]
        for n in ha.nodes { ignored += [n.address, n.syncAddress] }
        ignored += HA.virtualAddresses(of: spec.pools) + [ha.snatAddress]
        var seen = Set<IPAddress>()
        for a in ignored where seen.insert(a).inserted {
            out += "            \(a.family == .ipv4 ? "IPv4" : "IPv6")_address \(a)\n"
        }
        out += """
                    }
                }
            }

            """
        return out
    }

    static func notifyScript(_ spec: Spec, _ me: HANode, _ paths: Paths) -> String {
        """
        #!/bin/sh
        # keepalived's notify script and liveness check for node \(me.name) of table inet \(spec.table):
        # generated by `nftpool ha-config`. The daemon learns roles from the notify fifo, not from here.
        #   nftpool-notify.sh alive                       exit 0 while this node's nftpool daemon runs
        #   nftpool-notify.sh INSTANCE NAME STATE PRIO    (keepalived, on every transition)
        PATH=/usr/sbin:/usr/bin:/sbin:/bin
        CONF=\(paths.conntrackdConf)

        if [ "$1" = alive ]; then
            pid=$(cat \(paths.daemonPidFile) 2>/dev/null) || exit 1
            [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = nftpool ]
            exit
        fi

        case "$3" in
        MASTER)
            # conntrackd injects the peers' entries into the kernel as they come (DisableExternalCache):
            # nothing to commit. Ask the peers for their table once more: after a planned switchover it
            # fills any gap; with the peer dead the request goes nowhere.
            conntrackd -C "$CONF" -n >/dev/null 2>&1 || true
            ;;
        BACKUP|FAULT|STOP)
            # Nothing. Never `conntrackd -t` here (the stock primary-backup.sh does): with direct injection
            # the kernel table is the replica, and its flush after PurgeTimeout dropped most synced
            # connections (17-21 of 50 survived).
            ;;
        esac
        exit 0

        """
    }
}
