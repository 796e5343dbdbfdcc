import Collections

/// The validated set of active rules. Iteration order is insertion order (never hash order),
/// so everything derived from it — joins, dispatch, reports — is deterministic.
///
/// Duplicate inputs: adding a rule whose input already exists with *identical* outputs (and
/// name) is idempotent and returns the existing rule; with different outputs it is refused
/// (`conflictingInput`), because silently merging or overwriting would change a stream
/// another operator set up. `replaceAll` is the way to change a rule's outputs.
public struct RuleBook: Sendable {
    public static let maximumOutputsPerRule = 64

    public private(set) var rules: OrderedDictionary<RuleID, Rule> = [:]
    private var idsByName: [String: RuleID] = [:]
    /// Where rules listen and where they send, so the loop check is a lookup, not a scan
    /// over every rule (which made loading 10,000 rules quadratic).
    private var inputs: [Endpoint: Set<RuleID>] = [:]
    private var outputs: [Endpoint: Set<RuleID>] = [:]
    /// Rules whose input is a prefix or any port.
    private var rangeRules: Set<RuleID> = []

    /// An (interface, address, port) triple, ignoring source and TTL: what "feeds" compares.
    struct Endpoint: Hashable, Sendable {
        var interface: InterfaceName
        var address: IPAddress
        var port: UInt16
        init(_ input: InputSpec) { (interface, address, port) = (input.interface, input.group, input.port) }
        init(_ output: OutputSpec) { (interface, address, port) = (output.interface, output.destination, output.port) }
    }

    public init() {}

    public enum AddOutcome: Equatable, Sendable {
        case added(Rule)
        case unchanged(Rule)
        public var rule: Rule {
            switch self { case let .added(rule), let .unchanged(rule): rule }
        }
    }

    public var count: Int { rules.count }
    public subscript(id: RuleID) -> Rule? { rules[id] }

    /// A rule by its id (12 hex digits) or its name.
    public func rule(matching selector: String) -> Rule? {
        if let id = RuleID(selector), let rule = rules[id] { return rule }
        return idsByName[selector].flatMap { rules[$0] }
    }

    @discardableResult
    public mutating func add(_ spec: RuleSpec) throws(RuleError) -> AddOutcome {
        let rule = try Self.validated(spec)
        if let existing = rules[rule.id] {
            guard existing.input == rule.input else { throw .idCollision(rule.id, existing: existing.input) }
            guard existing.outputs == rule.outputs, existing.name == rule.name else {
                throw .conflictingInput(rule.input, existing: existing.id)
            }
            return .unchanged(existing)
        }
        try checkAgainstOthers(rule, ignoring: [])
        insert(rule)
        return .added(rule)
    }

    @discardableResult
    public mutating func remove(_ selector: String) throws(RuleError) -> Rule {
        guard let rule = rule(matching: selector) else { throw .noSuchRule(selector) }
        erase(rule.id)
        return rule
    }

    public struct Diff: Equatable, Sendable {
        public var removed: [Rule] = []
        public var added: [Rule] = []
        public var unchanged: [Rule] = []
        public var isEmpty: Bool { removed.isEmpty && added.isEmpty }
    }

    /// Replaces the whole set (a config reload) atomically: either every spec is valid
    /// together and the book becomes exactly that set, or nothing changes. Rules whose
    /// spec is identical are untouched, so their streams and counters carry on.
    @discardableResult
    public mutating func replaceAll(with specs: [RuleSpec]) throws(RuleError) -> Diff {
        var next = RuleBook()
        for spec in specs { try next.add(spec) }
        var diff = Diff()
        for (id, rule) in rules where next.rules[id] != rule { diff.removed.append(rule) }
        for (id, rule) in next.rules {
            if rules[id] == rule { diff.unchanged.append(rule) } else { diff.added.append(rule) }
        }
        self = next
        return diff
    }

    // MARK: - Validation

    public static func validated(_ spec: RuleSpec) throws(RuleError) -> Rule {
        let input = spec.input
        if let length = input.prefixLength {
            guard GroupRange.isMulticast(base: input.group, length: length) else { throw .inputRangeNotMulticast(input) }
            guard !GroupRange.includesLinkScoped(base: input.group, length: length) else {
                throw .inputRangeLinkScoped(input)
            }
            guard GroupRange.truncated(input.group, to: length) == input.group else { throw .inputRangeHostBits(input) }
        } else {
            guard input.group.isMulticast else { throw .inputNotMulticast(input.group) }
            guard !input.group.isLinkScopedGroup else { throw .inputLocalNetworkControl(input.group) }
        }
        if let source = input.source {
            guard source.family == input.group.family else { throw .sourceFamilyMismatch(source, group: input.group) }
            // A link-local source is a host on the input's link; it is as specific as any.
            guard source.isUnicast else { throw .sourceNotUnicast(source) }
        }
        if let name = spec.name, !isValidName(name) { throw .badName(name) }
        guard !spec.outputs.isEmpty else { throw .noOutputs }
        guard spec.outputs.count <= maximumOutputsPerRule else {
            throw .tooManyOutputs(spec.outputs.count, limit: maximumOutputsPerRule)
        }
        let id = RuleID(deriving: input)
        var seen = Set<OutputSpec>()
        for output in spec.outputs {
            guard output.port != 0 else { throw .outputPortZero(output) }
            guard output.ttl != 0 else { throw .outputTTLZero(output) }
            let destination = output.destination
            // An output may be of the other family than its input: the relay builds every frame
            // itself, so an IPv4 stream can be carried into an IPv6-only network and back.
            guard destination.isUnicast || (destination.isMulticast && !destination.isLinkScopedGroup)
            else { throw .outputDestinationInvalid(output) }
            guard seen.insert(output).inserted else { throw .duplicateOutput(output) }
            if feeds(output, input) { throw .outputFeedsInput(output, id) }
        }
        return Rule(id: id, name: spec.name, input: input, outputs: spec.outputs)
    }

    /// An output feeds an input when what it sends arrives where the input listens. Any
    /// source-specific filter is ignored: the relay's own address is not known here, so
    /// the check errs on the side of refusing a loop.
    static func feeds(_ output: OutputSpec, _ input: InputSpec) -> Bool {
        output.interface == input.interface && input.covers(group: output.destination, port: output.port)
    }

    static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), RuleID(name) == nil else { return false }
        return name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
    }

    private func checkAgainstOthers(_ rule: Rule, ignoring: Set<RuleID>) throws(RuleError) {
        if let name = rule.name, let holder = idsByName[name], holder != rule.id, !ignoring.contains(holder) {
            throw .nameInUse(name, existing: holder)
        }
        for output in rule.outputs {
            if let fed = inputs[Endpoint(output)]?.subtracting(ignoring).min() {
                throw .outputFeedsInput(output, fed)
            }
        }
        if let feeder = outputs[Endpoint(rule.input)]?.subtracting(ignoring).min() {
            throw .inputFedByOutput(rule.input, feeder)
        }
        try checkRanges(rule, ignoring: ignoring)
    }

    /// Range inputs are few, so loops through them are found by a scan: a new rule's outputs
    /// against every range input, a new range input against every output on its interface.
    ///
    /// Overlapping inputs need no check: matching is by specificity, compared field by field
    /// — a longer prefix (an exact group is the longest) beats a shorter one whatever the
    /// ports, then a port beats any port, then a source beats any source — so two distinct
    /// inputs that overlap always have a winner, and inputs equal in all three are one input
    /// (one rule id: `conflictingInput`).
    private func checkRanges(_ rule: Rule, ignoring: Set<RuleID>) throws(RuleError) {
        for output in rule.outputs {
            for id in rangeRules.sorted() where !ignoring.contains(id) {
                if let other = rules[id], Self.feeds(output, other.input) { throw .outputFeedsInput(output, id) }
            }
        }
        guard rule.input.isRange else { return }
        var feeders: Set<RuleID> = []
        for (endpoint, ids) in outputs where endpoint.interface == rule.input.interface
            && rule.input.covers(group: endpoint.address, port: endpoint.port) {
            feeders.formUnion(ids.subtracting(ignoring))
        }
        if let feeder = feeders.min() { throw .inputFedByOutput(rule.input, feeder) }
    }

    private mutating func insert(_ rule: Rule) {
        rules[rule.id] = rule
        if let name = rule.name { idsByName[name] = rule.id }
        inputs[Endpoint(rule.input), default: []].insert(rule.id)
        if rule.input.isRange { rangeRules.insert(rule.id) }
        for output in rule.outputs { outputs[Endpoint(output), default: []].insert(rule.id) }
    }

    private mutating func erase(_ id: RuleID) {
        guard let rule = rules.removeValue(forKey: id) else { return }
        if let name = rule.name { idsByName[name] = nil }
        Self.remove(id, at: Endpoint(rule.input), from: &inputs)
        rangeRules.remove(id)
        for output in rule.outputs { Self.remove(id, at: Endpoint(output), from: &outputs) }
    }

    private static func remove(_ id: RuleID, at endpoint: Endpoint, from index: inout [Endpoint: Set<RuleID>]) {
        index[endpoint]?.remove(id)
        if index[endpoint]?.isEmpty == true { index[endpoint] = nil }
    }
}
