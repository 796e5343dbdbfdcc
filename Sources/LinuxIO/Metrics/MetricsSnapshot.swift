import RelayControl
import RelayCore

/// One time series: a metric name, its labels in a fixed order, and its value.
public struct MetricSample: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var labels: [Label]
    public var value: UInt64

    public struct Label: Hashable, Sendable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(_ name: String, _ labels: [Label] = [], _ value: UInt64) {
        self.name = name
        self.labels = labels
        self.value = value
    }

    /// The series identity (name and labels, not the value).
    public var series: MetricSeries { MetricSeries(name: name, labels: labels) }

    public var description: String {
        name + (labels.isEmpty ? "" : "{" + labels.map { "\($0.name)=\"\($0.value)\"" }.joined(separator: ",") + "}") + " \(value)"
    }
}

public struct MetricSeries: Hashable, Sendable {
    public var name: String
    public var labels: [MetricSample.Label]
}

/// Everything the endpoint exposes, computed from what the supervisor already knows: the
/// merged worker counters (as in `mcrelay stats`) and the control plane's own state. Pure,
/// so the mapping from stats to metric names and labels is tested without a daemon.
public struct MetricsSnapshot: Equatable, Sendable {
    public var counters: [MetricSample] = []
    public var gauges: [MetricSample] = []

    public init(counters: [MetricSample] = [], gauges: [MetricSample] = []) {
        self.counters = counters
        self.gauges = gauges
    }

    /// The supervisor's state that `StatsView` carries only as text.
    public struct ControlState: Sendable {
        public var ruleInputs: [InterfaceName]
        public var joined: [MembershipKey]
        public var outstanding: [MembershipKey]
        public var helperSockets: [HelperSocketID]
        public var joinFailures: UInt64
        public var version: String
        /// The IGMP/MLD router's interfaces (config `queriers`) and what it refused.
        public var listeners: [ListenerInterfaceStatus]
        public var listenerRefusals: ListenerRefusalCounts

        public init(ruleInputs: [InterfaceName], joined: [MembershipKey], outstanding: [MembershipKey],
                    helperSockets: [HelperSocketID], joinFailures: UInt64, version: String,
                    listeners: [ListenerInterfaceStatus] = [], listenerRefusals: ListenerRefusalCounts = ListenerRefusalCounts()) {
            self.ruleInputs = ruleInputs
            self.joined = joined
            self.outstanding = outstanding
            self.helperSockets = helperSockets
            self.joinFailures = joinFailures
            self.version = version
            self.listeners = listeners
            self.listenerRefusals = listenerRefusals
        }
    }

    public init(stats: StatsView, control: ControlState, httpResponses: [Int: UInt64] = [:]) {
        typealias L = MetricSample.Label
        for rule in stats.rules {
            let ruleLabels = [L("rule", rule.id), L("name", rule.name ?? "")]
            counters.append(MetricSample("mcrelay_rule_received_packets_total", ruleLabels, rule.packets))
            counters.append(MetricSample("mcrelay_rule_received_bytes_total", ruleLabels, rule.bytes))
            var info = ruleLabels + [L("input", rule.in)]
            info.append(L("source", rule.source ?? ""))
            info.append(L("kind", rule.proxyRoute ? "proxy" : "rule"))
            gauges.append(MetricSample("mcrelay_rule_info", info, 1))
            for output in rule.outputs {
                let labels = ruleLabels + [L("output", output.out)]
                counters.append(MetricSample("mcrelay_output_sent_packets_total", labels, output.packets))
                counters.append(MetricSample("mcrelay_output_sent_bytes_total", labels, output.bytes))
                counters.append(MetricSample("mcrelay_output_send_errors_total", labels, output.sendErrors))
                // Follow outputs only: a static output has no gate to report.
                if let suppressed = output.suppressed {
                    counters.append(MetricSample("mcrelay_output_suppressed_packets_total", labels, suppressed))
                }
                if let open = output.open { gauges.append(MetricSample("mcrelay_output_open", labels, open ? 1 : 0)) }
            }
        }
        for reason in DropReason.allCases {
            counters.append(MetricSample("mcrelay_dropped_packets_total", [L("reason", reason.description)], stats.drops[reason]))
        }
        counters.append(MetricSample("mcrelay_ingress_queue_drops_total", [], stats.ingressQueueDrops))
        // The input devices' own counters (the kernel's, since each device was created).
        for device in stats.inputDevices ?? [] where device.problem == nil {
            let label = [L("interface", device.interface)]
            counters.append(MetricSample("mcrelay_input_device_received_packets_total", label, device.received))
            for (counter, frames) in device.losses {
                counters.append(MetricSample("mcrelay_input_device_lost_packets_total", label + [L("counter", counter)], frames))
            }
        }
        gauges.append(MetricSample("mcrelay_rules", [], UInt64(stats.rules.count)))
        gauges.append(MetricSample("mcrelay_workers", [], UInt64(stats.workers.filter(\.alive).count)))
        gauges.append(MetricSample("mcrelay_workers_configured", [], UInt64(stats.workers.count)))
        for worker in stats.workers {
            counters.append(MetricSample("mcrelay_worker_restarts_total", [L("worker", String(worker.id))], UInt64(max(worker.restarts, 0))))
        }
        gauges.append(MetricSample("mcrelay_plan_version", [], stats.planVersion))

        // Per interface: every input interface of a rule, and any that still holds something.
        var interfaces = Set(control.ruleInputs)
        interfaces.formUnion(control.joined.map(\.interface))
        interfaces.formUnion(control.helperSockets.map(\.interface))
        let up = Set(stats.interfacesUp)
        for interface in interfaces.sorted(by: { $0.description < $1.description }) {
            let label = [L("interface", interface.description)]
            gauges.append(MetricSample("mcrelay_igmp_memberships", label, UInt64(control.joined.filter { $0.interface == interface }.count)))
            gauges.append(MetricSample("mcrelay_igmp_memberships_outstanding", label,
                                       UInt64(control.outstanding.filter { $0.interface == interface }.count)))
            gauges.append(MetricSample("mcrelay_helper_sockets", label, UInt64(control.helperSockets.filter { $0.interface == interface }.count)))
            gauges.append(MetricSample("mcrelay_interface_up", label, up.contains(interface.description) ? 1 : 0))
        }
        counters.append(MetricSample("mcrelay_join_failures_total", [], control.joinFailures))
        appendListeners(control)
        gauges.append(MetricSample("mcrelay_build_info", [L("version", control.version)], 1))
        for (status, count) in httpResponses.sorted(by: { $0.key < $1.key }) {
            counters.append(MetricSample("mcrelay_metrics_http_responses_total", [L("code", String(status))], count))
        }
    }

    /// The IGMP/MLD router, per querier interface and family (`mcrelay igmp interfaces`), and its
    /// refusals by reason (every reason always present, so a rate of 0 is visible too).
    private mutating func appendListeners(_ control: ControlState) {
        typealias L = MetricSample.Label
        for status in control.listeners {
            let labels = [L("interface", status.interface.description), L("family", status.family.rawValue)]
            let counts = status.counters
            counters.append(MetricSample("mcrelay_listener_queries_sent_total", labels + [L("kind", "general")], counts.generalQueriesSent))
            counters.append(MetricSample("mcrelay_listener_queries_sent_total", labels + [L("kind", "specific")], counts.specificQueriesSent))
            counters.append(MetricSample("mcrelay_listener_queries_received_total", labels, counts.queriesReceived))
            for version in ListenerVersion.allCases {
                counters.append(MetricSample("mcrelay_listener_reports_received_total", labels + [L("version", version.name(for: status.family))],
                                             counts.reportsReceived[version, default: 0]))
            }
            counters.append(MetricSample("mcrelay_listener_leaves_received_total", labels, counts.leavesReceived))
            counters.append(MetricSample("mcrelay_listener_querier_changes_total", labels, counts.querierChanges))
            counters.append(MetricSample("mcrelay_listener_messages_ignored_total", labels + [L("reason", "compatibility")], counts.ignoredByCompatibility))
            counters.append(MetricSample("mcrelay_listener_messages_ignored_total", labels + [L("reason", "limits")], counts.ignoredByLimits))
            gauges.append(MetricSample("mcrelay_listener_groups", labels, UInt64(status.groups)))
            gauges.append(MetricSample("mcrelay_listener_is_querier", labels, status.isQuerier ? 1 : 0))
        }
        guard !control.listeners.isEmpty else { return }
        for reason in ListenerRefusal.allCases {
            counters.append(MetricSample("mcrelay_listener_refusals_total", [L("reason", reason.rawValue)], control.listenerRefusals[reason]))
        }
    }

    /// HELP text per metric name (the exposition's `# HELP` lines).
    public static let help: [String: String] = [
        "mcrelay_rule_received_packets_total": "Datagrams a rule accepted from its input.",
        "mcrelay_rule_received_bytes_total": "UDP payload bytes a rule accepted from its input.",
        "mcrelay_rule_info": "A current rule: its id, name, input, source and kind (rule, or proxy for a route a proxy derived) (always 1).",
        "mcrelay_output_sent_packets_total": "Datagrams handed to the kernel for an output of a rule.",
        "mcrelay_output_sent_bytes_total": "UDP payload bytes handed to the kernel for an output of a rule.",
        "mcrelay_output_send_errors_total": "Sends to an output of a rule that the kernel refused.",
        "mcrelay_output_suppressed_packets_total": "Datagrams a follow output, or a proxy's downstream (rule name \"proxy\"), did not send because no listener wanted them.",
        "mcrelay_output_open": "A follow output whose listeners want its group now (1) or not (0).",
        "mcrelay_dropped_packets_total": "Frames the relay saw and did not forward, by reason.",
        "mcrelay_ingress_queue_drops_total": "Frames the kernel dropped because a worker did not read them fast enough (all input interfaces).",
        "mcrelay_input_device_received_packets_total": "Frames an input interface received, by the device's own counter (rx_packets, since the device was created).",
        "mcrelay_input_device_lost_packets_total": "Frames an input interface lost before any relay saw them, by the device's own counters (rx_dropped, rx_missed_errors, rx_over_errors, rx_fifo_errors, rx_errors).",
        "mcrelay_rules": "Rules configured, and the routes the proxies derive.",
        "mcrelay_workers": "Worker processes alive.",
        "mcrelay_workers_configured": "Worker processes the daemon runs (--workers).",
        "mcrelay_worker_restarts_total": "Times a worker process was restarted after it died.",
        "mcrelay_plan_version": "Version of the forwarding plan the supervisor last computed.",
        "mcrelay_igmp_memberships": "Group memberships the kernel confirmed on an input interface.",
        "mcrelay_igmp_memberships_outstanding": "Group memberships needed on an interface that is up but not joined (yet).",
        "mcrelay_helper_sockets": "Helper sockets holding group memberships on an interface.",
        "mcrelay_interface_up": "Whether an input interface is up and usable (1) or not (0).",
        "mcrelay_join_failures_total": "Group joins the kernel refused (each is retried with backoff).",
        "mcrelay_build_info": "The running build (always 1).",
        "mcrelay_metrics_http_responses_total": "Responses of the metrics endpoint itself, by HTTP status.",
        "mcrelay_listener_queries_sent_total": "IGMP/MLD queries the router sent on a querier interface: general, or group(-and-source)-specific.",
        "mcrelay_listener_queries_received_total": "IGMP/MLD queries received from other routers on a querier interface.",
        "mcrelay_listener_reports_received_total": "IGMP/MLD membership reports received on a querier interface, by protocol version.",
        "mcrelay_listener_leaves_received_total": "IGMPv2 leaves and MLDv1 dones received on a querier interface.",
        "mcrelay_listener_querier_changes_total": "Times the elected querier of an interface changed.",
        "mcrelay_listener_messages_ignored_total": "Reports and leaves ignored: in a compatibility mode, or past the group/source limits.",
        "mcrelay_listener_groups": "Groups with listeners on a querier interface.",
        "mcrelay_listener_is_querier": "Whether the relay is the elected querier of the interface (1) or another router is (0).",
        "mcrelay_listener_refusals_total": "IGMP/MLD frames refused as malformed or not acceptable, by reason (all querier interfaces).",
    ]
}
