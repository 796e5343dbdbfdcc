import Foundation
import RelayCore

// MARK: - State sizes (soak)

/// How big the core's and the simulator's state is at one instant: what `sim soak` watches
/// to prove memory does not grow with simulated time.
public struct StateSizes: Sendable, Equatable {
    public var timeNanoseconds: UInt64 = 0
    public var activeRules = 0
    /// The core's membership table: joined plus outstanding (joins in flight or backing off).
    public var membershipEntries = 0
    public var inFlightJoins = 0
    /// Helper sockets the core uses, and how many hold more groups than their capacity.
    public var coreHelperSockets = 0
    public var socketsOverLimit = 0
    public var overLimitDetail: String?
    public var maxGroupsPerSocket = 0
    public var kernelHelperSockets = 0
    public var kernelMemberships = 0
    /// Rules installed across all workers' forwarders.
    public var forwarderRoutes = 0
    public var eventQueue = 0
    public var pendingPlans = 0
    /// The oracle's bookkeeping: interned rules (and the report tallies kept per rule), rule
    /// sets held (the current one, one per installable plan version, one per worker),
    /// per-arrival records.
    public var oracleRules = 0
    public var oracleEpochs = 0
    public var oracleArrivals = 0
    public var oracleOverflow = 0
    public var versionEpochs = 0
    /// The simulator's own frame store: frames held (trace, copies, probes) and its bytes.
    public var simFrames = 0
    public var arenaBytes = 0
    /// The newest plan version the core sent (not a size: it shows one core lives on, since a
    /// fresh core starts again at 1).
    public var planVersion: UInt64 = 0

    public init() {}

    /// Named values, in a fixed order, for printing and bound checks.
    public var fields: [(name: String, value: Int)] {
        [("memberships", membershipEntries), ("in_flight_joins", inFlightJoins), ("core_sockets", coreHelperSockets),
         ("kernel_sockets", kernelHelperSockets), ("kernel_memberships", kernelMemberships), ("routes", forwarderRoutes),
         ("event_queue", eventQueue), ("pending_plans", pendingPlans), ("oracle_rules", oracleRules),
         ("oracle_epochs", oracleEpochs), ("oracle_arrivals", oracleArrivals), ("oracle_overflow", oracleOverflow),
         ("plan_versions", versionEpochs), ("sim_frames", simFrames), ("arena_bytes", arenaBytes)]
    }
}

extension Simulation {
    func stateSizes() -> StateSizes {
        stateSizesImpl(control: control, kernel: kernel, workers: workers, queueCount: queue.count,
                       pendingPlans: pendingPlans.count, oracle: oracle, arrivals: arrivalRule.count,
                       overflow: arrivalOverflow.count, versionEpochs: versionEpoch.count, now: now)
    }

    func stateSizesImpl(
        control: ControlPlane, kernel: KernelModel, workers: [Worker], queueCount: Int, pendingPlans: Int,
        oracle: Oracle, arrivals: Int, overflow: Int, versionEpochs: Int, now: UInt64
    ) -> StateSizes {
        var sizes = StateSizes()
        sizes.timeNanoseconds = now
        sizes.activeRules = oracle.current.rules.count
        let outstanding = control.membership.outstanding.count
        sizes.membershipEntries = control.membership.joined.count + outstanding
        sizes.inFlightJoins = outstanding
        let usage = control.membership.socketUsage
        sizes.coreHelperSockets = usage.count
        // The limit is the configured one (and the kernel's): a capacity the core learned from
        // an ENOBUFS may sit below what a socket already holds, and that is not a breach.
        let limit = control.membership.socketLimit
        var over = usage.filter { $0.groups > limit }.map { "core \($0.socket) holds \($0.groups) groups, limit \(limit)" }
        for id in kernel.helperSockets.keys.sorted() where kernel.helperSockets[id]!.groups.count > kernel.membershipLimit {
            over.append("kernel \(id) holds \(kernel.helperSockets[id]!.groups.count) groups, limit \(kernel.membershipLimit)")
        }
        sizes.socketsOverLimit = over.count
        sizes.overLimitDetail = over.isEmpty ? nil : over.joined(separator: "; ")
        sizes.maxGroupsPerSocket = usage.map(\.groups).max() ?? 0
        sizes.kernelHelperSockets = kernel.helperSockets.count
        sizes.kernelMemberships = kernel.joinedMemberships.count
        sizes.forwarderRoutes = workers.reduce(0) { $0 + ($1.alive ? $1.forwarder.plan.rules.count : 0) }
        sizes.eventQueue = queueCount
        sizes.pendingPlans = pendingPlans
        sizes.oracleRules = oracle.registry.specs.count
        sizes.oracleEpochs = 1 + versionEpochs + workers.count
        sizes.oracleArrivals = arrivals
        sizes.oracleOverflow = overflow
        sizes.versionEpochs = versionEpochs
        sizes.planVersion = latestPlanVersion
        sizes.simFrames = frameOffset.count
        sizes.arenaBytes = arena.capacityBytes
        return sizes
    }
}
