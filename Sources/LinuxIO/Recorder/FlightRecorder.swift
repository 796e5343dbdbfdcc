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
/// limit, at least 32 KiB) for the manifest, the config and the events; the rest is the frame
/// pool, handed to the workers in chunks (a quarter of a fair share, at least 16 KiB): a
/// worker asks for more (a status message) when half its room is used, so busy workers get
/// more than idle ones and the sum of grants never exceeds the pool. When a worker finds no
/// room, or the events reserve is spent, the whole recording stops (it is not rotated: a
/// recording keeps its beginning, which holds the state everything after it depends on), and
/// the manifest's `complete_until_ns` marks the cut so a replay stops there.
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
    /// Bytes for frames, all workers together, and what is granted of it so far.
    public let framePool: UInt64
    private var granted: UInt64 = 0
    let chunk: UInt64
    /// Per worker slot: what the current process may write.
    private var eventsFD: Int32 = -1
    private var supervisorBytes: UInt64 = 0
    public private(set) var events: UInt64 = 0
    /// Per worker slot: bytes of earlier incarnations, and the current incarnation's status.
    private var budgets: [UInt64]
    private var earlierBytes: [UInt64]
    private var earlierFrames: [UInt64]
    private var earlierLost: [UInt64]
    private var current: [WorkerRecordingStatus?]
    public private(set) var stopReason: String?
    /// Why the last `event` call failed.
    public private(set) var eventsProblem: String?

    /// Creates DIR (which must not exist or be empty) and writes the manifest and the rules.
    public init(directory: String, limitBytes: UInt64, session: UInt64, now: Instant, workers: Int, dispatch: DispatchMode,
                rules: [RuleSpec], interfaces: [RecordingManifest.Interface], membershipLimit: Int? = nil,
                membershipLimitIPv6: Int? = nil) throws(SystemError) {
        self.directory = directory
        self.limitBytes = limitBytes
        self.session = session
        eventsReserve = max(limitBytes / 16, 32 << 10)
        framePool = limitBytes > eventsReserve ? limitBytes - eventsReserve : 0
        // At least 16 KiB: a worker asks for more with half of it left, and the answer must
        // come back (one supervisor loop turn) before that half is used.
        chunk = max(framePool / UInt64(max(workers, 1) * 4), 16 << 10)
        budgets = Array(repeating: 0, count: workers)
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
        manifest.membershipLimitIPv6 = membershipLimitIPv6
        // The egress settings the workers run with (the daemon passes them in the environment).
        manifest.egress = getenv(EgressMode.environmentVariable).map { String(cString: $0) }.flatMap(EgressMode.init(rawValue:))?.rawValue

        if mkdir(directory, 0o755) != 0 {
            guard errno == EEXIST else { throw .last("mkdir \(directory)") }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["?"]
            guard entries.isEmpty else { throw SystemError("record into \(directory): the directory is not empty; choose a new one", errno: EEXIST) }
        }
        let config = ConfigFile(rules: rules).serialized() + Data("\n".utf8)
        try write(RecordingFormat.configFile, config)
        // Counted once, with room for the fields the final rewrite adds.
        supervisorBytes += UInt64(try writeManifest()) + 512
        guard supervisorBytes + 4096 <= eventsReserve else {
            throw SystemError("record into \(directory): the rules alone take \(supervisorBytes) bytes of the \(eventsReserve) kept for "
                + "the manifest, rules and events; raise the limit", errno: ENOSPC)
        }
        let eventsPath = directory + "/" + RecordingFormat.eventsFile
        eventsFD = open(eventsPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        guard eventsFD >= 0 else { throw .last("open \(eventsPath)") }
    }

    deinit { Descriptors.close(eventsFD) }

    public var isActive: Bool { stopReason == nil }

    /// The directory and the files the supervisor created in it (for `--user`: they change
    /// owner with the daemon before it drops its privileges).
    public var ownedPaths: [String] {
        [directory] + [RecordingFormat.manifestFile, RecordingFormat.configFile, RecordingFormat.eventsFile].map { directory + "/" + $0 }
    }

    /// A supervisor instant on the recording clock.
    public func time(_ instant: Instant) -> UInt64 { UInt64(Int64(instant.nanoseconds) + manifest.clockOffsetNs) }

    /// What a (re)started worker is told: a first chunk of room.
    public func assignment(worker: Int) -> WorkerRecordingAssignment {
        if worker < budgets.count, budgets[worker] == 0 { budgets[worker] = grant() }
        return WorkerRecordingAssignment(directory: directory, budgetBytes: worker < budgets.count ? budgets[worker] : 0,
                                         clockOffsetNs: manifest.clockOffsetNs, session: session)
    }

    /// Frame room not granted to any worker yet.
    public var poolLeft: UInt64 { framePool - granted }

    private func grant() -> UInt64 {
        let room = min(chunk, framePool - granted)
        granted += room
        return room
    }

    /// A worker slot starts a new process: fold the old one's numbers into the slot's total;
    /// the room it was granted and did not use goes back to the pool.
    public func workerRestarted(_ worker: Int) {
        guard worker < current.count else { return }
        let used = current[worker]?.bytes ?? 0
        granted -= budgets[worker] - min(used, budgets[worker])
        budgets[worker] = 0
        earlierBytes[worker] += used
        earlierFrames[worker] += current[worker]?.frames ?? 0
        earlierLost[worker] += current[worker]?.lost ?? 0
        current[worker] = nil
    }

    /// A worker's status: the cut time when it could not record a frame, and a raised budget
    /// to send it when it used half its room and the pool has more.
    public func update(worker: Int, _ status: WorkerRecordingStatus) -> (cut: UInt64?, grant: WorkerRecordingAssignment?) {
        guard status.session == session, worker < current.count else { return (nil, nil) }
        current[worker] = status
        if let cut = status.fullAtNs { return (cut, nil) }
        guard isActive, status.bytes * 2 >= budgets[worker], granted < framePool else { return (nil, nil) }
        budgets[worker] += grant()
        return (nil, assignment(worker: worker))
    }

    // MARK: - Events (the simulator's events format)

    /// Appends one event line; false when the events reserve is spent or the write failed
    /// (`eventsProblem` says which; the caller stops the recording).
    @discardableResult
    public func event(_ name: String, at instant: Instant, _ fields: [(String, String)]) -> Bool {
        guard isActive, eventsFD >= 0 else { return false }
        let at = time(instant)
        let relative = at >= manifest.startNs ? at - manifest.startNs : 0
        var line = "{\"at_ms\":\(Self.milliseconds(relative)),\"event\":\"\(name)\""
        for (key, json) in fields { line += ",\"\(key)\":\(json)" }
        line += "}\n"
        let bytes = Array(line.utf8)
        guard supervisorBytes + UInt64(bytes.count) + 4096 <= eventsReserve else {
            eventsProblem = "limit reached"
            return false
        }
        do { try Descriptors.writeAll(eventsFD, bytes) } catch {
            eventsProblem = "error: \(error)"
            return false
        }
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
