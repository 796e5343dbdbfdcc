// swift-tools-version:6.1
import PackageDescription

// The micro-benchmarks live in their own package so that ordinary builds and CI do not
// compile ordo-one/benchmark. Run them with `make bench` (or `swift package benchmark` here).
let package = Package(
    name: "mcrelay-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "mcrelay", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "RelayCoreBenchmarks",
            dependencies: [
                .product(name: "RelayCore", package: "mcrelay"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "RelayCoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
