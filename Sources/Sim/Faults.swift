import RelayCore

/// Fault probabilities for a run. Every probability is per opportunity (per ingress frame,
/// per join, per send, per control message); flaps and crashes are rates per simulated second.
public struct FaultSpec: Sendable, Equatable, CustomStringConvertible {
    public var ingressLoss = 0.0
    public var ingressDuplicate = 0.0
    public var ingressReorder = 0.0
    public var ingressDelay = 0.0
    public var truncate = 0.0
    public var corrupt = 0.0
    public var joinFailure = 0.0
    public var sendFailure = 0.0
    public var flapsPerSecond = 0.0
    public var crashesPerSecond = 0.0
    public var controlLoss = 0.0
    public var controlDelay = 0.0

    public init() {}

    public static let none = FaultSpec()

    /// Names used on the command line and in reports, with their key paths.
    nonisolated(unsafe) static let fields: [(String, WritableKeyPath<FaultSpec, Double>, String)] = [
        ("loss", \.ingressLoss, "ingress frame lost"),
        ("dup", \.ingressDuplicate, "ingress frame duplicated"),
        ("reorder", \.ingressReorder, "ingress frame held back 20 µs to 2 ms, so later frames overtake it"),
        ("delay", \.ingressDelay, "ingress frame delayed by up to 5 ms"),
        ("truncate", \.truncate, "ingress frame cut short"),
        ("corrupt", \.corrupt, "one ingress byte flipped"),
        ("join", \.joinFailure, "join refused (EADDRNOTAVAIL, ENOMEM or ENOBUFS)"),
        ("send", \.sendFailure, "send refused (EAGAIN or ENOBUFS)"),
        ("flap", \.flapsPerSecond, "interface down/up per simulated second"),
        ("crash", \.crashesPerSecond, "worker crashes per simulated second"),
        ("ctl_loss", \.controlLoss, "supervisor/worker message lost"),
        ("ctl_delay", \.controlDelay, "supervisor/worker message delayed by up to 50 ms"),
    ]

    public var isNone: Bool { self == .none }
    var hasIngressFaults: Bool {
        ingressLoss > 0 || ingressDuplicate > 0 || ingressReorder > 0 || ingressDelay > 0 || truncate > 0 || corrupt > 0
    }

    /// `none`, or comma-separated `NAME=PROBABILITY` (names: loss, dup, reorder, delay, truncate,
    /// corrupt, join, send, flap, crash, ctl_loss, ctl_delay). `swarm` is handled by the caller.
    public static func parse(_ text: String) throws(SimError) -> FaultSpec {
        var spec = FaultSpec()
        if text == "none" || text.isEmpty { return spec }
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let field = fields.first(where: { $0.0 == parts[0] }) else {
                throw SimError.usage("--faults \"\(item)\": expected NAME=VALUE with NAME one of "
                    + fields.map(\.0).joined(separator: ", ") + " (or the whole value \"none\" or \"swarm\")")
            }
            guard let value = Double(parts[1]), value >= 0, value.isFinite,
                  field.0 == "flap" || field.0 == "crash" || value <= 1 else {
                throw SimError.usage("--faults \"\(item)\": \(field.0) must be a probability 0-1"
                    + (field.0 == "flap" || field.0 == "crash" ? " (a rate per second, >= 0)" : ""))
            }
            spec[keyPath: field.1] = value
        }
        return spec
    }

    /// The canonical form `parse` reads back (non-zero fields only, fixed order).
    public var description: String {
        let parts = Self.fields.compactMap { name, path, _ -> String? in
            let value = self[keyPath: path]
            return value == 0 ? nil : "\(name)=\(Self.format(value))"
        }
        return parts.isEmpty ? "none" : parts.joined(separator: ",")
    }

    static func format(_ value: Double) -> String {
        // Six significant decimals are plenty and print the same everywhere.
        let scaled = (value * 1_000_000).rounded()
        let whole = Int(scaled) / 1_000_000
        var fraction = String(Int(scaled) % 1_000_000).leftPadded(6)
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return fraction.isEmpty ? "\(whole)" : "\(whole).\(fraction)"
    }

    /// Swarm testing: the seed decides which faults are on and how hard, so different seeds
    /// explore different mixes instead of every run having a little of everything.
    public static func swarm(seed: UInt64) -> FaultSpec {
        var rng = SimRandom.stream(seed: seed, label: "swarm")
        var spec = FaultSpec()
        for (name, path, _) in fields {
            let on = rng.chance(0.4)
            let magnitude = rng.unit()
            guard on else { continue }
            let value: Double
            switch name {
            case "flap", "crash": value = 0.2 + magnitude * 3  // per second
            case "join", "ctl_loss": value = 0.02 + magnitude * 0.5
            default: value = 0.001 + magnitude * magnitude * 0.1
            }
            spec[keyPath: path] = (value * 1_000_000).rounded() / 1_000_000
        }
        return spec
    }
}

/// A fault chosen up front, as a value, so property tests can generate fault schedules and
/// shrink them to the smallest one that still breaks something.
public enum ScheduledFault: Sendable, Hashable, CustomStringConvertible {
    case dropFrame(Int)
    case duplicateFrame(Int)
    case delayFrame(Int, microseconds: Int)
    case truncateFrame(Int, keep: Int)
    case corruptFrame(Int, byte: Int)
    /// The n-th join the relay asks for (0-based) fails.
    case failJoin(Int)
    /// The n-th send fails with EAGAIN.
    case failSend(Int)
    /// The n-th supervisor/worker message is lost.
    case loseControl(Int)
    /// Interface (index into the run's sorted interface names) down at `atMs` for `forMs`.
    case flap(interface: Int, atMs: Int, forMs: Int)
    case crash(worker: Int, atMs: Int)

    public var description: String {
        switch self {
        case let .dropFrame(n): "drop frame \(n)"
        case let .duplicateFrame(n): "duplicate frame \(n)"
        case let .delayFrame(n, us): "delay frame \(n) by \(us) us"
        case let .truncateFrame(n, keep): "truncate frame \(n) to \(keep) bytes"
        case let .corruptFrame(n, byte): "corrupt byte \(byte) of frame \(n)"
        case let .failJoin(n): "fail join #\(n)"
        case let .failSend(n): "fail send #\(n)"
        case let .loseControl(n): "lose control message #\(n)"
        case let .flap(interface, at, duration): "flap interface #\(interface) at \(at) ms for \(duration) ms"
        case let .crash(worker, at): "crash worker \(worker) at \(at) ms"
        }
    }
}

/// What happens to one ingress frame on its way to the relay's host.
enum IngressFate: Equatable {
    case deliver
    case drop
    case duplicate(gap: UInt64)
    case delay(UInt64, reorder: Bool)
    case truncate(keep: Int)
    case corrupt(byte: Int, mask: UInt8)
}

/// Fault counts for the report.
public struct FaultCounts: Sendable, Equatable, Codable {
    public var ingressLost = 0
    public var ingressDuplicated = 0
    public var ingressReordered = 0
    public var ingressDelayed = 0
    public var truncated = 0
    public var corrupted = 0
    public var joinsFailed = 0
    public var sendsFailed = 0
    public var interfaceFlaps = 0
    public var workerCrashes = 0
    public var controlMessagesLost = 0
    public var controlMessagesDelayed = 0

    enum CodingKeys: String, CodingKey {
        case ingressLost = "ingress_lost", ingressDuplicated = "ingress_duplicated"
        case ingressReordered = "ingress_reordered", ingressDelayed = "ingress_delayed"
        case truncated, corrupted
        case joinsFailed = "joins_failed", sendsFailed = "sends_failed"
        case interfaceFlaps = "interface_flaps", workerCrashes = "worker_crashes"
        case controlMessagesLost = "control_messages_lost", controlMessagesDelayed = "control_messages_delayed"
    }

    public var total: Int {
        ingressLost + ingressDuplicated + ingressReordered + ingressDelayed + truncated + corrupted + joinsFailed
            + sendsFailed + interfaceFlaps + workerCrashes + controlMessagesLost + controlMessagesDelayed
    }
}

/// Decides, site by site, whether a fault fires: from the seed and a `FaultSpec`, or from an
/// explicit schedule. Each site draws from its own stream, so the traffic faults of a run do
/// not change when, say, one more join happens.
struct FaultInjector {
    var spec: FaultSpec
    var schedule: [ScheduledFault]
    var enabled = true
    private var ingressRNG: SimRandom
    private var joinRNG: SimRandom
    private var sendRNG: SimRandom
    private var controlRNG: SimRandom
    private var scheduledIngress: [Int: IngressFate] = [:]
    private var scheduledJoins: Set<Int> = []
    private var scheduledSends: Set<Int> = []
    private var scheduledControl: Set<Int> = []
    private var joinCount = 0
    private var sendCount = 0
    private var controlCount = 0
    let ingressActive: Bool
    let sendActive: Bool

    init(spec: FaultSpec, schedule: [ScheduledFault], seed: UInt64) {
        self.spec = spec
        self.schedule = schedule
        ingressRNG = .stream(seed: seed, label: "ingress")
        joinRNG = .stream(seed: seed, label: "join")
        sendRNG = .stream(seed: seed, label: "send")
        controlRNG = .stream(seed: seed, label: "control")
        for fault in schedule {
            switch fault {
            case let .dropFrame(n): scheduledIngress[n] = .drop
            case let .duplicateFrame(n): scheduledIngress[n] = .duplicate(gap: 1_000)
            case let .delayFrame(n, us): scheduledIngress[n] = .delay(UInt64(max(0, us)) * 1_000, reorder: false)
            case let .truncateFrame(n, keep): scheduledIngress[n] = .truncate(keep: max(0, keep))
            case let .corruptFrame(n, byte): scheduledIngress[n] = .corrupt(byte: max(0, byte), mask: 0x5A)
            case let .failJoin(n): scheduledJoins.insert(n)
            case let .failSend(n): scheduledSends.insert(n)
            case let .loseControl(n): scheduledControl.insert(n)
            case .flap, .crash: break  // timed: scheduled by the simulation at start
            }
        }
        ingressActive = spec.hasIngressFaults || !scheduledIngress.isEmpty
        sendActive = spec.sendFailure > 0 || !scheduledSends.isEmpty
    }

    mutating func ingressFate(frame: Int, length: Int) -> IngressFate {
        guard enabled else { return .deliver }
        if let fate = scheduledIngress[frame] { return fate }
        guard spec.hasIngressFaults else { return .deliver }
        let s = spec
        // Always the same number of draws per frame, so fates do not shift with probabilities.
        let r = (ingressRNG.unit(), ingressRNG.unit(), ingressRNG.unit(), ingressRNG.unit(), ingressRNG.unit(),
                 ingressRNG.unit(), ingressRNG.next())
        if r.0 < s.ingressLoss { return .drop }
        if r.1 < s.ingressDuplicate { return .duplicate(gap: 1_000 + r.6 % 100_000) }
        if r.2 < s.ingressReorder { return .delay(20_000 + r.6 % 2_000_000, reorder: true) }
        if r.3 < s.ingressDelay { return .delay(r.6 % 5_000_000, reorder: false) }
        if r.4 < s.truncate, length > 0 { return .truncate(keep: Int(r.6 % UInt64(length))) }
        if r.5 < s.corrupt, length > 0 {
            return .corrupt(byte: Int(r.6 % UInt64(length)), mask: UInt8(truncatingIfNeeded: r.6 >> 32) | 1)
        }
        return .deliver
    }

    /// nil: the join goes to the kernel; otherwise the error it fails with before that.
    mutating func joinFault() -> JoinError? {
        defer { joinCount += 1 }
        guard enabled else { return nil }
        if scheduledJoins.contains(joinCount) { return .notAvailable }
        guard spec.joinFailure > 0 else { return nil }
        let fail = joinRNG.chance(spec.joinFailure)
        let kind = joinRNG.below(3)
        guard fail else { return nil }
        return [.notAvailable, .other(errno: 12), .socketFull][kind]  // EADDRNOTAVAIL, ENOMEM, ENOBUFS
    }

    /// nil: the send goes ahead; otherwise the errno it fails with.
    @inline(__always)
    mutating func sendFault() -> Int32? {
        defer { sendCount += 1 }
        guard enabled else { return nil }
        if scheduledSends.contains(sendCount) { return 11 }
        guard spec.sendFailure > 0 else { return nil }
        let draw = sendRNG.next()
        guard Double(draw >> 11) * 0x1.0p-53 < spec.sendFailure else { return nil }
        return draw & 1 == 0 ? 11 : 105  // EAGAIN, ENOBUFS
    }

    enum ControlFate: Equatable { case deliver, lose, delay(UInt64) }

    mutating func controlFate() -> ControlFate {
        defer { controlCount += 1 }
        guard enabled else { return .deliver }
        if scheduledControl.contains(controlCount) { return .lose }
        guard spec.controlLoss > 0 || spec.controlDelay > 0 else { return .deliver }
        let lose = controlRNG.chance(spec.controlLoss)
        let delay = controlRNG.chance(spec.controlDelay)
        let amount = controlRNG.next() % 50_000_000
        if lose { return .lose }
        if delay { return .delay(amount) }
        return .deliver
    }
}
