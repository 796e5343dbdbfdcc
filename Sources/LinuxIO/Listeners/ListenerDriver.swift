#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl
import RelayCore

/// The syscall edge of the IGMP/MLD router (`RelayCore.Listeners`, composed by the
/// `ControlPlane`): one `ListenerTap` per configured interface, the interface's facts (MAC,
/// IPv4 address, IPv6 link-local address: the router's source and election address), and
/// the events the core needs (start, address changes, frames). It decides nothing.
final class ListenerDriver {
    struct Port {
        var setting: QuerierSetting
        var tap: ListenerTap?
        var facts: InterfaceFacts?
        /// Families started in the core, with the address they were started or last updated with.
        var started: [AddressFamily: IPAddress?] = [:]
        /// The last problem logged for this interface (each is logged once).
        var problem: String?
    }

    /// How often facts are re-read: an IPv6 link-local address becomes usable about a second
    /// after the link comes up (DAD), and an address may change at any time.
    static let refreshInterval = Duration.seconds(1)

    private(set) var ports: [InterfaceName: Port] = [:]
    private let batch = ListenerTap.Batch()
    private var probe: Int32 = -1
    private(set) var nextRefresh: Instant?

    deinit {
        for port in ports.values { port.tap?.close() }
        if probe >= 0 { close(probe) }
    }

    /// The configured interfaces changed (start, reload): events stop what is gone; `refresh`
    /// starts the rest.
    func configure(_ settings: [QuerierSetting], now: Instant) -> [ListenerEvent] {
        var events: [ListenerEvent] = []
        let wanted = Dictionary(uniqueKeysWithValues: settings.map { ($0.interface, $0) })
        for (name, port) in ports where wanted[name] != port.setting {
            events += port.started.keys.sorted { $0.rawValue < $1.rawValue }.map { .stop(name, $0) }
            port.tap?.close()
            ports[name] = nil
        }
        for setting in settings where ports[setting.interface] == nil {
            ports[setting.interface] = Port(setting: setting)
        }
        nextRefresh = settings.isEmpty ? nil : now
        return events
    }

    /// Opens missing taps, re-reads facts, and says what the core must learn. Returns the
    /// events and the problems to log (each once until it changes).
    func refresh(now: Instant) -> (events: [ListenerEvent], problems: [String]) {
        nextRefresh = ports.isEmpty ? nil : now + Self.refreshInterval
        if probe < 0 { probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var events: [ListenerEvent] = []
        var problems: [String] = []
        for name in ports.keys.sorted() {
            var port = ports[name]!
            var problem: String?
            switch InterfaceFactsReader.read(name, probe: probe) {
            case let .success(facts): port.facts = facts
            case .failure(.missing): port.facts = nil; problem = "querier interface \(name) does not exist (yet)"
            case let .failure(failure): port.facts = nil; problem = "querier interface \(name): \(failure)"
            }
            if port.facts != nil {
                do {
                    if let tap = port.tap { _ = try tap.reopenIfReplaced() } else { port.tap = try ListenerTap(interface: name) }
                } catch {
                    port.tap = nil
                    problem = "querier interface \(name): \(error)"
                }
            }
            for family in port.setting.families {
                let address = port.tap == nil ? nil : Self.routerAddress(port.facts, family)
                if let started = port.started[family] {
                    if started != address { events.append(.addressChanged(name, family, address)) }
                } else {
                    events.append(.start(name, family, address: address, configuration: port.setting.configuration))
                }
                port.started[family] = address
            }
            if problem != port.problem, let problem { problems.append(problem) }
            port.problem = problem
            ports[name] = port
        }
        return (events, problems)
    }

    /// The address the router queries from and is elected by: the primary IPv4 address, or the
    /// IPv6 link-local one (RFC 3810 5.1.14: MLD queries come from link-local addresses).
    static func routerAddress(_ facts: InterfaceFacts?, _ family: AddressFamily) -> IPAddress? {
        switch family {
        case .ipv4: facts?.ipv4.map(IPAddress.v4)
        case .ipv6: facts?.ipv6LinkLocal.map(IPAddress.v6)
        }
    }

    /// The taps to poll.
    var pollable: [(fd: Int32, interface: InterfaceName)] {
        ports.keys.sorted().compactMap { name in ports[name]?.tap.map { ($0.fd, name) } }
    }

    /// Frames waiting on `interface`'s tap, as events (a control-plane rate: each is copied).
    func read(_ interface: InterfaceName) -> (events: [ListenerEvent], problem: String?) {
        guard let tap = ports[interface]?.tap else { return ([], nil) }
        var events: [ListenerEvent] = []
        do {
            while true {
                let count = try tap.receive(into: batch)
                guard count > 0 else { break }
                for index in 0..<count {
                    let frame = batch[index]
                    guard !frame.isTruncated else { continue }
                    events.append(.frame(interface, Array(frame.bytes)))
                }
                if count < batch.capacity { break }
            }
        } catch {
            return (events, "querier interface \(interface): \(error)")
        }
        return (events, nil)
    }

    /// Sends a query; returns a problem to log when it could not.
    func send(_ transmit: ListenerTransmit) -> String? {
        guard let port = ports[transmit.interface], let tap = port.tap, let mac = port.facts?.mac else {
            return "querier interface \(transmit.interface): no tap or MAC; query not sent"
        }
        do { try tap.send(frame: transmit.frame(sourceMAC: mac)) } catch {
            return "querier interface \(transmit.interface): \(error)"
        }
        return nil
    }

    func closeAll() {
        for name in ports.keys { ports[name]?.tap?.close(); ports[name]?.tap = nil }
    }
}
