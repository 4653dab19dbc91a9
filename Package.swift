// swift-tools-version: 6.1
import PackageDescription

// Layering (docs/DESIGN.md): PoolSpec ─► Ruleset ─► (Kernel) ─► nftpool; PoolSpec ─► HAConfig ─► nftpool. Nothing below imports upward.
let package = Package(
    name: "nftpool",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "nftpool", targets: ["nftpool"]),
        .executable(name: "UpdateLatencyBench", targets: ["UpdateLatencyBench"]),
        .executable(name: "SpecFuzz", targets: ["SpecFuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The pool spec: decoding (YAML/JSON), defaults and validation. Pure.
        .target(name: "PoolSpec", dependencies: [.product(name: "Yams", package: "Yams")]),
        // Spec's ha section + a node name ─► keepalived.conf, conntrackd.conf, notify script. Pure: text out.
        .target(name: "HAConfig", dependencies: ["PoolSpec"]),
        // Spec + health ─► typed nftables objects, slot tables, nft text. Pure: no kernel, no clock.
        .target(name: "Ruleset", dependencies: ["PoolSpec"]),
        // libnftnl + libmnl for Swift: a module map and a shim header, nothing but glue.
        .systemLibrary(
            name: "CNetfilter", pkgConfig: "libnftnl", providers: [.apt(["libnftnl-dev", "libmnl-dev"])]),
        // The only code that talks to the kernel: typed ruleset ─► netlink batch, replies, read-back.
        .target(name: "Kernel", dependencies: ["Ruleset", "PoolSpec", "CNetfilter"]),
        // Health probes (tcp, http, https over SwiftNIO/NIOSSL) and the rise/fall state machine. Knows
        // nothing of nftables: it reads a spec's health checks and reports transitions.
        .target(
            name: "Probes",
            dependencies: [
                "PoolSpec",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        // `nftpool run`: spec + probe transitions ─► health ─► one netlink batch per change.
        .target(
            name: "Daemon",
            dependencies: [
                "PoolSpec", "Ruleset", "Kernel", "Probes", "HAConfig", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]),
        // `nftpool run --metrics-address`: Prometheus text on /metrics, /healthz and /readyz, served by
        // SwiftNIO off the daemon's loop; it only reads what the daemon publishes.
        .target(
            name: "NftpoolMetrics",
            dependencies: [
                "Daemon", "Kernel", "Probes", "PoolSpec", "Ruleset",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]),
        .executableTarget(
            name: "nftpool",
            dependencies: [
                "PoolSpec", "Ruleset", "Kernel", "Daemon", "HAConfig", "NftpoolMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // libFuzzer over the spec decoder (scripts/fuzz-spec builds it with -sanitize=fuzzer and
        // -DSPECFUZZ_LIBFUZZER in .build-fuzz). A plain build makes a replayer of saved inputs instead.
        .executableTarget(name: "SpecFuzz", dependencies: ["PoolSpec"]),
        // benchmarks/update-latency.sh: health flip to kernel ACK, release build.
        .executableTarget(name: "UpdateLatencyBench", dependencies: ["PoolSpec", "Ruleset", "Kernel"]),
        // Helpers for tests only: repository paths, running the built binary, scratch network namespaces.
        .target(name: "TestSupport", dependencies: ["PoolSpec"], path: "Tests/TestSupport"),
        .testTarget(name: "PoolSpecTests", dependencies: ["PoolSpec", "TestSupport", .product(name: "Yams", package: "Yams")]),
        .testTarget(
            name: "ProbesTests",
            dependencies: [
                "Probes", "PoolSpec", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        // ha-config's text (golden files) and, with root, the real keepalived and conntrackd running it.
        .testTarget(name: "HAConfigTests", dependencies: ["HAConfig", "PoolSpec", "TestSupport"]),
        .testTarget(name: "RulesetTests", dependencies: ["Ruleset", "PoolSpec", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport"]),
        // The kernel layer's plans and batches, computed without a kernel: runs without root.
        .testTarget(name: "KernelPlanTests", dependencies: ["Ruleset", "PoolSpec", "Kernel", "TestSupport"]),
        // The daemon's decisions against the in-memory FakeKernel, and its log lines: runs without root.
        .testTarget(
            name: "DaemonCoreTests",
            dependencies: ["Daemon", "Kernel", "Ruleset", "PoolSpec", "Probes", .product(name: "Logging", package: "swift-log")]),
        // The metrics families, health verdicts and sd_notify datagrams, without a kernel or root.
        .testTarget(name: "NftpoolMetricsTests", dependencies: ["NftpoolMetrics", "Daemon", "Probes", "PoolSpec", "TestSupport"]),
        // deploy/: alert rules (promtool), the systemd unit (systemd-analyze), the static pod (kubernetes-validate).
        .testTarget(name: "DeployTests", dependencies: ["TestSupport", .product(name: "Yams", package: "Yams")]),
        // Needs root, nft and network namespaces; fails (never skips) when it cannot run them.
        .testTarget(name: "KernelAcceptanceTests", dependencies: ["Ruleset", "PoolSpec", "Kernel", "TestSupport"]),
        // Real traffic: namespaces joined by veth and a bridge, Python servers in the backends (integration/).
        .target(name: "IntegrationHarness", dependencies: ["TestSupport"], path: "integration/Harness"),
        .testTarget(name: "IntegrationTests", dependencies: ["IntegrationHarness"], path: "integration/Tests"),
    ]
)
