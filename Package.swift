// swift-tools-version:6.1
import PackageDescription

// Architecture, from the inside out:
//   RelayCore     pure sans-IO state machines (standard library + swift-collections only)
//   RelayControl  JSON config file and control protocol shared by daemon, client and simulator
//   PcapFile      libpcap reader/writer (simulator traces, egress captures, flight recorder)
//   Sim           deterministic simulator driving RelayCore against a kernel model
//   LinuxIO       production adapter: AF_PACKET, io_uring, helper sockets, netlink, control socket
//   mcrelay       the one executable: daemon, control client and simulator subcommands
let package = Package(
    name: "mcrelay",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mcrelay", targets: ["mcrelay"]),
        .library(name: "RelayCore", targets: ["RelayCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.0"),
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // System libraries (Debian: liburing-dev, libpcap-dev, linux-libc-dev).
        .systemLibrary(name: "CURing", path: "Sources/CURing", pkgConfig: "liburing",
                       providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CPcap", path: "Sources/CPcap", pkgConfig: "libpcap",
                       providers: [.apt(["libpcap-dev"])]),
        .target(name: "CLinuxNet", path: "Sources/CLinuxNet"),
        // libbpf (Debian: libbpf-dev) behind a plain-typed header, for the XDP path (bpf/,
        // docs/xdp-facts.md): the daemon's --data-path xdp (LinuxIO/XDP) and the XDP tests.
        .target(name: "CXDP", path: "Sources/CXDP", linkerSettings: [.linkedLibrary("bpf")]),

        .target(
            name: "RelayCore",
            dependencies: [.product(name: "Collections", package: "swift-collections")],
            // The per-packet calls (decide, transmits) cross from LinuxIO/Sim into this module;
            // without cross-module optimization each costs a call, retains of the plan's
            // buffers and an unspecialised iterator: ~50 ns instead of ~20 ns per decision.
            swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]
        ),
        .target(name: "RelayControl", dependencies: ["RelayCore"]),
        .target(name: "PcapFile", dependencies: ["CPcap"]),
        .target(
            name: "Sim",
            dependencies: [
                "RelayCore", "RelayControl", "PcapFile",
                .product(name: "Collections", package: "swift-collections"),
            ]
        ),
        .target(
            name: "LinuxIO",
            dependencies: [
                "RelayCore", "RelayControl", "CURing", "CLinuxNet", "CXDP",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "mcrelay",
            dependencies: [
                "RelayCore", "RelayControl", "Sim", "LinuxIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .testTarget(
            name: "RelayCoreTests",
            dependencies: [
                "RelayCore",
                "FuzzChecks",  // the checksum oracles ChecksumCarryTests shares with the egress fuzz target
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            ]
        ),
        .testTarget(name: "RelayControlTests", dependencies: ["RelayControl", "RelayCore"]),
        .testTarget(
            name: "SimTests",
            dependencies: [
                "Sim", "RelayCore", "RelayControl", "PcapFile",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        // Infrastructure tests (owned by infra): PcapFile API; system modules import and work.
        .testTarget(name: "PcapFileTests", dependencies: ["PcapFile"]),
        .testTarget(name: "SystemModulesTests", dependencies: ["CURing", "CPcap", "CLinuxNet"]),
        .testTarget(
            name: "LinuxIOTests",
            dependencies: ["LinuxIO", "RelayCore", "RelayControl", "CLinuxNet", "PcapFile"]
        ),

        // Fuzzing (owned by fuzz): the property checks shared by the libFuzzer entry points in
        // Fuzz/Targets (built only by scripts/fuzz.sh, never by `swift build`) and by the test
        // that replays Fuzz/corpus and Fuzz/regressions.
        .target(name: "FuzzChecks", dependencies: ["RelayCore", "RelayControl", "PcapFile", "Sim"], path: "Fuzz/FuzzChecks"),
        // The XDP program against Forwarder + EgressFrame through BPF_PROG_TEST_RUN (root).
        .testTarget(name: "XDPTests", dependencies: ["RelayCore", "FuzzChecks", "Sim", "CXDP", "LinuxIO"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["FuzzChecks", "RelayCore", "PcapFile"]),

    ]
)
