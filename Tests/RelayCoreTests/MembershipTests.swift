import Collections
import PropertyBased
import Testing
@testable import RelayCore

/// A small model of the kernel's side of IGMP joins, for driving the control plane in tests:
/// each helper socket holds at most `limit` groups (ENOBUFS past it, as
/// `net.ipv4.igmp_max_memberships` does); joins on a down interface fail with ENODEV.
struct KernelJoinModel {
    var limit: Int
    var up: Set<InterfaceName> = []
    var sockets: [HelperSocketID: Set<MembershipKey>] = [:]
    var failNext: [JoinError] = []

    mutating func execute(_ action: ControlAction) -> ControlEvent? {
        switch action {
        case .listener:
            break  // no querier interfaces in these tests
        case let .openHelperSocket(socket):
            precondition(sockets[socket] == nil, "socket \(socket) opened twice")
            sockets[socket] = []
        case let .closeHelperSocket(socket):
            precondition(sockets[socket] != nil, "closing unknown socket \(socket)")
            sockets[socket] = nil
        case let .join(request):
            guard sockets[request.socket] != nil else { return .joinCompleted(request.ticket, .failed(.other(errno: 9))) }
            if !failNext.isEmpty { return .joinCompleted(request.ticket, .failed(failNext.removeFirst())) }
            guard up.contains(request.membership.interface) else { return .joinCompleted(request.ticket, .failed(.noSuchDevice)) }
            let groups = Set(sockets[request.socket]!.map(\.group))
            if !groups.contains(request.membership.group) && groups.count >= limit {
                return .joinCompleted(request.ticket, .failed(.socketFull))
            }
            guard sockets[request.socket]!.insert(request.membership).inserted else {
                return .joinCompleted(request.ticket, .failed(.alreadyMember))
            }
            return .joinCompleted(request.ticket, .joined)
        case let .leave(request):
            precondition(sockets[request.socket]?.remove(request.membership) != nil, "leave of \(request.membership) not held")
        case .sendPlan, .sendGates, .setTimer, .report:
            break
        }
        return nil
    }

    /// Memberships the kernel holds, over all sockets.
    var memberships: Set<MembershipKey> { sockets.values.reduce(into: []) { $0.formUnion($1) } }
    var maxGroupsPerSocket: Int { sockets.values.map { Set($0.map(\.group)).count }.max() ?? 0 }
}

/// Runs a control plane against the kernel model, delivering join results immediately
/// (or holding them back to test staleness) and firing timers when time advances.
struct Harness {
    var plane: ControlPlane
    var kernel: KernelJoinModel
    var now = Instant.zero
    var timer: Instant?
    var held: [ControlEvent] = []
    var holdResults = false
    var reports: [Report] = []
    var plans: [WorkerPlan] = []

    init(socketLimit: Int = 20, kernelLimit: Int = 20, workers: Int = 1) {
        plane = ControlPlane(configuration: .init(socketLimit: socketLimit, workerCount: workers))
        kernel = KernelJoinModel(limit: kernelLimit)
    }

    mutating func pump() {
        var guardCount = 0
        while let action = plane.poll() {
            guardCount += 1
            precondition(guardCount < 1_000_000, "action storm")
            if case let .setTimer(at) = action { timer = at }
            if case let .report(report) = action { reports.append(report) }
            if case let .sendPlan(plan) = action { plans.append(plan) }
            if let event = kernel.execute(action) {
                if holdResults { held.append(event) } else { plane.handle(event, now: now) }
            }
        }
    }

    mutating func up(_ name: String) { kernel.up.insert(iface(name)); plane.handle(.interfaceUp(iface(name)), now: now); pump() }
    mutating func down(_ name: String) { kernel.up.remove(iface(name)); plane.handle(.interfaceDown(iface(name)), now: now); pump() }
    mutating func add(_ s: RuleSpec) throws { try plane.addRule(s, now: now); pump() }
    mutating func remove(_ selector: String) throws { try plane.removeRule(selector, now: now); pump() }

    mutating func releaseHeld() {
        let events = held
        held = []
        for event in events { plane.handle(event, now: now) }
        pump()
    }

    /// Advances simulated time through every pending timer (bounded).
    mutating func settle(maxSteps: Int = 1000) {
        holdResults = false
        releaseHeld()
        for _ in 0..<maxSteps {
            guard let deadline = timer else { return }
            now = max(now, deadline)
            timer = nil
            plane.handle(.timerFired, now: now)
            pump()
        }
    }

    var needed: Set<MembershipKey> {
        ControlPlane.neededMemberships(for: plane.rules.rules.values).filter { kernel.up.contains($0.interface) }
    }
}

@Suite struct MembershipTests {
    @Test func fiftyGroupsOnOneInterfaceUseThreeHelperSockets() throws {
        var h = Harness()
        h.up("eth0")
        for index in 1...50 { try h.add(spec("eth0:239.1.1.\(index):5000", ["eth1:239.2.1.\(index):5000"])) }
        #expect(h.kernel.memberships.count == 50)
        #expect(Set(h.plane.membership.joined) == h.needed)
        #expect(h.plane.membership.socketUsage.map(\.groups) == [20, 20, 10])
        #expect(h.kernel.maxGroupsPerSocket <= 20)
    }

    @Test func lowerKernelLimitIsLearnedAndGroupsMove() throws {
        var h = Harness(socketLimit: 20, kernelLimit: 5)
        h.up("eth0")
        for index in 1...12 { try h.add(spec("eth0:239.1.1.\(index):5000", ["eth1:239.2.1.\(index):5000"])) }
        h.settle()
        #expect(Set(h.plane.membership.joined) == h.needed)
        #expect(h.kernel.maxGroupsPerSocket <= 5)
        #expect(h.reports.contains(.socketCapacityLearned(HelperSocketID(interface: iface("eth0"), ordinal: 0), capacity: 5)))
    }

    @Test func groupSharedByTwoRulesIsJoinedOnceAndLeftWithTheLast() throws {
        var h = Harness()
        h.up("eth0")
        try h.add(spec("eth0:239.1.1.1:5000", ["eth1:239.2.1.1:5000"], name: "a"))
        try h.add(spec("eth0:239.1.1.1:6000", ["eth1:239.2.1.2:6000"], name: "b"))
        #expect(h.kernel.memberships.count == 1)
        try h.remove("a")
        #expect(h.kernel.memberships.count == 1)
        try h.remove("b")
        #expect(h.kernel.memberships.isEmpty)
        #expect(h.kernel.sockets.isEmpty, "an empty helper socket is closed")
    }

    @Test func anySourceJoinSubsumesSourceSpecificOnes() throws {
        var h = Harness()
        h.up("eth0")
        try h.add(spec("eth0:239.1.1.1:5000", ["eth1:239.2.1.1:5000"], source: "198.18.1.1"))
        try h.add(spec("eth0:239.1.1.1:5001", ["eth1:239.2.1.2:5000"], source: "198.18.1.2"))
        #expect(h.kernel.memberships.map(\.source).compactMap { $0 }.count == 2)
        try h.add(spec("eth0:239.1.1.1:5002", ["eth1:239.2.1.3:5000"]))
        #expect(h.kernel.memberships == [MembershipKey(interface: iface("eth0"), group: ip("239.1.1.1"))])
    }

    @Test func failedJoinIsRetriedWithBackoffAndReported() throws {
        var h = Harness()
        h.up("eth0")
        h.kernel.failNext = [.other(errno: 105), .other(errno: 105), .other(errno: 105)]
        try h.add(spec("eth0:239.1.1.1:5000", ["eth1:239.2.1.1:5000"]))
        #expect(h.kernel.memberships.isEmpty)
        #expect(h.timer == Instant.zero + .milliseconds(100))
        h.settle()
        #expect(h.kernel.memberships.count == 1)
        #expect(h.now == Instant.zero + .milliseconds(700), "100 + 200 + 400 ms of backoff")
        let failures = h.reports.filter { if case .joinFailed = $0 { true } else { false } }
        #expect(failures.count == 3)
        #expect(h.reports.last == .joinRecovered(MembershipKey(interface: iface("eth0"), group: ip("239.1.1.1")),
                                                 socket: HelperSocketID(interface: iface("eth0"), ordinal: 0), afterFailures: 3))
        #expect(h.timer == nil)
    }

    @Test func interfaceDownAndUpRejoinsEverything() throws {
        var h = Harness()
        h.up("eth0")
        for index in 1...25 { try h.add(spec("eth0:239.1.1.\(index):5000", ["eth1:239.2.1.\(index):5000"])) }
        h.down("eth0")
        #expect(h.kernel.sockets.isEmpty)
        #expect(h.plane.membership.joined.isEmpty)
        h.up("eth0")
        #expect(h.kernel.memberships.count == 25)
        #expect(Set(h.plane.membership.joined) == h.needed)
    }

    @Test func interfaceThatAppearsLateGetsItsJoins() throws {
        var h = Harness()
        try h.add(spec("eth7:239.1.1.1:5000", ["eth1:239.2.1.1:5000"]))
        #expect(h.kernel.memberships.isEmpty)
        h.up("eth7")
        #expect(h.kernel.memberships.count == 1)
    }

    @Test func staleResultAfterFlapIsIgnored() throws {
        var h = Harness()
        h.up("eth0")
        h.holdResults = true
        try h.add(spec("eth0:239.1.1.1:5000", ["eth1:239.2.1.1:5000"]))
        let stale = h.held
        h.held = []
        h.down("eth0")
        h.up("eth0")
        for event in stale { h.plane.handle(event, now: h.now) }  // the old ticket's success
        h.pump()
        #expect(h.plane.membership.joined.isEmpty, "the stale success must not count as the new join")
        h.settle()
        #expect(Set(h.plane.membership.joined) == h.needed)
    }

    @Test func ruleRemovedWhileJoinInFlightIsLeftOnSuccess() throws {
        var h = Harness()
        h.up("eth0")
        h.holdResults = true
        try h.add(spec("eth0:239.1.1.1:5000", ["eth1:239.2.1.1:5000"], name: "x"))
        try h.remove("x")
        h.settle()
        #expect(h.kernel.memberships.isEmpty)
        #expect(h.plane.membership.joined.isEmpty)
    }

    enum Op: Sendable, CustomStringConvertible {
        case add(Int), remove(Int), down(Int), up(Int), fail(Int), hold, release, tick
        var description: String {
            switch self {
            case let .add(i): "add(\(i))"
            case let .remove(i): "remove(\(i))"
            case let .down(i): "down(\(i))"
            case let .up(i): "up(\(i))"
            case let .fail(i): "fail(\(i))"
            case .hold: "hold"
            case .release: "release"
            case .tick: "tick"
            }
        }
    }

    static let opGen = Gen<Op>.oneOf(
        Gen.int(in: 0...59).map { Op.add($0) },
        Gen.int(in: 0...59).map { Op.remove($0) },
        Gen.int(in: 0...2).map { Op.down($0) },
        Gen.int(in: 0...2).map { Op.up($0) },
        Gen.int(in: 0...3).map { Op.fail($0) },
        Gen.always(Op.hold), Gen.always(Op.release), Gen.always(Op.tick))

    /// After any sequence of rule adds and removes, interface events and join results, once
    /// retries settle, the kernel holds exactly the memberships the rules need on interfaces
    /// that are up, and no helper socket ever exceeds the kernel's limit.
    @Test func membershipConvergesUnderAnyHistory() async {
        await propertyCheck(count: 300, input: Self.opGen.array(of: 0...60), Gen.int(in: 3...20)) { ops, kernelLimit in
            var h = Harness(socketLimit: 20, kernelLimit: kernelLimit)
            let interfaces = ["in0", "in1", "in2"]
            func rule(_ i: Int) -> RuleSpec {
                // 60 rules over 3 interfaces and 25 groups, some sharing groups, some source-specific.
                let group = i % 25 + 1
                let source: String? = i % 7 == 0 ? "198.18.0.\(i % 3 + 1)" : nil
                return spec("\(interfaces[i % 3]):239.1.0.\(group):\(5000 + i)", ["out0:239.9.0.\(i + 1):6000"],
                            source: source, name: "r\(i)")
            }
            for op in ops {
                switch op {
                case let .add(i): try? h.add(rule(i))
                case let .remove(i): try? h.remove("r\(i)")
                case let .down(i): h.down(interfaces[i])
                case let .up(i): h.up(interfaces[i])
                case let .fail(n): h.kernel.failNext += Array(repeating: .other(errno: 105), count: n)
                case .hold: h.holdResults = true
                case .release: h.holdResults = false; h.releaseHeld()
                case .tick:
                    if let deadline = h.timer { h.now = max(h.now, deadline); h.timer = nil; h.plane.handle(.timerFired, now: h.now); h.pump() }
                }
                #expect(h.kernel.maxGroupsPerSocket <= kernelLimit)
            }
            h.kernel.failNext = []
            h.settle()
            #expect(h.kernel.memberships == h.needed, "kernel memberships differ from what the rules need")
            #expect(Set(h.plane.membership.joined) == h.needed)
            #expect(h.plane.membership.outstanding.isEmpty)
            #expect(h.kernel.maxGroupsPerSocket <= kernelLimit)
            #expect(h.timer == nil, "nothing left to retry")
        }
    }
}
