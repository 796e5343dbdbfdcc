/// What the daemon changed on the host for its inputs' receive work (`--input-napi threaded`:
/// threaded NAPI, and GRO on a veth), as it keeps it on disk beside its control socket
/// (`<control>.input-napi`). A daemon that stops restores what it changed itself; one killed
/// with SIGKILL, or one that crashed, cannot, and the next daemon on the same control socket
/// reads what it left and undoes it before it changes anything (on the same device only: the
/// interface index must still match).
///
/// The text is line based and versioned: a header line, then one line per input,
/// `NAME IFINDEX gro=on|off` (`gro=on`: the daemon turned GRO on, so undoing turns it off).
/// Decoding is strict; a file that does not decode is reported and nothing is undone from it.
public struct InputNAPIJournal: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var interface: InterfaceName
        /// The device's index when it was changed: a re-created device of the same name is not ours.
        public var index: Int32
        public var turnedGROOn: Bool

        public init(interface: InterfaceName, index: Int32, turnedGROOn: Bool) {
            self.interface = interface
            self.index = index
            self.turnedGROOn = turnedGROOn
        }
    }

    public struct Problem: Error, Equatable, Sendable {
        public var message: String
        init(_ message: String) { self.message = message }
    }

    public static let header = "mcrelay input-napi journal 1"
    /// Far more lines than any host has interfaces; a longer file is not one of ours.
    public static let maximumEntries = 4096

    /// Sorted by interface name, each interface once.
    public private(set) var entries: [Entry]

    public init(_ entries: some Sequence<Entry>) {
        var byName: [InterfaceName: Entry] = [:]
        for entry in entries { byName[entry.interface] = entry }
        self.entries = byName.values.sorted { $0.interface < $1.interface }
    }

    public var isEmpty: Bool { entries.isEmpty }

    public func encoded() -> [UInt8] {
        var text = Self.header + "\n"
        for entry in entries {
            text += "\(entry.interface.rawValue) \(entry.index) gro=\(entry.turnedGROOn ? "on" : "off")\n"
        }
        return Array(text.utf8)
    }

    /// The journal in `bytes`; an empty file is an empty journal (a daemon that stopped cleanly
    /// truncates it before it removes it).
    public static func decode(_ bytes: some BidirectionalCollection<UInt8>) -> Result<InputNAPIJournal, Problem> {
        if bytes.isEmpty { return .success(InputNAPIJournal([])) }
        guard bytes.last == UInt8(ascii: "\n") else { return .failure(Problem("the last line has no newline (cut short?)")) }
        let lines = bytes.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard let first = lines.first, first.elementsEqual(header.utf8) else {
            return .failure(Problem("line 1 is not \"\(header)\""))
        }
        guard lines.count - 1 <= maximumEntries else { return .failure(Problem("more than \(maximumEntries) entries")) }
        var entries: [Entry] = []
        var seen: Set<InterfaceName> = []
        for (number, line) in zip(2..., lines.dropFirst()) {
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            guard fields.count == 3 else {
                return .failure(Problem("line \(number): want \"NAME IFINDEX gro=on|off\", found \(fields.count) field(s)"))
            }
            guard let text = String(validating: fields[0], as: UTF8.self), let name = InterfaceName(text) else {
                return .failure(Problem("line \(number): not an interface name"))
            }
            guard let indexText = String(validating: fields[1], as: UTF8.self),
                  indexText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let index = Int32(indexText), index > 0 else {
                return .failure(Problem("line \(number): the interface index is not a number in 1...\(Int32.max)"))
            }
            let gro: Bool
            if fields[2].elementsEqual("gro=on".utf8) { gro = true } else if fields[2].elementsEqual("gro=off".utf8) { gro = false } else {
                return .failure(Problem("line \(number): the third field is neither gro=on nor gro=off"))
            }
            guard seen.insert(name).inserted else { return .failure(Problem("line \(number): \(name) appears twice")) }
            entries.append(Entry(interface: name, index: index, turnedGROOn: gro))
        }
        return .success(InputNAPIJournal(entries))
    }
}
