import Foundation
import LinuxIO
import PcapFile
import RelayControl
import RelayCore
import Testing
#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// The flight recorder's writers without a daemon: the worker's pcap files (format, bounds,
/// grants) and the supervisor's directory, manifest, events and frame pool.
@Suite("Flight recorder writers")
struct FlightRecorderTests {
    static func directory(_ label: String) throws -> String {
        let path = "/tmp/mcrelay-recorder-tests-\(getpid())-\(label)"
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func monotonicNow() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    static func frame(_ index: Int, size: Int = 100) -> [UInt8] {
        (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ index) }
    }

    static func fileSize(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    @Test func framesAreWrittenAsRawIPv4PcapWithTheRecordingClock() throws {
        let directory = try Self.directory("format")
        let recorder = FrameRecorder(assignment: WorkerRecordingAssignment(directory: directory, budgetBytes: 1 << 20, clockOffsetNs: 0, session: 7),
                                     worker: 1, pid: 42)
        recorder.assign(interfaces: ["in0", "in1"])
        let before = Self.monotonicNow()
        for index in 0..<50 {
            Self.frame(index, size: 60 + index).withUnsafeBytes { recorder.record($0, slot: index % 2) }
        }
        // A new plan renumbers the inputs: slot 0 is in1 now, and in2 is new.
        recorder.assign(interfaces: ["in1", "in2"])
        Self.frame(99).withUnsafeBytes { recorder.record($0, slot: 0) }
        let after = Self.monotonicNow()
        let status = recorder.close()
        #expect(status.frames == 51 && status.lost == 0 && status.fullAtNs == nil && status.session == 7)

        var total: UInt64 = 0
        for (interface, expected) in [("in0", Array(stride(from: 0, to: 50, by: 2))), ("in1", Array(stride(from: 1, to: 50, by: 2)) + [99]), ("in2", [])] {
            let path = directory + "/" + RecordingFormat.pcapFileName(interface: interface, worker: 1, pid: 42)
            total += Self.fileSize(path)
            let (link, records) = try PcapReader.readAll(path: path)
            #expect(link == .rawIP)
            #expect(records.map(\.bytes) == expected.map { Self.frame($0, size: $0 == 99 ? 100 : 60 + $0) }, "\(interface): frames byte-exact, in order")
            #expect(records.allSatisfy { $0.timestampNanoseconds >= before && $0.timestampNanoseconds <= after })
            #expect(zip(records, records.dropFirst()).allSatisfy { $0.timestampNanoseconds <= $1.timestampNanoseconds })
        }
        #expect(status.bytes == total, "the status counts exactly what is on disk")
    }

    @Test func buffersHandedToTheWriterThreadArriveWholeAndInOrder() throws {
        let directory = try Self.directory("writer")
        let recorder = FrameRecorder(assignment: WorkerRecordingAssignment(directory: directory, budgetBytes: 64 << 20, clockOffsetNs: 0, session: 1),
                                     worker: 0, pid: 3)
        recorder.assign(interfaces: ["in0"])
        // 20 batches of 200 frames, each batch handed over (or kept while the writer is busy).
        for batch in 0..<20 {
            for index in 0..<200 { Self.frame(batch * 200 + index, size: 300).withUnsafeBytes { recorder.record($0, slot: 0) } }
            recorder.flush()
        }
        let status = recorder.close()
        #expect(status.frames == 4000 && status.lost == 0 && status.error == nil, "\(status)")
        let records = try PcapReader.readAll(path: directory + "/" + RecordingFormat.pcapFileName(interface: "in0", worker: 0, pid: 3)).records
        #expect(records.count == 4000)
        #expect(records.enumerated().allSatisfy { $0.element.bytes == Self.frame($0.offset, size: 300) }, "every frame byte-exact, in order")
    }

    @Test func theBudgetIsNeverExceeded() throws {
        let directory = try Self.directory("budget")
        // Room for the header and three 100-byte frames (16-byte record headers).
        let budget: UInt64 = 24 + 3 * 116
        let recorder = FrameRecorder(assignment: WorkerRecordingAssignment(directory: directory, budgetBytes: budget, clockOffsetNs: 0, session: 1),
                                     worker: 0, pid: 1)
        recorder.assign(interfaces: ["in0"])
        for index in 0..<10 { Self.frame(index).withUnsafeBytes { recorder.record($0, slot: 0) } }
        #expect(recorder.isFull)
        let status = recorder.close()
        #expect(status.frames == 3 && status.lost == 1, "recording stops at the first frame that does not fit: \(status)")
        #expect(status.fullAtNs != nil)
        let path = directory + "/" + RecordingFormat.pcapFileName(interface: "in0", worker: 0, pid: 1)
        #expect(Self.fileSize(path) == budget)
        #expect(try PcapReader.readAll(path: path).records.count == 3)
    }

    @Test func grantsRaiseTheBudgetAndHalfwayAsksForMore() throws {
        let directory = try Self.directory("grants")
        let recorder = FrameRecorder(assignment: WorkerRecordingAssignment(directory: directory, budgetBytes: 24 + 4 * 116, clockOffsetNs: 0, session: 1),
                                     worker: 0, pid: 1)
        recorder.assign(interfaces: ["in0"])
        _ = recorder.takeStatus()
        Self.frame(0).withUnsafeBytes { recorder.record($0, slot: 0) }
        #expect(recorder.takeStatus() == nil, "below half: no message")
        Self.frame(1).withUnsafeBytes { recorder.record($0, slot: 0) }
        #expect(recorder.takeStatus()?.bytes == 24 + 2 * 116, "past half: ask the supervisor for more")
        recorder.raiseBudget(to: 24 + 10 * 116)
        for index in 2..<10 { Self.frame(index).withUnsafeBytes { recorder.record($0, slot: 0) } }
        #expect(!recorder.isFull)
        #expect(recorder.close().frames == 10)
    }

    @Test func anUnwritableDirectoryIsReportedNotFatal() throws {
        let recorder = FrameRecorder(assignment: WorkerRecordingAssignment(directory: "/nonexistent/rec", budgetBytes: 1 << 20, clockOffsetNs: 0, session: 1),
                                     worker: 0, pid: 1)
        recorder.assign(interfaces: ["in0"])
        Self.frame(0).withUnsafeBytes { recorder.record($0, slot: 0) }
        #expect(recorder.isFull)
        let status = recorder.close()
        #expect(status.error?.contains("/nonexistent/rec") == true, "\(status)")
        #expect(status.frames == 0)
    }

    // MARK: - Supervisor side

    static func start(_ directory: String, limit: UInt64 = 1 << 20, workers: Int = 2) throws -> FlightRecorder {
        try FlightRecorder(directory: directory, limitBytes: limit, session: 9, now: Instant(nanoseconds: 5_000_000_000), workers: workers,
                           dispatch: .fanout, rules: [], interfaces: [.init(index: 1, name: "lo")], membershipLimit: 20)
    }

    @Test func directoryManifestAndEvents() throws {
        let directory = try Self.directory("supervisor") + "/rec"
        let recorder = try Self.start(directory)
        #expect(throws: SystemError.self, "a directory with files in it is refused") { _ = try Self.start(directory) }
        let rule = RuleSpec(name: "cam1", input: InputSpec(interface: InterfaceName("in0")!, group: IPv4Address(239, 1, 1, 1), port: 5001),
                            outputs: [OutputSpec(interface: InterfaceName("out0")!, destination: IPv4Address(239, 10, 1, 1), port: 6001, ttl: 16)])
        #expect(recorder.event("rule_add", at: Instant(nanoseconds: 5_250_000_001), [("rule", FlightRecorder.json(rule))]))
        #expect(recorder.event("worker_crash", at: Instant(nanoseconds: 6_000_000_000), [("worker", "1")]))
        recorder.stop(reason: "stopped", at: Instant(nanoseconds: 7_000_000_000))
        #expect(!recorder.event("iface_up", at: Instant(nanoseconds: 7_500_000_000), [("iface", FlightRecorder.json("in0"))]), "nothing after the stop")

        let events = try String(contentsOfFile: directory + "/events.jsonl", encoding: .utf8)
        #expect(events == #"{"at_ms":250.000001,"event":"rule_add","rule":{"in":"in0:239.1.1.1:5001","name":"cam1","out":["out0:239.10.1.1:6001:16"]}}"#
            + "\n" + #"{"at_ms":1000,"event":"worker_crash","worker":1}"# + "\n")
        let manifest = try JSONDecoder().decode(RecordingManifest.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/manifest.json")))
        #expect(manifest.endNs == manifest.startNs + 2_000_000_000)
        #expect(manifest.stopReason == "stopped" && manifest.workers == 2 && manifest.membershipLimit == 20 && manifest.completeUntilNs == nil)
        #expect(FileManager.default.fileExists(atPath: directory + "/config.json"))
    }

    @Test func framePoolGrantsNeverExceedTheLimit() throws {
        let directory = try Self.directory("pool") + "/rec"
        let limit: UInt64 = 256 << 10
        let recorder = try Self.start(directory, limit: limit, workers: 3)
        var budgets = (0..<3).map { recorder.assignment(worker: $0).budgetBytes }
        // Worker 0 is busy, the others idle: it keeps using all it gets and asking for more.
        var rounds = 0
        while rounds < 100 {
            rounds += 1
            let (_, grant) = recorder.update(worker: 0, WorkerRecordingStatus(session: 9, bytes: budgets[0]))
            guard let grant else { break }
            #expect(grant.budgetBytes > budgets[0])
            budgets[0] = grant.budgetBytes
        }
        #expect(budgets.reduce(0, +) == recorder.framePool, "the whole pool is handed out, no more")
        #expect(budgets[0] > budgets[1] * 4, "the busy worker got most of it: \(budgets)")
        // A restarted worker gives back what it was granted and did not use.
        recorder.workerRestarted(1)
        #expect(recorder.poolLeft == budgets[1])
        // A worker that found no room cuts the recording where it happened.
        let (cut, grant) = recorder.update(worker: 0, WorkerRecordingStatus(session: 9, bytes: budgets[0], lost: 1, fullAtNs: 123))
        #expect(cut == 123 && grant == nil)
        // A late status of another session is ignored.
        #expect(recorder.update(worker: 2, WorkerRecordingStatus(session: 8, bytes: 1 << 30)).cut == nil)
        #expect(recorder.view.bytes < limit)
    }

    @Test func theEventsReserveBoundsTheEventsFile() throws {
        let directory = try Self.directory("eventsfull") + "/rec"
        let recorder = try Self.start(directory, limit: 64 << 10)
        var written = 0
        while recorder.event("iface_up", at: Instant(nanoseconds: 6_000_000_000), [("iface", FlightRecorder.json("in0"))]) { written += 1 }
        #expect(written > 100)
        let total = try FileManager.default.contentsOfDirectory(atPath: directory).map { Self.fileSize(directory + "/" + $0) }.reduce(0, +)
        #expect(total + recorder.framePool <= 64 << 10, "events, manifest and config stay within their reserve")
    }
}
