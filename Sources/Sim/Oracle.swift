import RelayCore

/// The independent judge of a run. It knows only what the operator asked for (config, rule
/// commands, reloads) and what the network delivered, and from that alone decides which
/// (frame, output) pairs a correct relay may send. It never asks the core what its rules are.
struct Oracle {
    /// Every distinct rule spec seen in the run, interned so hot-path tallies are array slots.
    struct Registry {
        private(set) var specs: [RuleSpec] = []
        private(set) var outputBase: [Int] = []
        private(set) var outputCount = 0
        private var index: [RuleSpec: Int] = [:]

        mutating func intern(_ spec: RuleSpec) -> Int {
            if let existing = index[spec] { return existing }
            specs.append(spec)
            outputBase.append(outputCount)
            outputCount += spec.outputs.count
            index[spec] = specs.count - 1
            return specs.count - 1
        }

        func find(_ spec: RuleSpec) -> Int? { index[spec] }

        /// The registry with only the specs `keep` selects, in their old order; `map[old]` is
        /// the new index, or -1 for a spec dropped.
        func compacted(keeping keep: [Bool]) -> (registry: Registry, map: [Int32]) {
            var fresh = Registry()
            var map = [Int32](repeating: -1, count: specs.count)
            for (old, spec) in specs.enumerated() where keep[old] { map[old] = Int32(fresh.intern(spec)) }
            return (fresh, map)
        }
    }

    struct EpochKey: Hashable {
        var interface: Int
        var group: IPAddress
        var port: UInt16
    }

    /// One operator rule set, with a lookup from (interface, group, port) to its rules.
    struct Epoch {
        var rules: [Int]  // registry indices, in operator order
        var anySource: [EpochKey: Int32] = [:]
        var specific: [EpochKey: [(source: IPAddress, rule: Int32)]] = [:]
        /// Prefix inputs (`239.0.0.0/8:*`), tried after the exact group.
        var ranges: [(interface: Int, input: InputSpec, rule: Int32)] = []

        /// The rule a correct relay applies to a datagram: the most specific input that takes
        /// it — the exact group before any prefix, a longer prefix before a shorter one, a port
        /// before any port (port 0), a source before any source.
        @inline(__always)
        func match(interface: Int, group: IPAddress, port: UInt16, source: IPAddress) -> Int32 {
            let exact = exactMatch(EpochKey(interface: interface, group: group, port: port), source: source)
            if exact >= 0 { return exact }
            if port != 0 {
                let anyPort = exactMatch(EpochKey(interface: interface, group: group, port: 0), source: source)
                if anyPort >= 0 { return anyPort }
            }
            if ranges.isEmpty { return -1 }
            var best: (rank: (Int, Int, Int), rule: Int32)?
            for entry in ranges where entry.interface == interface {
                let input = entry.input
                guard let length = input.prefixLength, GroupRange.truncated(group, to: length) == input.group,
                      input.port == 0 || input.port == port, input.source == nil || input.source == source else { continue }
                let rank = (Int(length), input.port == 0 ? 0 : 1, input.source == nil ? 0 : 1)
                if best.map({ $0.rank < rank }) ?? true { best = (rank, entry.rule) }
            }
            return best?.rule ?? -1
        }

        @inline(__always)
        private func exactMatch(_ key: EpochKey, source: IPAddress) -> Int32 {
            if let list = specific[key] {
                for entry in list where entry.source == source { return entry.rule }
            }
            return anySource[key] ?? -1
        }

        /// Every registry index this rule set refers to.
        var references: [Int] { rules }

        /// The same rule set after a registry compaction (`map[old]` is the new index; every
        /// index an epoch refers to is kept, so none maps to -1).
        func remapped(_ map: [Int32]) -> Epoch {
            var epoch = Epoch(rules: rules.map { Int(map[$0]) })
            for (key, rule) in anySource { epoch.anySource[key] = map[Int(rule)] }
            for (key, list) in specific { epoch.specific[key] = list.map { ($0.source, map[Int($0.rule)]) } }
            epoch.ranges = ranges.map { ($0.interface, $0.input, map[Int($0.rule)]) }
            return epoch
        }
    }

    var registry = Registry()
    /// The operator's rule set now. Older rule sets are not kept here: the simulator keeps the
    /// one each plan version was made from, for as long as that plan can still be installed
    /// (`Simulation.versionEpoch`), and each worker keeps the one its installed plan came from.
    private(set) var current = Epoch(rules: [])
    /// Rule-set changes so far (reports only).
    private(set) var changes = 0
    let interfaces: InterfaceTable

    init(interfaces: InterfaceTable) {
        self.interfaces = interfaces
    }

    var currentSpecs: [RuleSpec] { current.rules.map { registry.specs[$0] } }

    /// The operator's rule set changed (and the relay accepted the change).
    mutating func setRules(_ specs: [RuleSpec]) {
        var epoch = Epoch(rules: [])
        for spec in specs {
            let ref = intern(spec)
            epoch.rules.append(ref)
            guard let interface = interfaces.index(of: spec.input.interface) else { continue }
            if spec.input.prefixLength != nil {
                epoch.ranges.append((interface, spec.input, Int32(ref)))
                continue
            }
            let key = EpochKey(interface: interface, group: spec.input.group, port: spec.input.port)
            if let source = spec.input.source {
                epoch.specific[key, default: []].append((source, Int32(ref)))
            } else {
                epoch.anySource[key] = Int32(ref)
            }
        }
        current = epoch
        changes += 1
    }

    /// Drops every interned spec `keep` does not select and renumbers the rest (soak runs, so
    /// the registry holds what can still matter, not every spec ever seen). Returns the map
    /// from old to new indices for the caller's own references.
    mutating func compactRegistry(keeping keep: [Bool]) -> [Int32] {
        let (fresh, map) = registry.compacted(keeping: keep)
        registry = fresh
        current = current.remapped(map)
        return map
    }

    mutating func intern(_ spec: RuleSpec) -> Int { registry.intern(spec) }

    /// The rule a remove selector (name or 12-digit id) means in the current set.
    func resolve(_ selector: String) -> RuleSpec? {
        currentSpecs.first { spec in
            spec.name == selector || RuleID(deriving: spec.input).description == selector
        }
    }

    /// Memberships the host must hold for these rules on the interfaces that are up: a group
    /// with an any-source rule is joined from any source; a group with only source-specific
    /// rules is joined once per source. Written from the rules, not taken from the core.
    static func neededMemberships(_ specs: [RuleSpec], isUp: (InterfaceName) -> Bool) -> Set<MembershipKey> {
        // A prefix has no group to join (a proxy joins what listeners want in it).
        let specs = specs.filter { $0.input.prefixLength == nil }
        var anySource = Set<MembershipKey>()
        for spec in specs where spec.input.source == nil && isUp(spec.input.interface) {
            anySource.insert(MembershipKey(interface: spec.input.interface, group: spec.input.group))
        }
        var needed = anySource
        for spec in specs where isUp(spec.input.interface) {
            guard let source = spec.input.source else { continue }
            let group = MembershipKey(interface: spec.input.interface, group: spec.input.group)
            if !anySource.contains(group) {
                needed.insert(MembershipKey(interface: spec.input.interface, group: spec.input.group, source: source))
            }
        }
        return needed
    }
}

/// A broken invariant, with when and what.
public struct Violation: Sendable, Equatable, Codable, CustomStringConvertible {
    public var invariant: String
    public var timeNanoseconds: UInt64
    public var detail: String

    enum CodingKeys: String, CodingKey {
        case invariant, timeNanoseconds = "time_ns", detail
    }

    public var description: String {
        "\(invariant) at \(Instant(nanoseconds: timeNanoseconds)): \(detail)"
    }
}

/// Names of the invariants, as they appear in reports.
public enum InvariantName {
    public static let noForwardWithoutRule = "no_forward_without_rule"
    public static let noDuplicateForward = "no_duplicate_forward"
    public static let correctDestination = "correct_destination"
    public static let helperSocketLimit = "helper_socket_limit"
    public static let countersAddUp = "counters_add_up"
    public static let kernelCallsValid = "kernel_calls_valid"
    public static let liveness = "liveness"
    /// A follow output carries what a listener on its interface wants (`ListenerOracle`).
    public static let followOutputOpen = "follow_output_open"
    /// A follow output carries nothing no listener wants (`ListenerOracle`).
    public static let followOutputClosed = "follow_output_closed"
    /// One querier per segment once the election settles (`ListenerOracle`).
    public static let singleQuerier = "single_querier"
    public static let all = [noForwardWithoutRule, noDuplicateForward, correctDestination, helperSocketLimit,
                             countersAddUp, kernelCallsValid, liveness, followOutputOpen, followOutputClosed, singleQuerier]
}
