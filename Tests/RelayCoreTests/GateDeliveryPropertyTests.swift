import Testing
@testable import RelayCore

/// The control plane and its workers over a lossy channel, with a host on out1 joining and
/// leaving two groups (IGMPv3 state-change reports) and workers restarting: after every burst of
/// such history the channel turns reliable for a moment, and then every worker's gates must be
/// exactly what the listener state says. A deliberately broken worker shows the check can fail.
@Suite struct GateDeliveryPropertyTests {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {  // SplitMix64
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    enum Breakage { case none, ignoreClosing, noReplay }

    static let out1 = iface("out1")
    static let groups: [IPAddress] = [.v4(ip("239.9.1.1")), .v4(ip("239.9.1.2"))]

    /// Runs one seeded history; returns the mismatches the check found.
    func run(seed: UInt64, breakage: Breakage = .none) throws -> [String] {
        try history(seed: seed, breakage: breakage).mismatches
    }

    /// The mismatches, and how many checks found a gate wanted and not wanted (so a history
    /// that never opens or never closes would show).
    func history(seed: UInt64, breakage: Breakage = .none) throws -> (mismatches: [String], wanted: Int, unwanted: Int) {
        var wantedChecks = 0, unwantedChecks = 0
        var random = Generator(state: seed)
        var plane = ControlPlane(configuration: .init(workerCount: 2))
        var workers = [WorkerCore(worker: WorkerID(0)), WorkerCore(worker: WorkerID(1))]
        var now = Instant.zero
        var timer: Instant?
        var lossy = true
        var mismatches: [String] = []

        func pump() {
            while let action = plane.poll() {
                switch action {
                case let .setTimer(at): timer = at
                case var .sendPlan(plan):
                    if breakage == .noReplay { plan.gates = []; plan.gateVersion = 0 }
                    guard !(lossy && Int.random(in: 0..<10, using: &random) < 3) else { continue }
                    let index = plan.worker.rawValue
                    _ = workers[index].apply(plan)
                    guard !(lossy && Int.random(in: 0..<10, using: &random) < 3) else { continue }
                    plane.handle(.workerAcknowledged(plan.worker, version: plan.version), now: now)
                case var .sendGates(delta):
                    guard !(lossy && Int.random(in: 0..<10, using: &random) < 3) else { continue }
                    let index = delta.worker.rawValue
                    switch breakage {
                    case .none: break
                    case .ignoreClosing: delta.entries.removeAll { $0.filter.isClosed }
                    case .noReplay: if delta.base == 0 { continue }
                    }
                    let outcome = workers[index].applyGates(delta)
                    guard !(lossy && Int.random(in: 0..<10, using: &random) < 3) else { continue }
                    switch outcome {
                    case let .current(version): plane.handle(.workerGatesAcknowledged(delta.worker, version: version), now: now)
                    case let .behind(version): plane.handle(.workerGatesBehind(delta.worker, version: version), now: now)
                    }
                default: break
                }
            }
        }
        func advance(_ duration: Duration) {
            let end = now + duration
            while let due = timer, due <= end {
                now = max(now, due)
                timer = nil
                plane.handle(.timerFired, now: now)
                pump()
            }
            now = end
        }
        func report(_ type: GroupRecordType, _ group: IPAddress) {
            let message = ListenerMessage.v3Report([GroupRecord(type, group: group)])
            plane.handle(.listener(.received(Self.out1, ListenerFrame.Received(
                message: message, source: .v4(ip("198.19.1.7")), destination: .v4(ip("224.0.0.22"))))), now: now)
            pump()
        }

        for worker in 0..<2 { plane.handle(.workerStarted(WorkerID(worker)), now: now) }
        plane.handle(.interfaceUp(iface("in0")), now: now)
        plane.handle(.listener(.start(Self.out1, .ipv4, address: .v4(ip("198.19.1.1")),
                                      configuration: ListenerConfiguration())), now: now)
        try plane.addRule(spec("in0:239.1.1.1:5000", Self.groups.map { "out1:\($0):5000:listeners" } + ["out2:239.8.1.1:5000"]), now: now)
        pump()

        for burst in 0..<30 {
            lossy = true
            for _ in 0..<20 {
                switch Int.random(in: 0..<10, using: &random) {
                case 0, 1: report(.changeToExclude, Self.groups.randomElement(using: &random)!)
                case 2, 3: report(.changeToInclude, Self.groups.randomElement(using: &random)!)
                case 4:
                    let index = Int.random(in: 0..<2, using: &random)
                    plane.handle(.workerExited(WorkerID(index)), now: now)
                    workers[index] = WorkerCore(worker: WorkerID(index))
                    plane.handle(.workerStarted(WorkerID(index)), now: now)
                    pump()
                default: break
                }
                advance(.milliseconds(Int64.random(in: 10...400, using: &random)))
            }
            // Reliable for two resend intervals: everything sent by then must have landed.
            lossy = false
            advance(.milliseconds(600))
            for (index, worker) in workers.enumerated() {
                for (position, group) in Self.groups.enumerated() {
                    let wanted = plane.listeners.wantsAnySource(interface: Self.out1, group: group)
                    let open = worker.forwarder.isOpen(route: 0, output: position)
                    if wanted { wantedChecks += 1 } else { unwantedChecks += 1 }
                    if wanted != open {
                        mismatches.append("seed \(seed) burst \(burst): worker \(index) has \(group) \(open ? "open" : "closed"), listeners \(wanted ? "want it" : "do not")")
                    }
                }
                if !worker.forwarder.isOpen(route: 0, output: 2) { mismatches.append("seed \(seed): the static output closed") }
            }
        }
        return (mismatches, wantedChecks, unwantedChecks)
    }

    @Test(arguments: 1...20)
    func gatesConvergeToTheListenerStateDespiteLossAndRestarts(seed: UInt64) throws {
        let result = try history(seed: seed)
        #expect(result.mismatches.isEmpty, "\(result.mismatches.prefix(5))")
        #expect(result.wanted > 0 && result.unwanted > 0, "the history must both open and close gates: \(result.wanted) / \(result.unwanted)")
    }

    @Test func aBrokenWorkerIsCaught() throws {
        let closing = try (1...5).map { try run(seed: $0, breakage: .ignoreClosing).count }.reduce(0, +)
        #expect(closing > 0, "a worker that never closes a gate must be caught")
        let replay = try (1...5).map { try run(seed: $0, breakage: .noReplay).count }.reduce(0, +)
        #expect(replay > 0, "a restarted worker that is not given the whole table must be caught")
    }
}
