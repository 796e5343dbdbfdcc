import Foundation
import PcapFile
import RelayControl
import RelayCore
import Testing
@testable import Sim

/// Flight recordings (issue 6) as simulator cases: a recording directory written here the way
/// the daemon writes it (manifest, config, events in the simulator's format, one raw-IPv4 pcap
/// per interface and worker) loads, merges the workers' frames by time, keeps events before
/// the first frame in place, stops at a cut, and refuses damaged input with a message that
/// names the file.
@Suite struct RecordingTests {
    static let start: UInt64 = 1_800_000_000_000_000_000
    static let ms: UInt64 = 1_000_000
    static let eth0 = InterfaceName("eth0")!

    /// An IPv4 datagram as AF_PACKET SOCK_DGRAM hands it over: no link header.
    static func packet(stream: Int, index: Int) -> [UInt8] {
        Array(TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 1, 1, UInt8(1 + stream)),
                                    port: UInt16(5001 + stream), payload: Array("s\(stream) #\(index)".utf8), id: UInt16(index)).dropFirst(14))
    }

    struct Layout {
        var workers = 2
        var rules = #"{"rules": [{"name": "cam1", "in": "eth0:239.1.1.1:5001", "out": ["eth1:239.10.1.1:6001:16"]}]}"#
        /// Stream 2's rule comes at 100 ms (before any frame) and cam1 goes at 350 ms.
        var events = """
            {"at_ms":100,"event":"rule_add","rule":{"in":"eth0:239.1.1.2:5002","name":"cam2","out":["eth1:239.10.1.2:6002:16"]}}
            {"at_ms":350.5,"event":"rule_remove","rule":"cam1"}

            """
        /// Frame i of each stream at 200 + 2i ms (stream 0) / 201 + 2i ms (stream 1), 100 each;
        /// worker i % 2 reads frame i.
        var frames = 100
        var completeUntil: UInt64?
        var endOffset: UInt64? = 1000 * RecordingTests.ms
    }

    /// Writes a recording as the daemon does.
    static func write(_ directory: String, _ layout: Layout = Layout()) throws {
        var manifest = RecordingManifest(startNs: start, clockOffsetNs: 0, workers: layout.workers, dispatch: "fanout",
                                         interfaces: [.init(index: 2, name: "eth0"), .init(index: 3, name: "eth1")], limitBytes: 1 << 20)
        manifest.endNs = layout.endOffset.map { start + $0 }
        manifest.completeUntilNs = layout.completeUntil.map { start + $0 }
        manifest.stopReason = layout.completeUntil == nil ? "stopped" : "limit reached"
        try manifest.json().write(to: URL(fileURLWithPath: directory + "/manifest.json"))
        try Data(layout.rules.utf8).write(to: URL(fileURLWithPath: directory + "/config.json"))
        try Data(layout.events.utf8).write(to: URL(fileURLWithPath: directory + "/events.jsonl"))
        let writers = try (0..<2).map { try PcapWriter(path: directory + "/ingress-eth0.w\($0).p\(100 + $0).pcap", linkType: .rawIP) }
        for index in 0..<layout.frames {
            for stream in 0..<2 {
                let time = start + (200 + 2 * UInt64(index) + UInt64(stream)) * ms
                try writers[index % 2].write(timestampNanoseconds: time, bytes: packet(stream: stream, index: index))
            }
        }
        for writer in writers { try writer.close() }
    }

    func transmitted(_ result: SimResult, _ input: String) -> UInt64? {
        result.report.rules.first { $0.input == input }?.outputs.first?.transmitted
    }

    @Test func loadsMergesAndReplaysARecording() throws {
        let directory = try temporaryDirectory("recording-good")
        try Self.write(directory)
        let recording = try Recording.load(directory: directory)
        let store = recording.simCase.input.store
        #expect(store.frames.count == 200)
        #expect(store.epoch == Self.start, "time zero is the recording's start, not the first frame")
        #expect(store.frames.first?.time == 200 * Self.ms)
        #expect(zip(store.frames, store.frames.dropFirst()).allSatisfy { $0.time <= $1.time }, "the workers' files are merged by time")
        #expect(store.frames.allSatisfy { $0.link == .rawIP && $0.interface == Self.eth0 })
        #expect(recording.simCase.input.events.map(\.at) == [100 * Self.ms, 350 * Self.ms + 500_000])
        #expect(recording.simCase.options.workers == 2)
        #expect(recording.notes.isEmpty, "\(recording.notes)")

        let result = try recording.simCase.run()
        #expect(result.passed, "\(result.violations.prefix(3))")
        // cam1 forwards stream 0 until 350.5 ms: frames at 200, 202, ..., 350 (76 of them).
        #expect(transmitted(result, "eth0:239.1.1.1:5001") == 76)
        // cam2 (added at 100 ms, before the first frame) forwards all of stream 1.
        #expect(transmitted(result, "eth0:239.1.1.2:5002") == 100)
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func underSwarmFaultsTheInvariantsHoldAndRunsRepeat(seed: UInt64) throws {
        let directory = try temporaryDirectory("recording-swarm-\(seed)")
        try Self.write(directory)
        var simCase = try Recording.load(directory: directory).simCase
        simCase.options.seed = seed
        simCase.options.swarm = true
        simCase.options.recordSteps = true
        let first = try simCase.run()
        #expect(first.passed, "seed \(seed): \(first.violations.prefix(3))")
        #expect(DeterminismCheck.firstDivergence(first, try simCase.run()) == nil)
    }

    @Test func aCutRecordingReplaysUpToTheCut() throws {
        let directory = try temporaryDirectory("recording-cut")
        var layout = Layout()
        layout.completeUntil = 300 * Self.ms
        layout.events += #"{"at_ms":320,"event":"iface_down","iface":"eth0"}"# + "\n"
        try Self.write(directory, layout)
        let recording = try Recording.load(directory: directory)
        // Frames before 300 ms: 50 of each stream.
        #expect(recording.simCase.input.store.frames.count == 100)
        #expect(recording.simCase.input.events.count == 1, "events at or after the cut are left out")
        #expect(recording.notes.contains { $0.contains("cut short") })
        let result = try recording.simCase.run()
        #expect(result.passed)
        #expect(transmitted(result, "eth0:239.1.1.1:5001") == 50)
    }

    @Test func savedAsACaseItReplaysTheSame() throws {
        let directory = try temporaryDirectory("recording-save")
        try Self.write(directory)
        let recording = try Recording.load(directory: directory)
        let first = try recording.simCase.run()
        let saved = directory + "/case"
        try recording.simCase.save(directory: saved)
        let loaded = try SimCase.load(directory: saved)
        #expect(loaded.input.store.epoch == Self.start, "case.json keeps the recording's time zero (epoch_ns)")
        #expect(loaded.input.events == recording.simCase.input.events)
        let again = try loaded.run()
        #expect(ExpectedOutcome(again) == ExpectedOutcome(first))
        // --trace would start the clock at the first frame: the printed command uses the case.
        #expect(loaded.replayCommand(directory: saved) == "mcrelay sim replay --case \(saved) --out-dir OUT")
    }

    @Test func recordedJoinFailuresAreReplayed() throws {
        let directory = try temporaryDirectory("recording-joinfail")
        var layout = Layout()
        // The live join of cam2's group failed once with ENODEV right when the rule came.
        layout.events = """
            {"at_ms":100,"event":"rule_add","rule":{"in":"eth0:239.1.1.2:5002","name":"cam2","out":["eth1:239.10.1.2:6002:16"]}}
            {"at_ms":100,"event":"join_fail","iface":"eth0","group":"239.1.1.2","errno":"ENODEV"}

            """
        try Self.write(directory, layout)
        let result = try Recording.load(directory: directory).simCase.run()
        #expect(result.report.control.joinErrors.values.reduce(0, +) == 1, "\(result.report.control.joinErrors)")
        #expect(result.passed)
        // The retry (100 ms later) succeeds, before stream 1's first frame at 201 ms.
        #expect(transmitted(result, "eth0:239.1.1.2:5002") == 100)
    }

    @Test func joinFailEventsRoundTrip() throws {
        let text = """
            {"at_ms":1,"event":"join_fail","iface":"eth0","group":"239.1.1.2","errno":"ENOBUFS"}
            {"at_ms":2,"event":"join_fail","iface":"eth0","group":"239.1.1.2","source":"198.18.1.1","errno":22}
            {"at_ms":3,"event":"join_fail","iface":"eth0","group":"239.1.1.2","errno":"EINVAL"}
            """
        let events = try EventScript.parse(text)
        #expect(events.count == 3)
        #expect(try EventScript.parse(EventScript.serialize(events)) == events)
        #expect(throws: SimError.self) { try EventScript.parse(#"{"at_ms":1,"event":"join_fail","iface":"eth0","group":"10.0.0.1","errno":"ENOBUFS"}"#) }
        #expect(throws: SimError.self) { try EventScript.parse(#"{"at_ms":1,"event":"join_fail","iface":"eth0","group":"239.1.1.1","errno":"ENOPE"}"#) }
    }

    // MARK: - Hostile input: clear errors that name what and where

    func loadError(_ directory: String) -> String {
        do {
            _ = try Recording.load(directory: directory)
            return ""
        } catch { return error.description }
    }

    @Test func missingDirectoryOrManifest() throws {
        #expect(loadError("/nonexistent/recording").contains("no such directory"))
        let directory = try temporaryDirectory("recording-nomanifest")
        try Self.write(directory)
        try FileManager.default.removeItem(atPath: directory + "/manifest.json")
        let message = loadError(directory)
        #expect(message.contains("no manifest.json") && message.contains("mcrelay record start"), "\(message)")
    }

    @Test func badManifest() throws {
        let directory = try temporaryDirectory("recording-badmanifest")
        try Self.write(directory)
        try Data(#"{"format": 1, "start_ns": "soon"}"#.utf8).write(to: URL(fileURLWithPath: directory + "/manifest.json"))
        let message = loadError(directory)
        #expect(message.contains("manifest.json") && message.contains("not a recording manifest"), "\(message)")
        try Data("{".utf8).write(to: URL(fileURLWithPath: directory + "/manifest.json"))
        #expect(loadError(directory).contains("manifest.json"))
    }

    @Test func truncatedPcap() throws {
        let directory = try temporaryDirectory("recording-truncated")
        try Self.write(directory)
        let path = directory + "/ingress-eth0.w1.p101.pcap"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 7).write(to: URL(fileURLWithPath: path))
        let message = loadError(directory)
        #expect(message.contains("ingress-eth0.w1.p101.pcap") && message.contains("damaged"), "\(message)")
        try Data([0xd4, 0xc3]).write(to: URL(fileURLWithPath: path))
        #expect(loadError(directory).contains("ingress-eth0.w1.p101.pcap"))
    }

    @Test func badEvents() throws {
        let directory = try temporaryDirectory("recording-badevents")
        var layout = Layout()
        layout.events = #"{"at_ms":100,"event":"rule_add","rule":{"in":"eth0:239.1.1.2:5002","out":[]}}"# + "\n" + "not json\n"
        try Self.write(directory, layout)
        let message = loadError(directory)
        #expect(message.contains("events.jsonl:1"), "\(message)")
        try FileManager.default.removeItem(atPath: directory + "/events.jsonl")
        #expect(loadError(directory).contains("no events.jsonl"))
    }

    @Test func strayFrameFileName() throws {
        let directory = try temporaryDirectory("recording-badname")
        try Self.write(directory)
        try Data().write(to: URL(fileURLWithPath: directory + "/ingress-eth0.pcap"))
        #expect(loadError(directory).contains("ingress-eth0.pcap"))
    }

    @Test func frameFileNames() {
        #expect(RecordingFormat.parsePcapFileName(RecordingFormat.pcapFileName(interface: "eth0.100", worker: 3, pid: 4242))! == ("eth0.100", 3))
        #expect(RecordingFormat.parsePcapFileName("ingress-eth0.w1.pcap") == nil)
        #expect(RecordingFormat.parsePcapFileName("ingress-.w1.p2.pcap") == nil)
        #expect(RecordingFormat.parsePcapFileName("ingress-eth0.wx.p2.pcap") == nil)
    }
}
