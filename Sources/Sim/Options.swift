import RelayControl
import RelayCore

public enum Timing: String, Sendable, Codable, CaseIterable {
    /// Frames arrive at their capture timestamps.
    case recorded
    /// Frames arrive back to back, 1 µs apart, whatever their timestamps say.
    case topspeed
}

/// Everything besides the inputs that fixes a run.
public struct SimOptions: Sendable, Equatable {
    public var seed: UInt64 = 0
    public var faults = FaultSpec()
    /// The seed also picks the fault probabilities (`faults` is ignored).
    public var swarm = false
    /// Faults chosen up front, as values (used by property tests and `shrink`).
    public var schedule: [ScheduledFault] = []
    public var timing = Timing.recorded
    public var workers = 2
    public var dispatch = DispatchMode.fanout
    /// The membership limit the core assumes per helper socket.
    public var coreSocketLimit = 20
    /// The limit the kernel model enforces (`net.ipv4.igmp_max_memberships`).
    public var kernelMembershipLimit = KernelModel.defaultMembershipLimit
    /// The IPv6 twins: the groups per helper socket the core assumes (`SocketLimits.ipv6`), and
    /// a count the kernel model enforces on top of its option-memory accounting (default: the
    /// most any-source groups the default optmem_max holds, 2340; lower it to test pools).
    public var coreSocketLimitIPv6 = SocketLimits.defaultIPv6
    public var kernelMembershipLimitIPv6 = KernelModel.defaultIPv6MembershipLimit
    /// The relay starts this long before the first frame, so it has joined its groups.
    public var warmup: UInt64 = 1_000_000_000
    /// After traffic and events end, faults stop and the relay must converge within this.
    /// The default covers the core's longest join backoff (30 s) plus resends.
    public var livenessBound: UInt64 = 35_000_000_000
    /// A crashed worker is restarted by its supervisor after this long.
    public var restartDelay: UInt64 = 100_000_000
    /// Keep a per-step digest for `--check-determinism`.
    public var recordSteps = false
    /// Deliberate driver bugs, to show the checks catch them (see `DriverBug`).
    public var driverBugs: Set<DriverBug> = []
    /// What the relay knows of each interface (a recording's manifest, a case's
    /// `interfaces`): the egress frames are built from these. An interface without an entry
    /// gets `InterfaceFacts.simulated`.
    public var interfaceFacts: [InterfaceName: InterfaceFacts] = [:]
    /// The daemon's `--egress` the egress frames follow.
    public var egressMode = EgressMode.default
    /// Stop the run at the first violation (fuzzing) instead of collecting them all.
    public var stopAtFirstViolation = false
    /// Stop as soon as this invariant is broken (shrinking only needs to know that it is).
    public var stopAtInvariant: String?
    /// Print every control-plane step and core action (not frames) as the run goes.
    public var verbose = false
    /// Soak runs: sample state sizes this often (simulated ns); 0 never samples.
    public var sampleInterval: UInt64 = 0
    /// Soak runs with one core: the end of the liveness phase ends the loaded window, not the
    /// run; `Simulation.load(window:at:)` brings the next one (see Simulation+Soak.swift).
    public var continuous = false

    public init() {}

    /// The fault probabilities in force: the given ones, or the seed's pick in swarm mode.
    public var effectiveFaults: FaultSpec { swarm ? FaultSpec.swarm(seed: seed) : faults }
}

/// What a run consumes: traffic, the config's rules and the control-plane script.
public struct SimInput: Sendable {
    public var store: FrameStore
    public var rules: [RuleSpec]
    public var events: [ScriptedEvent]
    /// The config's `queriers`: interfaces where the relay runs its IGMP/MLD router (the
    /// segments whose simulated hosts and routers it hears).
    public var queriers: [QuerierSetting] = []
    /// Interfaces the run knows although this input does not mention them (a soak's first
    /// window declares every interface later windows may use).
    public var declaredInterfaces: [InterfaceName] = []

    public init(store: FrameStore, rules: [RuleSpec], events: [ScriptedEvent] = [], queriers: [QuerierSetting] = []) {
        self.store = store
        self.rules = rules
        self.events = events
        self.queriers = queriers
    }

    /// Every interface the run mentions, sorted.
    public var interfaces: InterfaceTable {
        var names = Set<InterfaceName>()
        var last: InterfaceName?
        for frame in store.frames where frame.interface != last {  // long runs share an interface
            names.insert(frame.interface)
            last = frame.interface
        }
        for rule in rules { names.insert(rule.input.interface); for o in rule.outputs { names.insert(o.interface) } }
        for event in events { names.formUnion(event.interfaces) }
        for querier in queriers { names.insert(querier.interface) }
        names.formUnion(declaredInterfaces)
        return InterfaceTable(names)
    }
}

/// Mistakes a driver (the daemon's Linux side) can make around a correct core. The simulator
/// can play them to prove its invariants notice: each reproduces a bug from the field.
public enum DriverBug: String, Sendable, Hashable, CaseIterable {
    /// Workers open their AF_PACKET sockets without PACKET_FANOUT: every worker gets every
    /// frame ("duplicates with two workers").
    case ignoreFanout = "ignore-fanout"
    /// Join errors are reported to the core as successes, so ENOBUFS past the per-socket
    /// limit goes unnoticed ("fine until the 21st group").
    case reportJoinsAsSucceeded = "report-joins-as-succeeded"
    /// Gate deltas reach the workers with every filter open (EXCLUDE {}): follow outputs send
    /// where no listener asked ("a gate that never closes").
    case openAllGates = "open-all-gates"
    /// Gate deltas never reach the workers: follow outputs keep the gates of their last plan
    /// ("a join the workers never hear of").
    case dropGateDeltas = "drop-gate-deltas"
    /// The listener tap drops leaves (IGMPv2 Leave, MLD Done, v3 TO_IN / BLOCK records): the
    /// relay learns of a departure only when the membership times out.
    case dropLeaves = "drop-leaves"
}
