import Foundation
import RelayCore

// The flight recorder's shared vocabulary (issue 6): the recording directory's manifest, the
// supervisor -> worker assignment, and what `mcrelay record status` / `stats` show. The daemon
// writes recordings (LinuxIO/Recorder); the simulator reads them (Sim/Recording.swift).
//
// A recording directory:
//
//     DIR/manifest.json                     RecordingManifest (rewritten at stop)
//     DIR/config.json                       the rules when recording started (config file format)
//     DIR/events.jsonl                      control-plane events, the simulator's events format
//                                           (at_ms counts from manifest.start_ns)
//     DIR/ingress-IFACE.wN.pPID.pcap        frames worker N (process PID) read on IFACE: LINKTYPE_RAW
//                                           (IPv4, no link header), nanosecond timestamps
//                                           on the manifest's clock (CLOCK_MONOTONIC + clock_offset_ns)

public enum RecordingFormat {
    public static let version = 1
    /// The daemon's version, as written into manifests.
    public static let mcrelayVersion = "mcrelay \(MCRelayVersion.current) (recording format \(version))"
    public static let manifestFile = "manifest.json"
    public static let configFile = "config.json"
    public static let eventsFile = "events.jsonl"
    /// Default `--record-limit`: 256 MiB over every file of the recording.
    public static let defaultLimitBytes: UInt64 = 256 << 20
    /// The smallest limit accepted: room for the manifest, config, some events and frames.
    public static let minimumLimitBytes: UInt64 = 64 << 10

    /// `ingress-IFACE.wN.pPID.pcap`.
    public static func pcapFileName(interface: String, worker: Int, pid: Int32) -> String {
        "ingress-\(interface).w\(worker).p\(pid).pcap"
    }

    /// The interface and worker of a frame file name, nil when the name is not one. Interface
    /// names may contain dots (eth0.100), so the name is parsed from the end.
    public static func parsePcapFileName(_ name: String) -> (interface: String, worker: Int)? {
        guard name.hasPrefix("ingress-"), name.hasSuffix(".pcap") else { return nil }
        var middle = name.dropFirst("ingress-".count).dropLast(".pcap".count)
        guard let pidDot = middle.lastIndex(of: "."), middle[middle.index(after: pidDot)...].first == "p",
              Int32(middle[middle.index(pidDot, offsetBy: 2)...]) != nil
        else { return nil }
        middle = middle[..<pidDot]
        guard let workerDot = middle.lastIndex(of: "."), middle[middle.index(after: workerDot)...].first == "w",
              let worker = Int(middle[middle.index(workerDot, offsetBy: 2)...]), worker >= 0
        else { return nil }
        let interface = String(middle[..<workerDot])
        guard InterfaceName(interface) != nil else { return nil }
        return (interface, worker)
    }
}

/// `DIR/manifest.json`.
public struct RecordingManifest: Codable, Equatable, Sendable {
    public struct Interface: Codable, Equatable, Sendable {
        public var index: Int
        public var name: String
        /// What the daemon read of it at the start (MAC, addresses, MTU, driver, offloads):
        /// the replay builds its egress frames from these, as the daemon did.
        public var facts: InterfaceFacts?
        public init(index: Int, name: String, facts: InterfaceFacts? = nil) {
            self.index = index
            self.name = name
            self.facts = facts
        }
    }

    public var format: Int
    public var mcrelayVersion: String
    /// Time zero of the recording (ns since the Unix epoch): `at_ms` of events counts from here.
    public var startNs: UInt64
    /// When recording stopped; nil while it runs (or if the daemon died without stopping it).
    public var endNs: UInt64?
    /// CLOCK_REALTIME - CLOCK_MONOTONIC at the start: every timestamp of the recording is
    /// CLOCK_MONOTONIC + this, so frames and events share one clock that never jumps.
    public var clockOffsetNs: Int64
    public var workers: Int
    public var dispatch: String
    /// `net.ipv4.igmp_max_memberships` of the daemon's namespace (the core's per-socket limit).
    public var membershipLimit: Int?
    /// IPv6 groups per helper socket the core used (`SocketLimits.ipv6(optmemMax:)` of the
    /// daemon's namespace); nil in recordings from before IPv6.
    public var membershipLimitIPv6: Int?
    /// Every interface of the host at the start, index <-> name.
    public var interfaces: [Interface]
    public var limitBytes: UInt64
    /// Why it stopped: "record stop", "daemon stopped", "limit reached", "error: ...", or a worker that filled its room first.
    public var stopReason: String?
    /// Set when the recording was cut short (limit reached, a file could not be written):
    /// frames and events from this time on may be incomplete, so the replay ignores them.
    public var completeUntilNs: UInt64?
    /// Frames no worker could record before the cut (buffer full, a write failed).
    public var framesLost: UInt64?
    /// The daemon's `--egress` (nil: the default), which the replay's egress frames follow.
    public var egress: String?

    enum CodingKeys: String, CodingKey {
        case format, workers, dispatch, interfaces, membershipLimit = "membership_limit"
        case membershipLimitIPv6 = "membership_limit_ipv6"
        case mcrelayVersion = "mcrelay_version", startNs = "start_ns", endNs = "end_ns", clockOffsetNs = "clock_offset_ns"
        case limitBytes = "limit_bytes", stopReason = "stop_reason", completeUntilNs = "complete_until_ns"
        case framesLost = "frames_lost", egress
    }

    public init(startNs: UInt64, clockOffsetNs: Int64, workers: Int, dispatch: String, interfaces: [Interface], limitBytes: UInt64) {
        format = RecordingFormat.version
        mcrelayVersion = RecordingFormat.mcrelayVersion
        self.startNs = startNs
        self.clockOffsetNs = clockOffsetNs
        self.workers = workers
        self.dispatch = dispatch
        self.interfaces = interfaces
        self.limitBytes = limitBytes
    }

    public func json() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return ((try? encoder.encode(self)) ?? Data("{}".utf8)) + Data("\n".utf8)
    }
}

/// Supervisor -> worker: record the frames you read into `directory`, at most `budgetBytes`
/// (this process, every file). The supervisor grants room in chunks and raises the budget by
/// sending the same session again with a larger `budgetBytes`.
public struct WorkerRecordingAssignment: Codable, Equatable, Sendable {
    public var directory: String
    public var budgetBytes: UInt64
    public var clockOffsetNs: Int64
    /// Numbers recordings, so a late status from a previous one is not counted in this one.
    public var session: UInt64

    public init(directory: String, budgetBytes: UInt64, clockOffsetNs: Int64, session: UInt64) {
        self.directory = directory
        self.budgetBytes = budgetBytes
        self.clockOffsetNs = clockOffsetNs
        self.session = session
    }
}

/// Worker -> supervisor, after each write and when recording stops.
public struct WorkerRecordingStatus: Codable, Equatable, Sendable {
    public var session: UInt64
    public var frames: UInt64
    /// Bytes this process put into its files (headers included; written or waiting in a buffer).
    public var bytes: UInt64
    /// Frames not recorded: the budget or the buffer was full, or a write failed.
    public var lost: UInt64
    /// Time (recording clock) of the first frame that could not be recorded (the budget was
    /// spent or a receive batch outgrew the buffer): the recording is complete only before it.
    public var fullAtNs: UInt64?
    /// A file could not be opened or written.
    public var error: String?

    public init(session: UInt64, frames: UInt64 = 0, bytes: UInt64 = 0, lost: UInt64 = 0, fullAtNs: UInt64? = nil, error: String? = nil) {
        self.session = session
        self.frames = frames
        self.bytes = bytes
        self.lost = lost
        self.fullAtNs = fullAtNs
        self.error = error
    }
}

/// `mcrelay record status` and the `recording` part of `stats`.
public struct RecordingView: Codable, Equatable, Sendable {
    public var active: Bool
    public var directory: String?
    public var limitBytes: UInt64?
    /// Bytes written so far (every file; workers report after each write).
    public var bytes: UInt64
    public var frames: UInt64
    public var events: UInt64
    public var framesLost: UInt64
    /// Why the last recording stopped (nil while one runs, or when none ever ran).
    public var stopReason: String?

    enum CodingKeys: String, CodingKey {
        case active, directory, bytes, frames, events
        case limitBytes = "limit_bytes", framesLost = "frames_lost", stopReason = "stop_reason"
    }

    public init(active: Bool, directory: String? = nil, limitBytes: UInt64? = nil, bytes: UInt64 = 0, frames: UInt64 = 0,
                events: UInt64 = 0, framesLost: UInt64 = 0, stopReason: String? = nil) {
        self.active = active
        self.directory = directory
        self.limitBytes = limitBytes
        self.bytes = bytes
        self.frames = frames
        self.events = events
        self.framesLost = framesLost
        self.stopReason = stopReason
    }

    public var text: String {
        guard let directory else { return "recording: off" }
        let state = active ? "recording to" : "recording stopped (\(stopReason ?? "stopped")):"
        return "\(state) \(directory): \(bytes) of \(limitBytes ?? 0) bytes, \(frames) frames, \(events) events"
            + (framesLost > 0 ? ", \(framesLost) frames not recorded" : "")
    }
}
