import Prometheus

/// Every family nftpool exports, with its help text: the names are a contract (dashboards and the alert
/// rules in deploy/prometheus use them), so they are spelled out here once.
enum Families {
    private static func d(_ subsystem: String?, _ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "nftpool", subsystem: subsystem, metricName: name, unitName: unit, helpText: help)
    }

    // Per backend (labels pool, backend).
    static var backendUp: MetricNameDescriptor {
        d("backend", "up", "", "1 when the backend passes its health checks (or has none), 0 when it fails them.")
    }
    static var backendAdminState: MetricNameDescriptor {
        d("backend", "admin_state", "", "The backend's administrative state from the spec, one-hot over state=enabled|drain|disabled.")
    }
    static var backendWeight: MetricNameDescriptor { d("backend", "weight", "", "The backend's weight from the spec.") }
    static var backendSlots: MetricNameDescriptor {
        d("backend", "slots", "", "Slots of the pool's slot map the kernel's table gives the backend (its share of new connections).")
    }
    static var backendTimeInState: MetricNameDescriptor {
        d("backend", "time_in_state", "seconds", "Seconds since the backend's health last changed (or since probing began).")
    }
    static var backendTransitions: MetricNameDescriptor {
        d("backend", "transitions", "total", "Health transitions of the backend (rise or fall completed), by the state entered.")
    }
    static var backendChecks: MetricNameDescriptor {
        d("backend", "checks", "total", "Health check results, by outcome (success, refused, timeout, reset, unreachable, tls, status, error).")
    }
    static var backendCheckDuration: MetricNameDescriptor {
        d("backend", "check_duration", "seconds", "Time from the start of a health check to its result.")
    }
    static var backendForwardedPackets: MetricNameDescriptor {
        d("backend", "forwarded_packets", "total",
          "Packets the kernel forwarded to the backend's address and port after DNAT (read at scrape time; shared by pools with the same backend).")
    }
    static var backendForwardedBytes: MetricNameDescriptor {
        d("backend", "forwarded_bytes", "total",
          "Bytes the kernel forwarded to the backend's address and port after DNAT (read at scrape time; shared by pools with the same backend).")
    }
    /// Nine buckets: a probe on a LAN answers in a millisecond or less, a timeout is up to seconds.
    /// Each bucket is a line per backend (10,000 backends: 10,000 lines).
    static let checkBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    // Per pool (label pool).
    static var poolBackends: MetricNameDescriptor {
        d("pool", "backends", "", "Backends of the pool by state: serving (enabled and healthy), down (enabled, failing checks), drain, disabled.")
    }
    static var poolSlots: MetricNameDescriptor { d("pool", "slots", "", "Size of the pool's slot map.") }
    static var poolNewConnections: MetricNameDescriptor {
        d("pool", "new_connections", "total", "New connections the kernel dispatched to the pool (its dnat rule's counter, read at scrape time).")
    }

    // The daemon.
    static var applyDuration: MetricNameDescriptor {
        d(nil, "apply_duration", "seconds", "Time to send one transaction to the kernel and have it acknowledged (start, health change, repair, retry, reload).")
    }
    static var netlinkMessages: MetricNameDescriptor {
        d("netlink", "messages", "total", "Netlink messages in the transactions the kernel committed.")
    }
    static var netlinkErrors: MetricNameDescriptor {
        d("netlink", "errors", "total", "Transactions the kernel refused and other netlink requests that failed.")
    }
    static var repairs: MetricNameDescriptor {
        d(nil, "foreign_changes_repaired", "total", "Changes to the table by another program, found and undone.")
    }
    static var kernelInSync: MetricNameDescriptor {
        d("kernel", "in_sync", "", "1 when the kernel's table is what the daemon wants, 0 while a refused update is being retried.")
    }
    static var reloads: MetricNameDescriptor {
        d("config", "reloads", "total", "Spec reloads (SIGHUP), by result (success or failure).")
    }
    static var lastReloadSuccessful: MetricNameDescriptor {
        d("config", "last_reload_successful", "", "1 when the last reload took the new spec (or none was asked), 0 when it was refused.")
    }
    static var lastReloadSuccessTime: MetricNameDescriptor {
        d("config", "last_reload_success_timestamp", "seconds", "Unix time of the last spec that was taken, at start or on reload.")
    }
    // With a spec's `ha` section (docs/ha.md).
    static var haRole: MetricNameDescriptor {
        d("ha", "role", "", "This node's VRRP role as keepalived last announced it, one-hot over role=MASTER|BACKUP|FAULT|STOP|UNKNOWN.")
    }
    static var haTrack: MetricNameDescriptor {
        d("ha", "track_value", "", "What the daemon last wrote to keepalived's track file: 0 ready, -253 not resynced, -254 fault, above 0 holding the VIPs.")
    }
    static var haResynced: MetricNameDescriptor {
        d("ha", "resynced", "", "1 when this node's conntrack state is complete (it may take the VIPs back), 0 while it resyncs.")
    }
    static var haPeerUp: MetricNameDescriptor {
        d("ha", "peer_up", "", "1 while the peer's daemon is heard on the sync link, 0 once its beats stopped, by peer.")
    }
    static var haPeerResynced: MetricNameDescriptor {
        d("ha", "peer_resynced", "", "1 when the peer reports its conntrack state complete, by peer.")
    }
    static var haPeerSameTable: MetricNameDescriptor {
        d("ha", "peer_same_table", "", "1 when the peer wants the same table as this node (digest of the whole table), by peer.")
    }

    static var buildInfo: MetricNameDescriptor { d(nil, "build", "info", "Always 1; the version in a label.") }

    // The process, under the names every Prometheus client library uses.
    private static func p(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "process", metricName: name, unitName: unit, helpText: help)
    }
    static var processCPU: MetricNameDescriptor { p("cpu", "seconds_total", "Total user and system CPU time spent in seconds.") }
    static var processResident: MetricNameDescriptor { p("resident_memory", "bytes", "Resident memory size in bytes.") }
    static var processVirtual: MetricNameDescriptor { p("virtual_memory", "bytes", "Virtual memory size in bytes.") }
    static var processStart: MetricNameDescriptor { p("start_time", "seconds", "Start time of the process since unix epoch in seconds.") }
    static var processOpenFDs: MetricNameDescriptor { p("open", "fds", "Number of open file descriptors.") }
    static var processMaxFDs: MetricNameDescriptor { p("max", "fds", "Maximum number of open file descriptors.") }
}
