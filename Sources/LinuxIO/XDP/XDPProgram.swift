import CXDP
import Glibc
import RelayCore

/// bpf/mcrelay_xdp.o loaded into the kernel through libbpf, its maps filled from `XDPTables`.
/// The daemon's `--data-path xdp` (XDPDataPath) attaches it and keeps its maps in step with the
/// plans; the XDP tests also run its programs on frames with BPF_PROG_TEST_RUN.
public final class XDPProgram {
    public enum Failure: Error, CustomStringConvertible {
        case unavailable(String)
        case failed(String)
        public var description: String {
            switch self {
            case let .unavailable(text), let .failed(text): text
            }
        }
    }

    /// XDP actions (enum xdp_action).
    public static let aborted: UInt32 = 0, drop: UInt32 = 1, pass: UInt32 = 2, transmit: UInt32 = 3, redirect: UInt32 = 4

    private let object: OpaquePointer
    /// The ingress program attached: the one that leaves `struct carried` in the frame's
    /// metadata for the egress programs, unless the kernel refuses that (`carriesMetadata`).
    public let ingress: Int32
    /// The ingress program without metadata (each copy's egress program finds the rule and the
    /// checksum's shared part again); the same as `ingress` on a kernel without the helper.
    public let ingressWithoutMetadata: Int32
    /// Whether `ingress` leaves metadata: false where the kernel's verifier refuses
    /// bpf_xdp_adjust_meta to XDP programs (6.18.44-fc-v1300 does).
    public var carriesMetadata: Bool { ingress != ingressWithoutMetadata }
    public static let metadataRefused = "this kernel refuses bpf_xdp_adjust_meta to XDP programs: each copy's "
        + "egress program looks its rule up and sums the checksum's shared part again (one lookup per copy, not per frame)"
    public let rewrite: Int32
    public let egress: Int32
    let devmap: Int32
    let rulesMap: Int32
    let outputsMap: Int32
    private let testEgressMap: Int32
    let ruleCounters: Int32
    let outputCounters: Int32
    private var installed: [(map: Int32, key: [UInt8])] = []

    /// MCRELAY_XDP_OBJECT (the Makefile exports it), else .build/bpf/mcrelay_xdp.o in the checkout.
    public static func objectPath(repositoryRoot: String) -> String {
        if let path = getenv("MCRELAY_XDP_OBJECT").map({ String(cString: $0) }), !path.isEmpty { return path }
        return repositoryRoot + "/.build/bpf/mcrelay_xdp.o"
    }

    public init(path: String) throws {
        guard access(path, R_OK) == 0 else { throw Failure.unavailable("no BPF object at \(path) (make bpf builds it)") }
        // Probed first (a four-instruction program making the one call): a kernel that refuses the
        // helper would refuse the whole object, with a verifier log that reads like a bug.
        let metadata = cxdp_xdp_metadata_helper() != 0
        guard let object = cxdp_open(path, metadata ? nil : "mcrelay_xdp_ingress") else {
            var text = [CChar](repeating: 0, count: 256)
            cxdp_strerror(errno, &text, text.count)
            let message = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw Failure.failed("cannot load \(path): \(message) (libbpf's log above)")
        }
        self.object = object
        func program(_ name: String) throws -> Int32 {
            let fd = cxdp_program_fd(object, name)
            guard fd >= 0 else { throw Failure.failed("no program \(name) in \(path)") }
            return fd
        }
        func map(_ name: String) throws -> Int32 {
            let fd = cxdp_map_fd(object, name)
            guard fd >= 0 else { throw Failure.failed("no map \(name) in \(path)") }
            return fd
        }
        ingressWithoutMetadata = try program("mcrelay_xdp_ingress_no_meta")
        ingress = metadata ? try program("mcrelay_xdp_ingress") : ingressWithoutMetadata
        rewrite = try program("mcrelay_xdp_rewrite")
        egress = try program("mcrelay_xdp_egress")
        devmap = try map("egress")
        rulesMap = try map("rules")
        outputsMap = try map("outputs")
        testEgressMap = try map("test_egress")
        ruleCounters = try map("rule_counters")
        outputCounters = try map("output_counters")
    }

    deinit { cxdp_close(object) }

    /// Test support: empties the maps, then fills them with `tables`; the devmap's devices are those of the
    /// network namespace at `namespacePath`, each with the egress program.
    public func install(_ tables: XDPTables, namespacePath: String) throws {
        for (map, key) in installed { _ = key.withUnsafeBytes { cxdp_map_delete(map, $0.baseAddress) } }
        installed = []
        for entry in tables.rules { try update(rulesMap, entry.key, entry.value) }
        for entry in tables.outputs { try update(outputsMap, entry.key, entry.value) }
        // Counters start at zero with the plan (the daemon will carry them over as Forwarder does).
        for entry in tables.rules { try zero(ruleCounters, Array(entry.value[0..<4]), remember: false) }
        for entry in tables.outputs { try zero(outputCounters, entry.key, remember: true) }
        for device in tables.devices {
            let result = cxdp_devmap_add(devmap, UInt32(bitPattern: device), egress, namespacePath)
            guard result == 0 else {
                throw Failure.failed("devmap entry for device \(device) in \(namespacePath): \(String(cString: strerror(-result)))")
            }
            withUnsafeBytes(of: UInt32(bitPattern: device)) { installed.append((devmap, Array($0))) }
        }
    }

    func zero(_ map: Int32, _ key: [UInt8], remember: Bool) throws {
        let result = key.withUnsafeBytes { cxdp_traffic_zero(map, $0.baseAddress) }
        guard result == 0 else { throw Failure.failed("counter reset: \(String(cString: strerror(-result)))") }
        if remember { installed.append((map, key)) }
    }

    /// (packets, payload bytes) the program counted for a rule of `tables` (its `rules` entry).
    public func accepted(_ rule: XDPTables.Entry) throws -> (UInt64, UInt64) {
        try sum(ruleCounters, Array(rule.value[0..<4]))
    }

    /// (packets, payload bytes) the program sent on an output of `tables` (its `outputs` entry).
    public func sent(_ output: XDPTables.Entry) throws -> (UInt64, UInt64) {
        try sum(outputCounters, output.key)
    }

    func sum(_ map: Int32, _ key: [UInt8]) throws -> (UInt64, UInt64) {
        var packets: UInt64 = 0, bytes: UInt64 = 0
        let result = key.withUnsafeBytes { cxdp_traffic_sum(map, $0.baseAddress, &packets, &bytes) }
        guard result == 0 else { throw Failure.failed("counter read: \(String(cString: strerror(-result)))") }
        return (packets, bytes)
    }

    func update(_ map: Int32, _ key: [UInt8], _ value: [UInt8], remember: Bool = true) throws {
        let result = key.withUnsafeBytes { key in value.withUnsafeBytes { cxdp_map_update(map, key.baseAddress, $0.baseAddress) } }
        guard result == 0 else { throw Failure.failed("map update: \(String(cString: strerror(-result)))") }
        if remember { installed.append((map, key)) }
    }

    /// Removes an entry (one that is already gone is no error).
    func delete(_ map: Int32, _ key: [UInt8]) {
        _ = key.withUnsafeBytes { cxdp_map_delete(map, $0.baseAddress) }
    }

    /// Runs `program` once on `frame`, with `metadata` (XDP metadata in front of it, as the
    /// ingress program leaves it for the egress programs) as received on device `ifindex`: the
    /// action, the frame after and the metadata in front of it then.
    public func run(_ program: Int32, frame: [UInt8], metadata: [UInt8] = [], ingressIfindex: UInt32) throws
        -> (action: UInt32, frame: [UInt8], metadata: [UInt8]) {
        let input = metadata + frame
        var output = [UInt8](repeating: 0, count: input.count + 512)
        var length: UInt32 = 0, metaLength: UInt32 = 0, action: UInt32 = 0
        let result = input.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { out in
                cxdp_test_run(program, input.baseAddress, UInt32(input.count), UInt32(metadata.count), ingressIfindex,
                              out.baseAddress, UInt32(out.count), &length, &metaLength, &action)
            }
        }
        guard result == 0 else { throw Failure.failed("BPF_PROG_TEST_RUN: \(String(cString: strerror(-result)))") }
        guard metaLength <= length else { throw Failure.failed("BPF_PROG_TEST_RUN: \(metaLength) bytes of metadata in \(length)") }
        return (action, Array(output[Int(metaLength)..<Int(length)]), Array(output[0..<Int(metaLength)]))
    }

    /// The rewrite of one output device, as its devmap egress program makes it: of a frame the
    /// ingress program redirected, with the metadata it left (none: the egress program finds
    /// the rule again, as for a copy without metadata).
    public func runRewrite(frame: [UInt8], metadata: [UInt8] = [], ingressIfindex: UInt32, egressIfindex: Int32) throws
        -> (action: UInt32, frame: [UInt8]) {
        var zero: UInt32 = 0
        var device = UInt32(bitPattern: egressIfindex)
        let result = cxdp_map_update(testEgressMap, &zero, &device)
        guard result == 0 else { throw Failure.failed("test_egress update: \(String(cString: strerror(-result)))") }
        let (action, after, _) = try run(rewrite, frame: frame, metadata: metadata, ingressIfindex: ingressIfindex)
        return (action, after)
    }
}

/// Test support: attaches (`program` -1: detaches) an XDP program natively to device `ifindex`
/// of network namespace `namespace` (no link: it stays until detached): 0 or a negative errno.
public func cxdpAttach(_ ifindex: Int32, _ program: Int32, _ namespace: String) -> Int32 {
    cxdp_attach(UInt32(bitPattern: ifindex), program, "/run/netns/" + namespace)
}
