/// A data-plane worker (a process or thread with its own ingress sockets and Forwarder).
public struct WorkerID: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public let rawValue: Int
    public init(_ rawValue: Int) { self.rawValue = rawValue }
    public var description: String { "worker \(rawValue)" }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One input interface a worker reads, and the PACKET_FANOUT group its socket joins when
/// several workers share the interface (nil: this worker alone reads it).
public struct IngressAssignment: Hashable, Sendable, Codable {
    public var interface: InterfaceName
    public var fanoutGroup: UInt16?

    public init(interface: InterfaceName, fanoutGroup: UInt16?) {
        self.interface = interface
        self.fanoutGroup = fanoutGroup
    }
}

/// Everything a worker needs to forward: which interfaces to read and the rules for them.
/// Versioned so the supervisor can tell a worker that is current from one that missed an update.
public struct WorkerPlan: Hashable, Sendable, Codable {
    public var worker: WorkerID
    public var version: UInt64
    public var ingress: [IngressAssignment]
    /// The active rules whose input interface is in `ingress`, in rule-book order.
    public var rules: [Rule]
    /// The listener gate table as of `gateVersion` (open gates, in key order), so a worker
    /// that installs a plan never opens a follow output that should be closed. Gate changes
    /// between plans arrive as `GateDelta`s.
    public var gateVersion: UInt64
    public var gates: [GateEntry]

    public init(worker: WorkerID, version: UInt64, ingress: [IngressAssignment], rules: [Rule],
                gateVersion: UInt64 = 0, gates: [GateEntry] = []) {
        self.worker = worker
        self.version = version
        self.ingress = ingress
        self.rules = rules
        self.gateVersion = gateVersion
        self.gates = gates
    }

    private enum CodingKeys: String, CodingKey { case worker, version, ingress, rules, gateVersion, gates }

    // Older recordings have no gates.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        worker = try container.decode(WorkerID.self, forKey: .worker)
        version = try container.decode(UInt64.self, forKey: .version)
        ingress = try container.decode([IngressAssignment].self, forKey: .ingress)
        rules = try container.decode([Rule].self, forKey: .rules)
        gateVersion = try container.decodeIfPresent(UInt64.self, forKey: .gateVersion) ?? 0
        gates = try container.decodeIfPresent([GateEntry].self, forKey: .gates) ?? []
    }

    // Without follow outputs a plan encodes exactly as before gates existed.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(worker, forKey: .worker)
        try container.encode(version, forKey: .version)
        try container.encode(ingress, forKey: .ingress)
        try container.encode(rules, forKey: .rules)
        if gateVersion != 0 { try container.encode(gateVersion, forKey: .gateVersion) }
        if !gates.isEmpty { try container.encode(gates, forKey: .gates) }
    }

    public static func idle(_ worker: WorkerID) -> WorkerPlan {
        WorkerPlan(worker: worker, version: 0, ingress: [], rules: [])
    }

    /// Output interfaces of the rules, sorted and distinct: the worker's egress slots.
    public var egress: [InterfaceName] {
        Array(Set(rules.flatMap { $0.outputs.map(\.interface) })).sorted()
    }
}
