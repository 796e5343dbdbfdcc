#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import Foundation
import RelayControl
import RelayCore

/// The supervisor's half of the flight recorder (issue 6): the recording directory, its
/// manifest, the initial rules, the control-plane events as they happen, and the byte budget.
///
/// Bound: `limitBytes` over every file. The supervisor keeps `eventsReserve` (1/16 of the
/// limit, at least 32 KiB) for the manifest, the config and the events; each worker may write
/// an equal share of the rest. When any part is spent the whole recording stops (it is not
/// rotated: a recording keeps its beginning, which holds the state everything after it
/// depends on), and the manifest's `complete_until_ns` marks the cut so a replay stops there.
///
/// Times: CLOCK_MONOTONIC + `clockOffsetNs` (CLOCK_REALTIME - CLOCK_MONOTONIC at the start),
/// for events here and frames in the workers alike, so they interleave as they happened and
/// a wall-clock jump during the recording changes nothing.
public final class FlightRecorder {
    public let directory: String
    public let limitBytes: UInt64
    public let session: UInt64
    public private(set) var manifest: RecordingManifest
    let eventsReserve: UInt64
    public let workerShare: UInt64
    private var eventsFD: Int32 = -1
    private var supervisorBytes: UInt64 = 0
    public private(set) var events: UInt64 = 0
    /// Per worker slot: bytes of earlier incarnations, and the current incarnation's status.
    private var earlierBytes: [UInt64]
    private var earlierFrames: [UInt64]
    private var earlierLost: [UInt64]
    private var current: [WorkerRecordingStatus?]
    public private(set) var stopReason: String?

    /// Creates DIR (which must not exist or be empty) and writes the manifest and the rules.
    public init(directory: String, limitBytes: UInt64, session: UInt64, now: Instant, workers: Int, dispatch: DispatchMode,
                rules: [RuleSpec], interfaces: [RecordingManifest.Interface], membershipLimit: Int? = nil) throws(SystemError) {
        self.directory = directory
        self.limitBytes = limitBytes
        self.session = session
        eventsReserve = max(limitBytes / 16, 32 << 10)
        workerShare = limitBytes > eventsReserve ? (limitBytes - eventsReserve) / UInt64(max(workers, 1)) : 0
        earlierBytes = Array(repeating: 0, count: workers)
        earlierFrames = Array(repeating: 0, count: workers)
        earlierLost = Array(repeating: 0, count: workers)
        current = Array(repeating: nil, count: workers)

        var realtime = timespec()
        clock_gettime(CLOCK_REALTIME, &realtime)
        let offset = Int64(realtime.tv_sec) * 1_000_000_000 + Int64(realtime.tv_nsec) - Int64(now.nanoseconds)
        manifest = RecordingManifest(startNs: UInt64(Int64(now.nanoseconds) + offset), clockOffsetNs: offset, workers: workers,
                                     dispatch: dispatch.rawValue, interfaces: interfaces, limitBytes: limitBytes)
        manifest.membershipLimit = membershipLimit

        if mkdir(directory, 0o755) != 0 {
            guard errno == EEXIST else { throw .last("mkdir \(directory)") }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["?"]
            guard entries.isEmpty else { throw SystemError("record into \(directory): the directory is not empty; choose a new one", errno: EEXIST) }
        }
        let config = ConfigFile(rules: rules).serialized() + Data("\n".utf8)
        try write(RecordingFormat.configFile, config)
        // Counted once, with room for the fields the final rewrite adds.
        supervisorBytes += UInt64(try writeManifest()) + 512
        let eventsPath = directory + "/" + RecordingFormat.eventsFile
        eventsFD = open(eventsPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        guard eventsFD >= 0 else { throw .last("open \(eventsPath)") }
    }

    deinit { Descriptors.close(eventsFD) }

    public var isActive: Bool { stopReason == nil }

    /// A supervisor instant on the recording clock.
    public func time(_ instant: Instant) -> UInt64 { UInt64(Int64(instant.nanoseconds) + manifest.clockOffsetNs) }

    /// What a (re)started worker is told: its share minus what its earlier incarnations wrote.
    public func assignment(worker: Int) -> WorkerRecordingAssignment {
        let used = worker < earlierBytes.count ? earlierBytes[worker] : workerShare
        return WorkerRecordingAssignment(directory: directory, budgetBytes: workerShare > used ? workerShare - used : 0,
                                         clockOffsetNs: manifest.clockOffsetNs, session: session)
    }

    /// A worker slot starts a new process: fold the old one's numbers into the slot's total.
    public func workerRestarted(_ worker: Int) {
        guard worker < current.count, let status = current[worker] else { return }
        earlierBytes[worker] += status.bytes
        earlierFrames[worker] += status.frames
        earlierLost[worker] += status.lost
        current[worker] = nil
    }

    /// A worker's status; returns the cut time when the worker ran out of room (or failed).
    public func update(worker: Int, _ status: WorkerRecordingStatus) -> UInt64? {
        guard status.session == session, worker < current.count else { return nil }
        current[worker] = status
        return status.fullAtNs
    }

    // MARK: - Events (the simulator's events format)

    /// Appends one event line; false when the events reserve is spent (the caller stops the
    /// recording) or the write failed.
    @discardableResult
    public func event(_ name: String, at instant: Instant, _ fields: [(String, String)]) -> Bool {
        guard isActive, eventsFD >= 0 else { return false }
        let at = time(instant)
        let relative = at >= manifest.startNs ? at - manifest.startNs : 0
        var line = "{\"at_ms\":\(Self.milliseconds(relative)),\"event\":\"\(name)\""
        for (key, json) in fields { line += ",\"\(key)\":\(json)" }
        line += "}\n"
        let bytes = Array(line.utf8)
        guard supervisorBytes + UInt64(bytes.count) + 4096 <= eventsReserve else { return false }
        do { try Descriptors.writeAll(eventsFD, bytes) } catch { return false }
        supervisorBytes += UInt64(bytes.count)
        events += 1
        return true
    }

    public static func json(_ text: String) -> String {
        String(decoding: ControlProtocol.encodeLine(text).dropLast(), as: UTF8.self)
    }

    public static func json(_ rule: RuleSpec) -> String {
        String(decoding: ControlProtocol.encodeLine(RuleText(rule)).dropLast(), as: UTF8.self)
    }

    /// Milliseconds with up to six decimals, exactly (the simulator reads nanoseconds back).
    static func milliseconds(_ nanoseconds: UInt64) -> String {
        let whole = nanoseconds / 1_000_000, fraction = nanoseconds % 1_000_000
        guard fraction != 0 else { return "\(whole)" }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    // MARK: - Stopping

    /// Ends the recording: closes the events file and rewrites the manifest with the end,
    /// the reason and (when cut short) the time up to which it is complete.
    public func stop(reason: String, at instant: Instant, completeUntil: UInt64? = nil) {
        guard isActive else { return }
        stopReason = reason
        Descriptors.close(eventsFD)
        eventsFD = -1
        manifest.endNs = time(instant)
        manifest.stopReason = reason
        if let completeUntil { manifest.completeUntilNs = min(completeUntil, manifest.endNs!) }
        let lost = view.framesLost
        manifest.framesLost = lost > 0 ? lost : nil
        _ = try? writeManifest()
    }

    public var view: RecordingView {
        var bytes = supervisorBytes, frames: UInt64 = 0, lost: UInt64 = 0
        for worker in current.indices {
            bytes += earlierBytes[worker] + (current[worker]?.bytes ?? 0)
            frames += earlierFrames[worker] + (current[worker]?.frames ?? 0)
            lost += earlierLost[worker] + (current[worker]?.lost ?? 0)
        }
        return RecordingView(active: isActive, directory: directory, limitBytes: limitBytes, bytes: bytes, frames: frames,
                             events: events, framesLost: lost, stopReason: stopReason)
    }

    private func writeManifest() throws(SystemError) -> Int {
        let data = manifest.json()
        // Written whole to a temporary name and renamed: a reader never sees half a manifest.
        try write(RecordingFormat.manifestFile + ".tmp", data, counted: false)
        guard rename(directory + "/" + RecordingFormat.manifestFile + ".tmp", directory + "/" + RecordingFormat.manifestFile) == 0 else {
            throw .last("rename \(directory)/\(RecordingFormat.manifestFile)")
        }
        return data.count
    }

    private func write(_ name: String, _ data: Data, counted: Bool = true) throws(SystemError) {
        let path = directory + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .last("open \(path)") }
        defer { Descriptors.close(fd) }
        try Descriptors.writeAll(fd, Array(data))
        if counted { supervisorBytes += UInt64(data.count) }
    }
}
