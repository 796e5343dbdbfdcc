import Foundation
import RelayCore

/// `report.json`: everything a run did, in a stable order (sorted keys, rules in the order
/// they first appeared, interfaces by name), so two runs of the same inputs produce the
/// same bytes.
public struct SimReport: Sendable, Equatable, Codable {
    public struct Run: Sendable, Equatable, Codable {
        public var seed: UInt64
        public var faults: String
        public var swarm: Bool
        public var timing: String
        public var workers: Int
        public var dispatch: String
        public var coreSocketLimit: Int
        public var kernelMembershipLimit: Int
        public var simulatedNanoseconds: UInt64
        public var steps: UInt64

        enum CodingKeys: String, CodingKey {
            case seed, faults, swarm, timing, workers, dispatch
            case coreSocketLimit = "core_socket_limit", kernelMembershipLimit = "kernel_membership_limit"
            case simulatedNanoseconds = "simulated_ns", steps
        }
    }

    public struct Ingress: Sendable, Equatable, Codable {
        public var traceFrames = 0
        public var arrived = 0
        public var interfaceDown = 0
        public var notJoined = 0
        public var noReader = 0
        public var copiesToWorkers = 0
        public var probes = 0

        enum CodingKeys: String, CodingKey {
            case traceFrames = "trace_frames", arrived, interfaceDown = "dropped_interface_down"
            case notJoined = "filtered_group_not_joined", noReader = "no_socket_reading"
            case copiesToWorkers = "copies_to_workers", probes = "liveness_probes"
        }
    }

    /// One output of one rule. `expected`: trace frames that reached the host's NIC while the
    /// operator's rules matched them to this rule (the oracle's count, whether or not the relay
    /// could forward them yet); `handed_to_driver` and `send_errors`: the workers' own counters;
    /// `transmitted`: copies that went out on the wire (what the egress capture holds).
    public struct Output: Sendable, Equatable, Codable {
        public var output: String
        public var expected: UInt64
        public var handedToDriver: UInt64
        public var transmitted: UInt64
        public var sendErrors: UInt64

        enum CodingKeys: String, CodingKey {
            case output, expected, handedToDriver = "handed_to_driver", transmitted, sendErrors = "send_errors"
        }
    }

    /// Every rule the run saw (config, events, reloads), in first-seen order. `matched`: as
    /// `expected` above; `accepted`: what the workers' counters say they accepted.
    public struct RuleEntry: Sendable, Equatable, Codable {
        public var id: String
        public var name: String?
        public var input: String
        public var matched: UInt64
        public var accepted: UInt64
        public var outputs: [Output]
    }

    public struct Invariant: Sendable, Equatable, Codable {
        public var name: String
        public var checked: UInt64
        public var violations: UInt64
        public var first: String?
    }

    public struct Liveness: Sendable, Equatable, Codable {
        public var converged: Bool
        public var convergedAfterMs: Double?
        public var boundMs: Double
        public var probesSent: Int
        public var probesForwarded: Int
        public var detail: String?

        enum CodingKeys: String, CodingKey {
            case converged, convergedAfterMs = "converged_after_ms", boundMs = "bound_ms"
            case probesSent = "probes_sent", probesForwarded = "probes_forwarded", detail
        }
    }

    public struct Control: Sendable, Equatable, Codable {
        public var joins = 0
        public var joinErrors: [String: Int] = [:]
        public var kernelRefusedOverLimit = 0
        public var helperSocketsAtEnd = 0
        public var plansSent = 0
        public var plansInstalled = 0
        public var operatorErrors: [String] = []
        public var reports: [String: Int] = [:]

        enum CodingKeys: String, CodingKey {
            case joins, joinErrors = "join_errors", kernelRefusedOverLimit = "kernel_refused_over_limit"
            case helperSocketsAtEnd = "helper_sockets_at_end", plansSent = "plans_sent"
            case plansInstalled = "plans_installed", operatorErrors = "operator_errors", reports
        }
    }

    /// The simulated LAN segments (absent when the run has no IGMP/MLD router, host or router).
    public struct Segments: Sendable, Equatable, Codable {
        public var hosts = 0
        public var routers = 0
        public var hostReportsV2 = 0
        public var hostReportsV3 = 0
        public var hostLeaves = 0
        public var routerQueries = 0
        public var relayGeneralQueries = 0
        public var relaySpecificQueries = 0
        public var framesToRelay = 0
        public var framesLost = 0
        public var framesRefused = 0

        enum CodingKeys: String, CodingKey {
            case hosts, routers, hostReportsV2 = "host_reports_v2", hostReportsV3 = "host_reports_v3", hostLeaves = "host_leaves"
            case routerQueries = "router_queries", relayGeneralQueries = "relay_general_queries"
            case relaySpecificQueries = "relay_specific_queries", framesToRelay = "frames_to_relay"
            case framesLost = "frames_lost", framesRefused = "frames_refused"
        }
    }

    public struct Egress: Sendable, Equatable, Codable {
        public var frames: Int
        public var bytes: Int
        public var hash: String
    }

    public var result: String
    public var run: Run
    public var ingress: Ingress
    public var rules: [RuleEntry]
    public var drops: [String: UInt64]
    public var faultsInjected: FaultCounts
    public var invariants: [Invariant]
    public var liveness: Liveness
    public var control: Control
    public var egress: [String: Egress]
    public var segments: Segments? = nil

    enum CodingKeys: String, CodingKey {
        case result, run, ingress, rules, drops, faultsInjected = "faults_injected", invariants, liveness, control, egress, segments
    }

    public var passed: Bool { result == "pass" }

    public func json() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return ((try? encoder.encode(self)) ?? Data("{}".utf8)) + Data("\n".utf8)
    }
}
