import Foundation
import RelayControl
import RelayCore

/// The JSON form of the LAN-segment events (hosts, other routers, loss); see `ScriptedEvent`.
extension EventScript {
    static func parseSegmentEvent(_ event: String, _ object: [String: Any], interface: InterfaceName,
                                  location: String) throws(SimError) -> ScriptedEvent.Kind {
        func address(_ key: String, what: String) throws(SimError) -> IPAddress {
            guard let text = object[key] as? String, let value = try? EndpointSyntax.parseAddress(text) else {
                throw SimError.input("\(location): \(event) needs \"\(key)\": \(what)")
            }
            return value
        }
        func host() throws(SimError) -> IPAddress {
            let value = try address("host", what: "the host's unicast address on the segment")
            guard value.isUnicast else {
                throw SimError.input("\(location): \(event) \"host\" \(value) is not a unicast address")
            }
            if case let .v6(v6) = value, !v6.isLinkLocalUnicast {
                throw SimError.input("\(location): \(event) \"host\" \(value): MLD hosts report from a link-local address (fe80::/10)")
            }
            return value
        }
        func version(required: Bool) throws(SimError) -> ListenerVersion? {
            guard let raw = object["version"] else {
                if required { throw SimError.input("\(location): \(event) needs \"version\": 2 or 3") }
                return nil
            }
            guard let number = raw as? Int, number == 2 || number == 3 else {
                throw SimError.input("\(location): \(event) \"version\" must be 2 (IGMPv2 / MLDv1) or 3 (IGMPv3 / MLDv2)")
            }
            return number == 2 ? .v2 : .v3
        }
        func group(family: AddressFamily) throws(SimError) -> IPAddress {
            let value = try address("group", what: "a multicast address")
            guard value.isMulticast, value.family == family else {
                throw SimError.input("\(location): \(event) \"group\" \(value) is not a \(family) multicast address")
            }
            guard !ListenerAddresses.isUntracked(value) else {
                throw SimError.input("\(location): \(event) \"group\" \(value) is never reported (all-systems / node-local)")
            }
            return value
        }
        switch event {
        case "host_join":
            let hostAddress = try host()
            let groupAddress = try group(family: hostAddress.family)
            var sources: [IPAddress] = []
            if let raw = object["sources"] {
                guard let list = raw as? [String] else {
                    throw SimError.input("\(location): host_join \"sources\" must be a list of unicast addresses")
                }
                for text in list {
                    guard let source = try? EndpointSyntax.parseAddress(text), source.isUnicast,
                          source.family == hostAddress.family else {
                        throw SimError.input("\(location): host_join source \"\(text)\" is not a unicast \(hostAddress.family) address")
                    }
                    sources.append(source)
                }
            }
            let mode: FilterMode
            switch object["mode"] as? String {
            case nil where object["mode"] == nil: mode = sources.isEmpty ? .exclude : .include
            case "include": mode = .include
            case "exclude": mode = .exclude
            default: throw SimError.input("\(location): host_join \"mode\" must be \"include\" or \"exclude\"")
            }
            if mode == .include, sources.isEmpty {
                throw SimError.input("\(location): host_join INCLUDE with no sources is no membership; use host_leave")
            }
            return .hostJoin(.init(interface: interface, host: hostAddress, group: groupAddress, mode: mode,
                                   sources: sources, version: try version(required: false)))
        case "host_leave":
            let hostAddress = try host()
            return .hostLeave(interface, host: hostAddress, group: try group(family: hostAddress.family))
        case "host_version":
            return .hostVersion(interface, host: try host(), version: try version(required: true)!)
        case "querier_start", "querier_stop":
            let router = try address("address", what: "the router's unicast address on the segment")
            guard router.isUnicast else {
                throw SimError.input("\(location): \(event) \"address\" \(router) is not a unicast address")
            }
            if event == "querier_stop" { return .querierStop(interface, address: router) }
            var interval = 125_000
            if let raw = object["query_interval_ms"] {
                guard let value = raw as? Int, (1_000...3_600_000).contains(value) else {
                    throw SimError.input("\(location): querier_start \"query_interval_ms\" must be 1000-3600000")
                }
                interval = value
            }
            return .querierStart(interface, address: router, version: try version(required: false) ?? .v3, queryIntervalMs: interval)
        default:  // segment_loss
            guard let value = (object["loss"] as? NSNumber)?.doubleValue, value >= 0, value <= 1 else {
                throw SimError.input("\(location): segment_loss needs \"loss\": a probability 0-1")
            }
            return .segmentLoss(interface, probability: value)
        }
    }

    static func serializeSegmentEvent(_ kind: ScriptedEvent.Kind, into object: inout [String: Any]) {
        switch kind {
        case let .hostJoin(join):
            object["iface"] = join.interface.rawValue
            object["host"] = join.host.description
            object["group"] = join.group.description
            object["mode"] = join.mode.rawValue
            if !join.sources.isEmpty { object["sources"] = join.sources.map(\.description) }
            if let version = join.version { object["version"] = version.rawValue }
        case let .hostLeave(name, host, group):
            object["iface"] = name.rawValue
            object["host"] = host.description
            object["group"] = group.description
        case let .hostVersion(name, host, version):
            object["iface"] = name.rawValue
            object["host"] = host.description
            object["version"] = version.rawValue
        case let .querierStart(name, address, version, interval):
            object["iface"] = name.rawValue
            object["address"] = address.description
            object["version"] = version.rawValue
            object["query_interval_ms"] = interval
        case let .querierStop(name, address):
            object["iface"] = name.rawValue
            object["address"] = address.description
        case let .segmentLoss(name, probability):
            object["iface"] = name.rawValue
            object["loss"] = probability
        default:
            break
        }
    }
}
