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

    public init(worker: WorkerID, version: UInt64, ingress: [IngressAssignment], rules: [Rule]) {
        self.worker = worker
        self.version = version
        self.ingress = ingress
        self.rules = rules
    }

    public static func idle(_ worker: WorkerID) -> WorkerPlan {
        WorkerPlan(worker: worker, version: 0, ingress: [], rules: [])
    }

    /// Output interfaces of the rules, sorted and distinct: the worker's egress slots.
    public var egress: [InterfaceName] {
        Array(Set(rules.flatMap { $0.outputs.map(\.interface) })).sorted()
    }
}
