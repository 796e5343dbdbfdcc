import Collections

/// Decides which IGMP memberships to hold on which helper socket, and recovers from join
/// failures. Inputs: the needed memberships, interface up/down, join results, timer expiry.
/// Outputs (appended to the caller's queue): open/close socket, join, leave, timer, report.
///
/// Invariants kept: each needed group is joined once per interface (all its sources on one
/// socket); no socket holds more groups than its capacity (the configured limit, lowered to
/// what the kernel actually accepted when a join fails with ENOBUFS); a failed join is
/// always retried or moved, and every failure is reported — never silently lost.
public struct Membership: Sendable {
    public let socketLimits: SocketLimits
    public let retryPolicy: RetryPolicy
    /// The IPv4 limit (what `socketLimit` meant before IPv6).
    public var socketLimit: Int { socketLimits.ipv4 }

    enum Phase: Hashable, Sendable {
        case waitingForInterface
        case joining(JoinTicket)
        case joined
        case backingOff(until: Instant)
    }

    struct Entry: Sendable {
        var phase: Phase
        /// False once the need went away while a join was in flight: its success is undone.
        var wanted = true
        var socket: HelperSocketID?
        var failures = 0
    }

    struct SocketState: Sendable {
        var capacity: Int
        /// Groups placed on this socket (joined or in flight) and how many keys use each.
        var groups: [IPAddress: Int] = [:]
    }

    struct GroupOnInterface: Hashable, Sendable {
        var interface: InterfaceName
        var group: IPAddress
    }

    private(set) var interfacesUp: Set<InterfaceName> = []
    private(set) var needed: Set<MembershipKey> = []
    private(set) var entries: [MembershipKey: Entry] = [:]
    private(set) var sockets: [HelperSocketID: SocketState] = [:]
    private var placements: [GroupOnInterface: HelperSocketID] = [:]
    private var inFlight: [JoinTicket: MembershipKey] = [:]
    /// Retry deadlines of entries backing off, kept apart so arming the timer does not scan
    /// every membership (10,000 groups joining would otherwise be quadratic).
    private var retryDeadlines: [MembershipKey: Instant] = [:]
    private var nextTicket: UInt64 = 1

    public init(socketLimits: SocketLimits = SocketLimits(), retryPolicy: RetryPolicy = RetryPolicy()) {
        precondition(socketLimits.ipv4 > 0 && socketLimits.ipv6 > 0, "socket limits must be positive")
        self.socketLimits = socketLimits
        self.retryPolicy = retryPolicy
    }

    public init(socketLimit: Int, retryPolicy: RetryPolicy = RetryPolicy()) {
        self.init(socketLimits: SocketLimits(ipv4: socketLimit), retryPolicy: retryPolicy)
    }

    // MARK: - Queries

    /// Memberships the kernel has confirmed, in sorted order.
    public var joined: [MembershipKey] {
        entries.filter { $0.value.phase == .joined && $0.value.wanted }.keys.sorted()
    }

    /// Memberships needed on interfaces that are up but not (yet) joined.
    public var outstanding: [MembershipKey] {
        needed.filter { interfacesUp.contains($0.interface) && entries[$0]?.phase != .joined }.sorted()
    }

    /// Open helper sockets with the groups each holds (joined or in flight).
    public var socketUsage: [(socket: HelperSocketID, groups: Int, capacity: Int)] {
        sockets.keys.sorted().map { ($0, sockets[$0]!.groups.count, sockets[$0]!.capacity) }
    }

    public func socket(holding key: MembershipKey) -> HelperSocketID? { entries[key]?.socket }

    public func isUp(_ interface: InterfaceName) -> Bool { interfacesUp.contains(interface) }

    /// The earliest retry deadline, if any join is backing off.
    public var nextDeadline: Instant? { retryDeadlines.values.min() }

    // MARK: - Inputs

    public mutating func setNeeded(_ keys: Set<MembershipKey>, now: Instant, actions: inout Deque<ControlAction>) {
        // Only what changed needs attention: adding one rule to ten thousand costs one join.
        let changed = keys.symmetricDifference(needed)
        needed = keys
        reconcile(changed, now: now, actions: &actions)
    }

    /// A change to part of the needed set (a proxy's joins for one group) without handing
    /// over the whole set: the cost is the change's, not the set's.
    public mutating func changeNeeded(adding: Set<MembershipKey>, removing: Set<MembershipKey>, now: Instant,
                                      actions: inout Deque<ControlAction>) {
        var changed = Set<MembershipKey>()
        for key in removing where !adding.contains(key) && needed.remove(key) != nil { changed.insert(key) }
        for key in adding where needed.insert(key).inserted { changed.insert(key) }
        reconcile(changed, now: now, actions: &actions)
    }

    public mutating func interfaceUp(_ interface: InterfaceName, now: Instant, actions: inout Deque<ControlAction>) {
        guard interfacesUp.insert(interface).inserted else { return }
        reconcile(keys(on: interface), now: now, actions: &actions)
    }

    /// An interface that went down takes its memberships with it: the helper sockets are
    /// closed (which drops them in the kernel) and everything is joined afresh on up.
    public mutating func interfaceDown(_ interface: InterfaceName, now: Instant, actions: inout Deque<ControlAction>) {
        guard interfacesUp.remove(interface) != nil else { return }
        for socket in sockets.keys.sorted() where socket.interface == interface {
            sockets[socket] = nil
            actions.append(.closeHelperSocket(socket))
        }
        placements = placements.filter { $0.key.interface != interface }
        for (ticket, key) in inFlight where key.interface == interface { inFlight[ticket] = nil }
        for key in entries.keys.sorted() where key.interface == interface {
            retryDeadlines[key] = nil
            if needed.contains(key) {
                entries[key] = Entry(phase: .waitingForInterface, socket: nil, failures: entries[key]!.failures)
            } else {
                entries[key] = nil
            }
        }
        reconcile(keys(on: interface), now: now, actions: &actions)
    }

    public mutating func joinCompleted(
        _ ticket: JoinTicket, result: JoinOutcome, now: Instant, actions: inout Deque<ControlAction>
    ) {
        guard let key = inFlight.removeValue(forKey: ticket), var entry = entries[key],
              entry.phase == .joining(ticket), let socket = entry.socket
        else { return }  // stale: the interface flapped or the entry was replaced

        var failure: JoinError?
        if case let .failed(error) = result, error != .alreadyMember { failure = error }

        guard let error = failure else {
            if entry.wanted {
                if entry.failures > 0 {
                    actions.append(.report(.joinRecovered(key, socket: socket, afterFailures: entry.failures)))
                }
                entry.phase = .joined
                entry.failures = 0
                entries[key] = entry
            } else {
                actions.append(.leave(LeaveRequest(socket: socket, membership: key)))
                release(key, actions: &actions)
                entries[key] = nil
            }
            return
        }

        if !entry.wanted {
            release(key, actions: &actions)
            entries[key] = nil
            return
        }

        if error == .socketFull, let state = sockets[socket], state.groups[key.group] == 1 {
            // The per-socket limit: learn it from what this socket holds without this group.
            let othersJoined = joinedGroupCount(on: socket, excluding: key.group)
            if othersJoined > 0 {
                sockets[socket]!.capacity = othersJoined
                actions.append(.report(.socketCapacityLearned(socket, capacity: othersJoined)))
                release(key, actions: &actions)
                entries[key] = Entry(phase: .waitingForInterface, socket: nil, failures: entry.failures)
                startJoin(key, actions: &actions)  // on another socket, at once
                return
            }
        }

        entry.failures += 1
        let retryAt = now + retryPolicy.delay(afterAttempt: entry.failures)
        actions.append(.report(.joinFailed(key, socket: socket, error: error, failures: entry.failures, retryAt: retryAt)))
        release(key, actions: &actions)
        entry.phase = .backingOff(until: retryAt)
        entry.socket = nil
        entries[key] = entry
        retryDeadlines[key] = retryAt
    }

    public mutating func timerFired(now: Instant, actions: inout Deque<ControlAction>) {
        var due: [MembershipKey] = []
        for (key, deadline) in retryDeadlines where deadline <= now {
            retryDeadlines[key] = nil
            guard let entry = entries[key], entry.wanted, case .backingOff = entry.phase else { continue }
            entries[key]!.phase = .waitingForInterface
            due.append(key)
        }
        reconcile(due, now: now, actions: &actions)
    }

    // MARK: - Reconciliation

    private func keys(on interface: InterfaceName) -> [MembershipKey] {
        Set(needed.filter { $0.interface == interface }).union(entries.keys.filter { $0.interface == interface }).sorted()
    }

    /// Brings the given keys in line with what is needed, in sorted order so the actions
    /// are deterministic whatever order the keys came in.
    private mutating func reconcile(_ candidates: some Collection<MembershipKey>, now: Instant, actions: inout Deque<ControlAction>) {
        let keys = candidates.sorted()
        for key in keys {
            guard var entry = entries[key] else { continue }
            let shouldHold = needed.contains(key) && interfacesUp.contains(key.interface)
            if shouldHold {
                if !entry.wanted {  // needed again while its leave-on-success was pending
                    entry.wanted = true
                    entries[key] = entry
                }
                continue
            }
            switch entry.phase {
            case .joined:
                if let socket = entry.socket { actions.append(.leave(LeaveRequest(socket: socket, membership: key))) }
                release(key, actions: &actions)
                entries[key] = nil
            case .joining:
                entry.wanted = false
                entries[key] = entry
            case .backingOff, .waitingForInterface:
                if !needed.contains(key) {
                    entries[key] = nil
                    retryDeadlines[key] = nil
                }
            }
        }
        for key in keys where needed.contains(key) && interfacesUp.contains(key.interface) {
            if let entry = entries[key] {
                guard entry.phase == .waitingForInterface else { continue }
            }
            startJoin(key, actions: &actions)
        }
    }

    private mutating func startJoin(_ key: MembershipKey, actions: inout Deque<ControlAction>) {
        retryDeadlines[key] = nil
        let socket = place(key, actions: &actions)
        let ticket = JoinTicket(rawValue: nextTicket)
        nextTicket += 1
        inFlight[ticket] = key
        entries[key] = Entry(phase: .joining(ticket), socket: socket, failures: entries[key]?.failures ?? 0)
        actions.append(.join(JoinRequest(ticket: ticket, socket: socket, membership: key)))
    }

    /// All keys of one group share a socket; a new group goes on the lowest-numbered socket
    /// with room, or on a new one.
    private mutating func place(_ key: MembershipKey, actions: inout Deque<ControlAction>) -> HelperSocketID {
        let groupKey = GroupOnInterface(interface: key.interface, group: key.group)
        if let socket = placements[groupKey] {
            sockets[socket]!.groups[key.group, default: 0] += 1
            return socket
        }
        let candidates = sockets.keys.filter { $0.interface == key.interface && $0.family == key.family }.sorted()
        let socket: HelperSocketID
        if let roomy = candidates.first(where: { sockets[$0]!.groups.count < sockets[$0]!.capacity }) {
            socket = roomy
        } else {
            var ordinal = 0
            while sockets[HelperSocketID(interface: key.interface, family: key.family, ordinal: ordinal)] != nil { ordinal += 1 }
            socket = HelperSocketID(interface: key.interface, family: key.family, ordinal: ordinal)
            sockets[socket] = SocketState(capacity: socketLimits[key.family])
            actions.append(.openHelperSocket(socket))
        }
        sockets[socket]!.groups[key.group] = 1
        placements[groupKey] = socket
        return socket
    }

    /// Undoes `place` for a key; closes the socket once it holds nothing.
    private mutating func release(_ key: MembershipKey, actions: inout Deque<ControlAction>) {
        guard let socket = entries[key]?.socket, var state = sockets[socket] else { return }
        entries[key]?.socket = nil
        let remaining = (state.groups[key.group] ?? 1) - 1
        if remaining > 0 {
            state.groups[key.group] = remaining
        } else {
            state.groups[key.group] = nil
            placements[GroupOnInterface(interface: key.interface, group: key.group)] = nil
        }
        if state.groups.isEmpty {
            sockets[socket] = nil
            actions.append(.closeHelperSocket(socket))
        } else {
            sockets[socket] = state
        }
    }

    private func joinedGroupCount(on socket: HelperSocketID, excluding group: IPAddress) -> Int {
        var groups = Set<IPAddress>()
        for (key, entry) in entries where entry.socket == socket && entry.phase == .joined && key.group != group {
            groups.insert(key.group)
        }
        return groups.count
    }
}
