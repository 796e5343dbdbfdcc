import Foundation
import FuzzChecks
import PcapFile
import RelayCore
import Testing

/// Replays every committed fuzz input — the seed corpora in `Fuzz/corpus/<target>/` and the
/// crash reproducers in `Fuzz/regressions/<target>/` — through the same check functions the
/// libFuzzer entry points call. A violated property traps (the whole test process dies with
/// the property's message), which is the loud failure a regression deserves.
@Suite struct FuzzRegressionTests {
    static let fuzzRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    static func inputs(_ kind: String, _ target: FuzzTarget) -> [URL] {
        let folder = fuzzRoot.appendingPathComponent(kind).appendingPathComponent(target.rawValue)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { !$0.hasPrefix(".") && $0 != "README.md" }.sorted().map { folder.appendingPathComponent($0) }
    }

    @Test(arguments: FuzzTarget.allCases)
    func seedCorpusReplays(_ target: FuzzTarget) throws {
        let files = Self.inputs("corpus", target)
        // An empty or missing corpus means the harness lost its seeds: fail, don't pass vacuously.
        #expect(files.count >= 10, "Fuzz/corpus/\(target.rawValue) has \(files.count) inputs")
        for file in files {
            let bytes = try Data(contentsOf: file)
            bytes.withUnsafeBytes { target.check($0) }
        }
    }

    /// Every crash the fuzzers found, each replayed in a child process (an exit test), so a
    /// reintroduced bug fails as this one input instead of killing the whole test run. A file
    /// named `known-*` reproduces a bug not fixed yet: its failure is an expected known issue,
    /// and once the bug is fixed the test says so (rename the file to drop `known-`).
    @Test(arguments: FuzzTarget.allCases.flatMap { target in inputs("regressions", target).map { RegressionInput(target, $0) } })
    func crashRegressionReplays(_ input: RegressionInput) async {
        let (target, path) = (input.target.rawValue, input.path)
        if input.isKnownIssue {
            await withKnownIssue("unfixed bug reproduced by \(input)") {
                await #expect(processExitsWith: .success, "\(input) traps") { [target = target as String, path = path as String] in
                    replay(target: target, path: path)
                }
            }
        } else {
            await #expect(processExitsWith: .success, "\(input) traps") { [target = target as String, path = path as String] in
                replay(target: target, path: path)
            }
        }
    }

    /// Every target has its libFuzzer entry point, and every entry point a target.
    @Test func entryPointsMatchTargets() throws {
        let targets = fuzzRootFiles("Targets").filter { $0.hasSuffix(".swift") }.map { String($0.dropLast(6)) }
        #expect(Set(targets) == Set(FuzzTarget.allCases.map(\.rawValue)))
    }

    func fuzzRootFiles(_ folder: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: Self.fuzzRoot.appendingPathComponent(folder).path)) ?? []
    }
}

/// One committed crash input.
struct RegressionInput: Sendable, CustomTestStringConvertible, CustomStringConvertible {
    let target: FuzzTarget
    let path: String
    init(_ target: FuzzTarget, _ url: URL) { (self.target, self.path) = (target, url.path) }
    var isKnownIssue: Bool { URL(fileURLWithPath: path).lastPathComponent.hasPrefix("known-") }
    var description: String { "\(target.rawValue)/\(URL(fileURLWithPath: path).lastPathComponent)" }
    var testDescription: String { description }
}

/// Runs one input through its target's checks (in the exit test's child process).
func replay(target: String, path: String) {
    guard let target = FuzzTarget(rawValue: target), let data = FileManager.default.contents(atPath: path) else {
        fatalError("cannot replay \(target) input \(path)")
    }
    data.withUnsafeBytes { target.check($0) }
}

/// The seeds must reach the interesting outcomes, or the fuzzer starts from nowhere and a
/// green replay proves little: the harness is checked too.
@Suite struct SeedCoverageTests {
    func read(_ target: FuzzTarget, _ name: String) throws -> Data {
        try Data(contentsOf: FuzzRegressionTests.fuzzRoot.appendingPathComponent("corpus/\(target.rawValue)/\(name)"))
    }

    @Test func frameSeedsReachEveryOutcome() throws {
        var verdicts: [FrameVerdict: Int] = [:]
        for file in FuzzRegressionTests.inputs("corpus", .frame) {
            let verdict = try Data(contentsOf: file).withUnsafeBytes { checkFrame($0) }
            verdicts[verdict, default: 0] += 1
        }
        let forwarded = verdicts.filter { if case .forwarded = $0.key { true } else { false } }
        #expect(forwarded.values.reduce(0, +) >= 8, "\(verdicts)")
        #expect(Set(forwarded.keys).count >= 3, "forwarded with several output counts: \(verdicts)")
        for reason in [DropReason.truncated, .notIP, .badChecksum, .badLength, .fragment, .notUDP,
                       .notMulticast, .ownTransmission, .noMatchingRule, .badIPv6Header, .zeroUDPChecksum] {
            #expect(verdicts[.dropped(reason), default: 0] > 0, "no seed dropped as \(reason)")
        }
        // The specific-source rule wins over the any-source one (4 outputs vs 2).
        let specific = try read(.frame, "ethernet-specific-wins").withUnsafeBytes { checkFrame($0) }
        #expect(specific == .forwarded(outputs: 4))
        // Range inputs: the longest prefix, then the exact group with any port, then the exact route.
        #expect(try read(.frame, "ethernet-range-longest-prefix").withUnsafeBytes { checkFrame($0) } == .forwarded(outputs: 2))
        #expect(try read(.frame, "ethernet-range-any-port-exact").withUnsafeBytes { checkFrame($0) } == .forwarded(outputs: 3))
        #expect(try read(.frame, "ethernet-range-exact-wins").withUnsafeBytes { checkFrame($0) } == .forwarded(outputs: 4))
    }

    @Test func pcapSeedsReadTheRealCaptures() throws {
        #expect(try read(.pcap, "real-fragroute").withUnsafeBytes { checkPcap($0) } == 20)
        #expect(try read(.pcap, "real-test-head").withUnsafeBytes { checkPcap($0) } == 12)
        #expect(try read(.pcap, "nano-1").withUnsafeBytes { checkPcap($0) } == 3)
        #expect(try read(.pcap, "truncated-file-header").withUnsafeBytes { checkPcap($0) } == nil)
    }

    /// Found by the pcap fuzzer: a byte-swapped capture with a record at 0xFFFFFFFF seconds
    /// read fine, but the same record written back in native order was refused ("impossible
    /// timestamp -1"): libpcap sign-extends the seconds of native files only. PcapReader now
    /// reads the field as the unsigned 32-bit value the format defines.
    @Test func pcapSecondsBeyond2038ReadInBothByteOrders() throws {
        let url = FuzzRegressionTests.fuzzRoot.appendingPathComponent("regressions/pcap/big-endian-seconds-0xffffffff.pcap")
        #expect(try Data(contentsOf: url).withUnsafeBytes { checkPcap($0) } == 1)
        let (_, records) = try PcapReader.readAll(path: url.path)
        #expect(records.first?.timestampNanoseconds == 4_294_967_295 * 1_000_000_000)
    }

    @Test func configSeedsLoadAndFail() throws {
        #expect(try read(.config, "two-rules").withUnsafeBytes { checkConfig($0) } == 2)
        #expect(try read(.config, "many-outputs").withUnsafeBytes { checkConfig($0) } == 8)
        #expect(try read(.config, "loop-two-rules").withUnsafeBytes { checkConfig($0) } == nil)
    }

    @Test func eventSeedsParse() throws {
        #expect(try read(.events, "every-kind").withUnsafeBytes { checkEvents($0) } == 6)
        #expect(try read(.events, "same-time").withUnsafeBytes { checkEvents($0) } == 2)
        #expect(try read(.events, "join-fail").withUnsafeBytes { checkEvents($0) } == 4)
        #expect(try read(.events, "unknown-event").withUnsafeBytes { checkEvents($0) } == nil)
        #expect(try read(.events, "segment-events").withUnsafeBytes { checkEvents($0) } == 8)
        #expect(try read(.events, "segment-bad-host").withUnsafeBytes { checkEvents($0) } == nil)
    }

    @Test func controlSeedsDecode() throws {
        #expect(try read(.control, "add").withUnsafeBytes { checkControl($0) })
        #expect(try read(.control, "reload").withUnsafeBytes { checkControl($0) })
        #expect(try !read(.control, "unknown-op").withUnsafeBytes { checkControl($0) })
    }
}
