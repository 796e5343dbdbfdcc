import Foundation
import RelayCore
import Testing

/// A three-namespace lab from scripts/netns-lab.sh (snd0 -> rin0 [relay] rout0/rout1 ->
/// rcv0/rcv1, see there), torn down by `down()` (tests call it in `defer`). Every live test
/// uses it: the daemon tests (`Lab("tag")`, `RelayDaemon`, `Receiver`, `send`) and the DataPlane
/// tests (`Lab(tag:)` alias `DataPlaneLab`, `WorkerUnderTest`, `send(streams:)`, `startReceiver`).
/// Commands it runs leave their output in `directory` (kept, with the daemon's log, as evidence).
final class Lab {
    let prefix: String
    let directory: String
    var sender: String { "\(prefix)-snd" }
    var relay: String { "\(prefix)-rly" }
    var receiver: String { "\(prefix)-rcv" }

    static let senderAddress = "198.18.1.1"
    static let receiverAddress0 = "198.18.2.2"  // rcv0, behind rout0
    static let receiverAddress1 = "198.18.3.2"  // rcv1, behind rout1

    /// IPv6 labs (`ipv6: true`, netns-lab.sh `--ipv6`): every link also has these (`nodad`).
    let ipv6: Bool
    static let senderAddress6 = "2001:db8:1::1"     // snd0
    static let relayInputAddress6 = "2001:db8:1::2" // rin0
    static let relayOutputAddress6 = "2001:db8:2::1" // rout0
    static let relayOutput1Address6 = "2001:db8:3::1" // rout1
    static let receiverAddress6 = "2001:db8:2::2"   // rcv0, behind rout0
    static let receiver1Address6 = "2001:db8:3::2"  // rcv1, behind rout1

    /// `tag`: up to 5 characters naming the test; the prefix adds the pid so parallel runs differ.
    convenience init(_ tag: String, ipv6: Bool = false) throws {
        try self.init(prefix: "m\(tag)\(getpid() % 10000)", ipv6: ipv6)
    }

    /// `prefix`: at most 11 characters (netns-lab.sh). Holds the live lease (`LiveLease`) until
    /// `down()`: live tests never overlap.
    /// `ipv6`: IPv6 on, with the addresses above (netns-lab.sh `--ipv6`); IPv4 labs keep it off.
    init(prefix: String, ipv6: Bool = false) throws {
        self.prefix = prefix
        self.ipv6 = ipv6
        directory = try E2E.temporaryDirectory(prefix)
        try LiveLease.acquire(prefix)
        let result: CommandResult
        do {
            result = try run(["bash", E2E.scripts + "/netns-lab.sh", "up", prefix] + (ipv6 ? ["--ipv6"] : []), in: directory,
                             timeout: .seconds(30))
        } catch {
            down()
            throw error
        }
        guard result.status == 0 else {
            down()
            throw HarnessError("lab setup failed: \(result)")
        }
    }

    func down() {
        _ = try? run(["bash", E2E.scripts + "/netns-lab.sh", "down", prefix], in: directory, timeout: .seconds(30))
        LiveLease.release(prefix)
    }

    func exec(_ namespace: String, _ arguments: [String]) -> [String] {
        ["ip", "netns", "exec", namespace] + arguments
    }

    /// Runs a command in a namespace and requires it to succeed.
    @discardableResult
    func must(_ namespace: String, _ arguments: [String], timeout: Duration = .seconds(30)) throws -> CommandResult {
        let result = try run(exec(namespace, arguments), in: directory, timeout: timeout)
        guard result.status == 0 else { throw HarnessError("command failed: \(result)") }
        return result
    }

    /// Waits until `interface` in `namespace` has its carrier (operstate up), e.g. the other end
    /// of a veth that was just set up or flapped; throws if it does not within `timeout`.
    func waitForCarrier(_ namespace: String, _ interface: String, timeout: Duration = .seconds(5)) throws {
        var state = ""
        let up = try waitUntil(timeout: timeout) {
            state = try must(namespace, ["cat", "/sys/class/net/\(interface)/operstate"]).stdout
            return state.hasPrefix("up")
        }
        guard up else { throw HarnessError("\(interface) in \(namespace) is not up after \(timeout) (operstate \(state))") }
    }

    /// Group memberships the kernel holds on an interface of a namespace (/proc/net/igmp).
    func memberships(_ namespace: String, interface: String) throws -> Set<String> {
        let text = try must(namespace, ["cat", "/proc/net/igmp"]).stdout
        var groups = Set<String>()
        var current = ""
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if let first = fields.first, Int(first) != nil, fields.count >= 2 {
                current = String(fields[1])
            } else if current == interface, let hex = fields.first, hex.count == 8, let value = UInt32(hex, radix: 16) {
                // Little-endian hex of the network-order address.
                let b = withUnsafeBytes(of: value.littleEndian) { Array($0) }
                groups.insert("\(b[0]).\(b[1]).\(b[2]).\(b[3])")
            }
        }
        return groups
    }

    /// IPv6 group memberships the kernel holds on an interface of a namespace (/proc/net/igmp6:
    /// index, name, 32 hex digits, users, flags, timer), as RFC 5952 text.
    func memberships6(_ namespace: String, interface: String) throws -> Set<String> {
        let text = try must(namespace, ["cat", "/proc/net/igmp6"]).stdout
        var groups = Set<String>()
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 3, fields[1] == interface, let address = Self.ipv6(hex: fields[2]) else { continue }
            groups.insert(address)
        }
        return groups
    }

    /// Source filters of IPv6 memberships on an interface (/proc/net/mcfilter6: index, name,
    /// group, source, include and exclude counts): "GROUP from SOURCE" per line.
    func sourceFilters6(_ namespace: String, interface: String) throws -> Set<String> {
        let text = try must(namespace, ["cat", "/proc/net/mcfilter6"]).stdout
        var filters = Set<String>()
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 4, fields[1] == interface, let group = Self.ipv6(hex: fields[2]),
                  let source = Self.ipv6(hex: fields[3]) else { continue }
            filters.insert("\(group) from \(source)")
        }
        return filters
    }

    /// 32 hex digits (network order) as RFC 5952 text.
    static func ipv6(hex: Substring) -> String? {
        guard hex.utf8.count == 32, let high = UInt64(hex.prefix(16), radix: 16), let low = UInt64(hex.suffix(16), radix: 16) else {
            return nil
        }
        return IPv6Address(high: high, low: low).description
    }
}
