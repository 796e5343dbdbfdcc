// swift-tools-version:6.1
import PackageDescription

// Tests that only mean something optimized, built in release without the rest of mcrelay:
// RelayCore (with its release flags, -cross-module-optimization) and the heap-allocation test
// (HotPathAllocationTests), whose sources are the RelayCoreTests files linked here
// (ForwarderTests.swift, which holds it, and FrameBuilder.swift). `make test` runs it
// (scripts/run-tests.sh, release pass); a full `swift test -c release` of the root package
// compiled every module and test target optimized for this one test (README, "Tests").
let package = Package(
    name: "mcrelay-release-checks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "mcrelay", path: "../.."),
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.0"),
    ],
    targets: [
        .testTarget(
            name: "OptimizedCoreTests",
            dependencies: [
                .product(name: "RelayCore", package: "mcrelay"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            path: "OptimizedCoreTests"
        ),
    ]
)
