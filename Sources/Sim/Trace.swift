import PcapFile
import RelayCore

/// Interface names used in a run, each with a small dense index (sorted by name, so the
/// index — and everything keyed by it — is the same whatever order they were mentioned in).
public struct InterfaceTable: Sendable, Equatable {
    public private(set) var names: [InterfaceName]
    private var indexByName: [InterfaceName: Int]

    public init(_ names: some Sequence<InterfaceName>) {
        self.names = Array(Set(names)).sorted()
        indexByName = Dictionary(uniqueKeysWithValues: self.names.enumerated().map { ($1, $0) })
    }

    public func index(of name: InterfaceName) -> Int? { indexByName[name] }
    public var count: Int { names.count }
}

/// One ingress frame: when and where it arrives, and where its bytes sit in the arena.
public struct StoredFrame: Sendable {
    /// Nanoseconds after the first frame of the run.
    public var time: UInt64
    public var offset: Int
    public var length: Int32
    public var interface: InterfaceName
    public var link: LinkType
}

/// Ingress traffic held once in memory: every frame's bytes in one arena, so the per-packet
/// path hands the core a pointer into it instead of building an array per packet.
public struct FrameStore: Sendable {
    public private(set) var arena: [UInt8] = []
    public private(set) var frames: [StoredFrame] = []
    /// Absolute capture time of the first frame (ns since the Unix epoch): egress captures are
    /// stamped on the same clock, so they line up with the input in Wireshark.
    public var epoch: UInt64 = 1_700_000_000_000_000_000

    public init() {}

    public mutating func append(time: UInt64, interface: InterfaceName, link: LinkType, bytes: UnsafeRawBufferPointer) {
        frames.append(StoredFrame(time: time, offset: arena.count, length: Int32(bytes.count), interface: interface, link: link))
        arena.append(contentsOf: bytes)
    }

    public mutating func append(time: UInt64, interface: InterfaceName, link: LinkType, bytes: [UInt8]) {
        bytes.withUnsafeBytes { append(time: time, interface: interface, link: link, bytes: $0) }
    }

    /// Stable sort by time: frames with equal times keep the order they were added.
    public mutating func sortByTime() {
        let order = frames.indices.sorted { (frames[$0].time, $0) < (frames[$1].time, $1) }
        frames = order.map { frames[$0] }
    }

    public func bytes(_ index: Int) -> [UInt8] {
        let frame = frames[index]
        return Array(arena[frame.offset..<frame.offset + Int(frame.length)])
    }

    /// A store with only the given frames (in the given order), re-based so its first frame
    /// is at time 0 — exactly what writing it to pcap and loading it back gives.
    public func subset(_ indices: [Int]) -> FrameStore {
        var store = FrameStore()
        let first = indices.map { frames[$0].time }.min() ?? 0
        store.epoch = epoch + first
        arena.withUnsafeBytes { bytes in
            for index in indices {
                let frame = frames[index]
                store.append(time: frame.time - first, interface: frame.interface, link: frame.link,
                             bytes: UnsafeRawBufferPointer(rebasing: bytes[frame.offset..<frame.offset + Int(frame.length)]))
            }
        }
        return store
    }

    /// The same frames on a clock that starts at `newEpoch` (at or before the first frame):
    /// a case whose events begin before its traffic (recordings) keeps them in place.
    public func rebased(epoch newEpoch: UInt64) -> FrameStore {
        guard newEpoch <= epoch else { return self }
        var store = self
        let shift = epoch - newEpoch
        store.epoch = newEpoch
        for index in store.frames.indices { store.frames[index].time += shift }
        return store
    }

    /// Frames of one interface, for writing a trace file per interface.
    public func frames(on interface: InterfaceName) -> [Int] {
        frames.indices.filter { frames[$0].interface == interface }
    }
}

/// `--trace IFACE=FILE`: the capture of one interface, or `any=FILE` for a `tcpdump -i any`
/// capture whose frames carry their interface index (Linux cooked v2), mapped to names with
/// `--iface-map INDEX=NAME`.
public struct TraceSource: Sendable, Hashable, Codable {
    public var interface: String
    public var path: String

    public init(interface: String, path: String) {
        self.interface = interface
        self.path = path
    }

    public static func parse(_ text: String) throws(SimError) -> TraceSource {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex, text.index(after: eq) != text.endIndex else {
            throw SimError.usage("--trace \"\(text)\": expected IFACE=FILE.pcap (or any=FILE.pcap with --iface-map)")
        }
        let name = String(text[..<eq])
        guard name == "any" || InterfaceName(name) != nil else {
            throw SimError.usage("--trace \"\(text)\": \"\(name)\" is not a valid interface name")
        }
        return TraceSource(interface: name, path: String(text[text.index(after: eq)...]))
    }
}

public enum SimError: Error, CustomStringConvertible, Equatable {
    case usage(String)
    case input(String)
    case output(String)

    public var description: String {
        switch self {
        case let .usage(message), let .input(message), let .output(message): message
        }
    }
}

extension SimError {
    /// A recording holds the relay's ingress traffic but not the IGMP/MLD frames of the
    /// receivers' segments, so its oracle could not say when a follow output may send
    /// (simulated hosts drive follow outputs in cases and replays: `host_join` events).
    static func refuseFollowOutputs(_ rules: [RuleSpec], in location: String) throws(SimError) {
        for rule in rules {
            if let output = rule.outputs.first(where: \.followsListeners) {
                throw .input("\(location): output \(output) follows listeners; a recording holds no listener reports to replay")
            }
        }
    }
}

public enum TraceLoader {
    /// Parses `--iface-map INDEX=NAME` entries.
    public static func parseInterfaceMap(_ entries: [String]) throws(SimError) -> [Int: InterfaceName] {
        var map: [Int: InterfaceName] = [:]
        for entry in entries {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let index = Int(parts[0]), index > 0, let name = InterfaceName(parts[1]) else {
                throw SimError.usage("--iface-map \"\(entry)\": expected INDEX=NAME, e.g. 3=eth0")
            }
            if let existing = map[index], existing != name {
                throw SimError.usage("--iface-map: index \(index) given twice (\(existing) and \(name))")
            }
            map[index] = name
        }
        return map
    }

    public struct LoadSummary: Sendable, Equatable {
        /// Frames of an `any` capture whose interface index has no `--iface-map` entry.
        public var unmappedFrames: [Int: Int] = [:]
        public init() {}
    }

    /// Reads every trace into one store, sorted by capture time (ties keep file order).
    public static func load(_ sources: [TraceSource], interfaceMap: [Int: InterfaceName] = [:],
                            summary: inout LoadSummary) throws(SimError) -> FrameStore {
        var store = FrameStore()
        var raw: [(time: UInt64, interface: InterfaceName, link: LinkType, offset: Int, length: Int)] = []
        var arena: [UInt8] = []
        for source in sources {
            let reader: PcapReader
            do { reader = try PcapReader(path: source.path) } catch {
                throw SimError.input("--trace \(source.interface)=\(source.path): \(error)")
            }
            let link = LinkType(reader.linkType)
            let fixed = source.interface == "any" ? nil : InterfaceName(source.interface)
            if source.interface == "any" {
                guard link == .linuxCooked2 else {
                    throw SimError.input("--trace any=\(source.path): a \(reader.linkType) capture does not record "
                        + "which interface each frame came from; use --trace IFACE=\(source.path), or capture with "
                        + "`tcpdump -i any -y LINUX_SLL2` and map indexes with --iface-map INDEX=NAME")
                }
            }
            do {
                while try reader.next({ (header: PcapRecordHeader, bytes: UnsafeRawBufferPointer) -> Void in
                    var interface = fixed
                    if fixed == nil {
                        let index = bytes.count >= 8
                            ? Int(Int32(bitPattern: UInt32(bytes[4]) << 24 | UInt32(bytes[5]) << 16 | UInt32(bytes[6]) << 8 | UInt32(bytes[7])))
                            : -1
                        interface = interfaceMap[index]
                        if interface == nil { summary.unmappedFrames[index, default: 0] += 1 }
                    }
                    if let interface {
                        raw.append((header.timestampNanoseconds, interface, link, arena.count, bytes.count))
                        arena.append(contentsOf: bytes)
                    }
                }) != nil {}
            } catch {
                throw SimError.input("--trace \(source.interface)=\(source.path): \(error)")
            }
        }
        let order = raw.indices.sorted { (raw[$0].time, $0) < (raw[$1].time, $1) }
        let epoch = raw.map(\.time).min() ?? store.epoch
        store.epoch = epoch
        arena.withUnsafeBytes { bytes in
            for index in order {
                let frame = raw[index]
                store.append(time: frame.time - epoch, interface: frame.interface, link: frame.link,
                             bytes: UnsafeRawBufferPointer(rebasing: bytes[frame.offset..<frame.offset + frame.length]))
            }
        }
        return store
    }
}
