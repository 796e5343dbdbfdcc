import Foundation
import FuzzChecks
import PcapFile
import RelayCore
import Testing

/// Seeds of the `listener` fuzz target (committed in Fuzz/corpus/listener/). Regenerate with
///
///     FUZZ_WRITE_SEEDS=1 swift test --filter ListenerSeeds
///
/// Valid IGMPv1/v2/v3 and MLDv1/v2 frames of every message kind, tagged and padded ones, the
/// real trace's IGMPv2 queries, frames refused for each IP-layer reason, and runs of frames
/// for the state machine.
@Suite struct ListenerSeeds {
    static let mac = MACAddress(0x02, 0, 0, 0, 0, 0x42)
    static let v4Source = IPAddress.v4(IPv4Address(10, 0, 0, 1))
    static let v6Source = IPAddress.v6(IPv6Address(0xFE80, 0, 0, 0, 0, 0, 0, 1))

    static func messages(_ family: AddressFamily) -> [(String, ListenerMessage)] {
        let v4 = family == .ipv4
        let group: IPAddress = v4 ? .v4(IPv4Address(239, 1, 1, 1)) : .v6(IPv6Address(0xFF3E, 0, 0, 0, 0, 0, 0x8000, 1))
        let s1: IPAddress = v4 ? .v4(IPv4Address(198, 18, 0, 1)) : .v6(IPv6Address(0x2001, 0xDB8, 0, 0, 0, 0, 0, 1))
        let s2: IPAddress = v4 ? .v4(IPv4Address(198, 18, 0, 2)) : .v6(IPv6Address(0x2001, 0xDB8, 0, 0, 0, 0, 0, 2))
        var list: [(String, ListenerMessage)] = [
            ("v3-general-query", .query(ListenerQuery(version: .v3, maxResponseCode: v4 ? 100 : 10000, robustness: 2, queryIntervalCode: 125))),
            ("v3-group-query", .query(ListenerQuery(version: .v3, group: group, maxResponseCode: 10, suppressRouterSideProcessing: true,
                                                    robustness: 2, queryIntervalCode: 125))),
            ("v3-source-query", .query(ListenerQuery(version: .v3, group: group, maxResponseCode: 10, robustness: 2,
                                                     queryIntervalCode: 125, sources: [s1, s2]))),
            ("v2-general-query", .query(ListenerQuery(version: .v2, maxResponseCode: v4 ? 100 : 10000))),
            ("v2-report", .report(.v2, group: group)),
            ("leave", .leave(group: group)),
            ("v3-report-all-types", .v3Report(GroupRecordType.allCases.map { GroupRecord($0, group: group, sources: $0.rawValue % 2 == 0 ? [] : [s1]) })),
            ("v3-report-aux", .v3Report([GroupRecord(.modeIsInclude, group: group, sources: [s1, s2], auxiliaryData: [1, 2, 3, 4])])),
        ]
        if v4 {
            list.append(("v1-report", .report(.v1, group: group)))
            list.append(("v1-query", .query(ListenerQuery(version: .v1, maxResponseCode: 0))))
        }
        return list
    }

    static func seeds() -> [(String, [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        for (family, source) in [(AddressFamily.ipv4, v4Source), (.ipv6, v6Source)] {
            for (name, message) in messages(family) {
                let frame = ListenerFrame.build(message, sourceMAC: mac, source: source)
                seeds.append(("\(family)-\(name)", [0] + frame))
            }
            var tagged = ListenerFrame.build(.report(.v2, group: messages(family)[4].1.destination(family)), sourceMAC: mac, source: source)
            tagged.insert(contentsOf: [0x81, 0x00, 0x00, 0x07], at: 12)
            seeds.append(("\(family)-vlan-padded", [0] + tagged + Array(repeating: 0, count: 20)))
            var corrupt = ListenerFrame.build(messages(family)[0].1, sourceMAC: mac, source: source)
            corrupt[corrupt.count - 1] ^= 0xFF
            seeds.append(("\(family)-bad-checksum", [0] + corrupt))
            seeds.append(("\(family)-truncated", [0] + corrupt.dropLast(3)))
        }
        // The real trace's IGMPv2 queries: one with a bad IP header checksum, one good.
        for (name, high) in [("trace-v2-query-bad-ip-checksum", UInt8(0x2F)), ("trace-v2-query", 0x2E)] {
            seeds.append((name, [0, 0x01, 0x00, 0x5E, 0x00, 0x00, 0x01, 0x00, 0x22, 0x33, 0x44, 0x55, 0x66, 0x08, 0x00, 0x45, 0x00,
                                 0x00, 0x1C, 0x65, 0x51, 0x00, 0x00, 0x01, 0x02, high, 0xB4, 0xEB, 0xF7, 0x59, 0xE2, 0xE0, 0x00,
                                 0x00, 0x01, 0x11, 0x64, 0xEE, 0x9B, 0x00, 0x00, 0x00, 0x00] + Array(repeating: 0, count: 18)))
        }
        // Runs: a length byte (frame length - 14), a delay byte (100 ms), the frame.
        func run(_ frames: [([UInt8], UInt8)]) -> [UInt8] {
            [1] + frames.flatMap { frame, delay in [UInt8(frame.count - 14), delay] + frame }
        }
        let v4 = messages(.ipv4), v6 = messages(.ipv6)
        let host4 = IPAddress.v4(IPv4Address(10, 0, 0, 100)), host6 = IPAddress.v6(IPv6Address(0xFE80, 0, 0, 0, 0, 0, 0, 100))
        func f(_ message: ListenerMessage, _ source: IPAddress) -> [UInt8] { ListenerFrame.build(message, sourceMAC: mac, source: source) }
        seeds.append(("run-join-leave-v4", run([(f(v4[6].1, host4), 1), (f(v4[4].1, host4), 10), (f(v4[5].1, host4), 30)])))
        seeds.append(("run-querier-v4", run([(f(v4[0].1, v4Source), 5), (f(v4[1].1, v4Source), 3), (f(v4[2].1, v4Source), 200)])))
        seeds.append(("run-mld", run([(f(v6[6].1, host6), 1), (f(v6[0].1, v6Source), 2), (f(v6[2].1, v6Source), 4), (f(v6[5].1, host6), 90)])))
        return seeds
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["FUZZ_WRITE_SEEDS"] == "1")) func writeSeeds() throws {
        let folder = FuzzRegressionTests.fuzzRoot.appendingPathComponent("corpus/listener")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (name, bytes) in Self.seeds() { try Data(bytes).write(to: folder.appendingPathComponent(name)) }
    }

    /// The committed seeds reach every message kind of both families and the refusals.
    @Test func seedsReachEveryMessageKind() throws {
        var outcomes: [String?: Int] = [:]
        for file in FuzzRegressionTests.inputs("corpus", .listener) {
            outcomes[try Data(contentsOf: file).withUnsafeBytes { checkListener($0) }, default: 0] += 1
        }
        for expected in ["ipv4 query v1", "ipv4 query v2", "ipv4 query v3", "ipv4 query v3 specific", "ipv4 query v3 specific sources",
                         "ipv4 report v1", "ipv4 report v2", "ipv4 report v3", "ipv4 leave",
                         "ipv6 query v2", "ipv6 query v3", "ipv6 query v3 specific sources", "ipv6 report v2", "ipv6 report v3", "ipv6 leave"] {
            #expect(outcomes[expected, default: 0] > 0, "no seed decodes as \(expected): \(outcomes)")
        }
        #expect(outcomes[nil, default: 0] >= 5, "refused seeds: \(outcomes)")
        #expect(outcomes.keys.contains { $0?.hasSuffix("groups") == true }, "runs: \(outcomes)")
    }

    /// Every frame of the real captures through `ListenerFrame.extract`: the IGMPv2 general
    /// queries of tcpreplay-test.pcap come out (the one with a bad IP header checksum refused
    /// for it), everything else is refused as not IGMP/MLD, and nothing traps.
    @Test func realCapturesThroughTheExtractor() throws {
        var outcomes: [String: Int] = [:]
        for file in ["tcpreplay-test", "tcpreplay-fragroute"] {
            let path = FuzzRegressionTests.fuzzRoot.deletingLastPathComponent().appendingPathComponent("traces/real/\(file).pcap").path
            let (_, records) = try PcapReader.readAll(path: path)
            for record in records {
                switch ListenerFrame.extract(record.bytes) {
                case let .success(received):
                    #expect(received.message == .query(ListenerQuery(version: .v2, maxResponseCode: 100)))
                    #expect(received.destination == .v4(IPv4Address(224, 0, 0, 1)) && !received.routerAlert)
                    outcomes["\(file) query", default: 0] += 1
                case let .failure(reason):
                    outcomes["\(file) \(reason)", default: 0] += 1
                }
            }
        }
        #expect(outcomes["tcpreplay-test query"] == 2, "\(outcomes)")
        #expect(outcomes["tcpreplay-test badIPChecksum"] == 1, "\(outcomes)")
        #expect(outcomes.keys.allSatisfy { $0.hasSuffix("query") || $0.hasSuffix("notListenerProtocol") || $0.hasSuffix("badIPChecksum")
                                           || $0.hasSuffix("fragment") || $0.hasSuffix("truncated") || $0.hasSuffix("badIPHeader") },
                "\(outcomes)")
    }
}
