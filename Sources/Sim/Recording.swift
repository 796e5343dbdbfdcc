import Foundation
import PcapFile
import RelayControl
import RelayCore

/// A flight recording (`mcrelay daemon --record DIR`, `mcrelay record start DIR`) as a
/// simulator case: the rules when recording began, the control-plane events, and the frames
/// every worker read, merged by timestamp (with PACKET_FANOUT several workers each hold part of
/// an interface). Time zero is the recording's start, so events before the first frame keep
/// their place. Workers, dispatch mode and the membership limit come from the manifest.
///
/// A recording cut short (size limit, write error) is replayed up to its `complete_until_ns`:
/// past it, some workers' frames may be missing. Frames and events stamped after the end are
/// dropped the same way (a worker can read a few more frames before it hears `stop`).
public struct Recording: Sendable {
    public var manifest: RecordingManifest
    public var simCase: SimCase
    /// What the loader left out or noticed, one line each, for the operator.
    public var notes: [String]

    public static func load(directory: String) throws(SimError) -> Recording {
        let manifestPath = directory + "/" + RecordingFormat.manifestFile
        guard let data = FileManager.default.contents(atPath: manifestPath) else {
            let what = FileManager.default.fileExists(atPath: directory) ? "no \(RecordingFormat.manifestFile)" : "no such directory"
            throw SimError.input("--recording \(directory): \(what) (a recording is written by `mcrelay daemon --record DIR` or `mcrelay record start DIR`)")
        }
        let manifest: RecordingManifest
        do { manifest = try JSONDecoder().decode(RecordingManifest.self, from: data) } catch {
            throw SimError.input("\(manifestPath): not a recording manifest: \(Self.describe(error))")
        }
        guard manifest.format == RecordingFormat.version else {
            throw SimError.input("\(manifestPath): recording format \(manifest.format); this mcrelay reads format \(RecordingFormat.version)")
        }
        guard let dispatch = DispatchMode(rawValue: manifest.dispatch) else {
            throw SimError.input("\(manifestPath): dispatch \"\(manifest.dispatch)\" is not fanout or partition")
        }
        guard (1...64).contains(manifest.workers) else {
            throw SimError.input("\(manifestPath): workers \(manifest.workers) is not in 1...64")
        }
        let config: ConfigFile
        do { config = try ConfigFile.load(path: directory + "/" + RecordingFormat.configFile) } catch {
            throw SimError.input(error.description)
        }
        try SimError.refuseFollowOutputs(config.rules, in: directory + "/" + RecordingFormat.configFile)
        let eventsPath = directory + "/" + RecordingFormat.eventsFile
        guard FileManager.default.fileExists(atPath: eventsPath) else {
            throw SimError.input("--recording \(directory): no \(RecordingFormat.eventsFile) (the recording is incomplete)")
        }
        var events = try EventScript.load(path: eventsPath)

        var notes: [String] = []
        if manifest.endNs == nil { notes.append("the recording has no end time (the daemon did not stop it): replaying what is there") }
        let end = manifest.completeUntilNs ?? manifest.endNs ?? .max
        if let cut = manifest.completeUntilNs {
            notes.append("the recording was cut short (\(manifest.stopReason ?? "?")) \(Double(cut - min(cut, manifest.startNs)) / 1e6) ms after its start: replaying up to there")
        }
        let beforeEnd = events.count
        events.removeAll { manifest.startNs &+ $0.at >= end }
        if events.count < beforeEnd { notes.append("\(beforeEnd - events.count) event(s) after the cut left out") }

        // Frames: every worker's file, merged by time (ties keep file-name order).
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted() } catch {
            throw SimError.input("--recording \(directory): cannot list: \(error.localizedDescription)")
        }
        var store = FrameStore()
        store.epoch = manifest.startNs
        var late = 0, early = 0
        for name in names {
            guard name.hasPrefix("ingress-"), name.hasSuffix(".pcap") else { continue }
            guard let parsed = RecordingFormat.parsePcapFileName(name), let interface = InterfaceName(parsed.interface) else {
                throw SimError.input("\(directory)/\(name): not a recording's frame file name (ingress-IFACE.wN.pPID.pcap)")
            }
            let path = directory + "/" + name
            let reader: PcapReader
            do { reader = try PcapReader(path: path) } catch { throw SimError.input("\(path): \(error)") }
            let link = LinkType(reader.linkType)
            do {
                while try reader.next({ (header: PcapRecordHeader, bytes: UnsafeRawBufferPointer) -> Void in
                    let time = header.timestampNanoseconds
                    if time >= end { late += 1; return }
                    if time < manifest.startNs { early += 1 }
                    store.append(time: time >= manifest.startNs ? time - manifest.startNs : 0, interface: interface, link: link, bytes: bytes)
                }) != nil {}
            } catch {
                throw SimError.input("\(path): \(error) (a frame file of this recording is damaged)")
            }
        }
        store.sortByTime()
        if late > 0 { notes.append("\(late) frame(s) after the \(manifest.completeUntilNs != nil ? "cut" : "end") left out") }
        if early > 0 { notes.append("\(early) frame(s) stamped before the start moved to time 0") }
        if let lost = manifest.framesLost, lost > 0 {
            notes.append("the daemon could not record \(lost) frame(s) (buffer or limit full): the replay does not see them")
        }

        var options = SimOptions()
        options.workers = manifest.workers
        options.dispatch = dispatch
        for interface in manifest.interfaces {
            guard let facts = interface.facts else { continue }
            options.interfaceFacts[facts.name] = facts
        }
        if let egress = manifest.egress {
            guard let mode = EgressMode(rawValue: egress) else { throw SimError.input("\(manifestPath): egress \"\(egress)\" is not packet or udp") }
            options.egressMode = mode
        }
        let limit = max(manifest.membershipLimit ?? KernelModel.defaultMembershipLimit, 1)
        options.coreSocketLimit = limit
        options.kernelMembershipLimit = limit
        if let limit = manifest.membershipLimitIPv6, limit > 0 { options.coreSocketLimitIPv6 = limit }
        let input = SimInput(store: store, rules: config.rules, events: events)
        return Recording(manifest: manifest, simCase: SimCase(input: input, options: options), notes: notes)
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case let DecodingError.keyNotFound(key, _): "missing \"\(key.stringValue)\""
        case let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context):
            "\"\(context.codingPath.map(\.stringValue).joined(separator: "."))\": \(context.debugDescription)"
        case let DecodingError.dataCorrupted(context): context.debugDescription
        default: "\(error)"
        }
    }
}
