// `mcrelay daemon`, `mcrelay rule add|remove|list`, `mcrelay stats`, and the hidden `worker`
// subcommand the daemon starts its worker processes with.
import ArgumentParser
import Foundation
import LinuxIO
import Logging
import RelayControl
import RelayCore

struct DaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the relay in the foreground.",
        discussion: """
            Reads rules from --config (the JSON file `mcrelay config check` validates) and takes rule \
            changes through the control socket (`mcrelay rule`, `mcrelay stats`). SIGHUP re-reads the \
            config file (all or nothing). SIGTERM leaves the groups, stops the workers, prints the final \
            counters and exits 0. Relayed packets get the TTL of their output (default \(OutputSpec.defaultTTL)).

            --metrics 127.0.0.1:9464 serves Prometheus metrics (text format 0.0.4) at \
            http://127.0.0.1:9464/metrics: the counters of `mcrelay stats`, refreshed every second, \
            plus rules, workers, memberships and join failures. No authentication: bind it to \
            loopback or a management address.
            """)

    @Option(name: .long, help: "JSON config file with the initial rules.") var config: String?
    @Option(name: .long, help: "Control socket path (created with mode 0660).")
    var control: String = ControlProtocol.defaultSocketPath
    @Option(name: .long, help: "Worker processes (default: the number of CPUs).") var workers: Int?
    @Option(name: .long, help: "How workers share input interfaces: fanout or partition.")
    var dispatch: String = DispatchMode.fanout.rawValue
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"
    @Option(name: .long, help: "Log lines on stderr: text, or json (one object per line with ts, level, label, message and the metadata; for journald).")
    var logFormat: String = LogFormat.text.rawValue
    @Option(name: .long, help: "How workers send multicast outputs: packet (AF_PACKET frames built by the relay, skipping the kernel's UDP/IP send path and netfilter OUTPUT/POSTROUTING; UDP sockets where that cannot be used) or udp (kernel UDP sockets only).")
    var egress: String = EgressMode.default.rawValue
    @Option(name: .long, help: "Where UDP sends may coalesce same-size datagrams into one GSO send: auto (only toward devices that split it back into one frame per datagram before the wire: physical NICs, devices without tx-udp-segmentation), off, or on (also onto virtual links such as veth, which pass the super-frame on whole).")
    var segmentation: String = SegmentationSetting.default.rawValue
    @Option(name: .long, help: "Once the sockets are open, run as this user, keeping only CAP_NET_RAW and CAP_NET_ADMIN (start as root).")
    var user: String?
    @Option(name: .long, help: "With --user: the group (default: the user's primary group); it owns the control socket.")
    var group: String?
    @Option(name: .long, help: ArgumentHelp(
        "Serve Prometheus metrics at http://ADDRESS:PORT/metrics (IPV4:PORT or [IPV6]:PORT, e.g. 127.0.0.1:9464 or [::1]:9464; off by default).",
        valueName: "address:port"))
    var metrics: String?
    @Option(name: .long, help: "Where frames are forwarded: packet (the workers' AF_PACKET path) or xdp (an XDP program on the input interfaces forwards the rules it can carry, in the kernel's driver receive path; everything else goes on to the packet path).")
    var dataPath: String = "packet"
    @Option(name: .long, help: "With --data-path xdp: the BPF object (default: $MCRELAY_XDP_OBJECT, else /usr/lib/mcrelay/mcrelay_xdp.o).")
    var xdpObject: String?
    @Option(name: .long, help: "With --data-path xdp: native (in the driver, default; outputs must take redirected frames: a veth only while its peer has GRO on) or generic (after the driver, on socket buffers: slower, any device).")
    var xdpMode: String?
    @Option(name: .long, help: "Where the kernel does the input interfaces' receive work: threaded (default: in a kernel thread per receive queue, /sys/class/net/IF/threaded = 1, with GRO turned on on a veth input, which has NAPI only then; restored at exit), so that an input offered more than the workers can forward drops the excess at the device instead of starving the workers (receive livelock); or kernel (left as it is). Not used with --data-path xdp.")
    var inputNapi: String = InputNAPISetting.default.rawValue
    @Option(name: .long, help: "With --input-napi threaded: the nice value the daemon gives the receive threads it creates (-20...19; default 19, so that on a shared CPU a worker with frames to forward runs first, whatever session or cgroup it is in; restored when the input is restored).")
    var inputNapiNice: Int32 = InputNAPIThreadPriority.defaultNice
    @Option(name: .long, help: "Nice value of the worker processes (-20...19; default -10, against other processes of the daemon's own session or cgroup; a lower value the daemon was started with is kept). Against the inputs' receive threads see --input-napi-nice.")
    var workerNice: Int32 = WorkerPriority.defaultNice
    @Option(name: .long, help: "Flight recorder: record ingress frames and control-plane events into this new directory (see `mcrelay record`).")
    var record: String?
    @Option(name: .long, help: "Size limit of the --record directory in bytes (suffixes K, M, G). Default 256M.")
    var recordLimit: String?

    func run() throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            printError("--log-level: \"\(logLevel)\" is not one of trace, debug, info, notice, warning, error, critical")
            throw ExitCode.failure
        }
        guard let format = LogFormat(rawValue: logFormat) else {
            printError("--log-format: \"\(logFormat)\" is not text or json")
            throw ExitCode.failure
        }
        guard let mode = DispatchMode(rawValue: dispatch) else {
            printError("--dispatch: \"\(dispatch)\" is not fanout or partition")
            throw ExitCode.failure
        }
        guard let egressMode = EgressMode(rawValue: egress) else {
            printError("--egress: \"\(egress)\" is not packet or udp")
            throw ExitCode.failure
        }
        guard let segmentationSetting = SegmentationSetting(rawValue: segmentation) else {
            printError("--segmentation: \"\(segmentation)\" is not auto, off or on")
            throw ExitCode.failure
        }
        // Workers are spawned with this process's environment (WorkerProcess reads it).
        setenv(EgressMode.environmentVariable, egressMode.rawValue, 1)
        setenv(SegmentationSetting.environmentVariable, segmentationSetting.rawValue, 1)
        var identity: ServiceIdentity?
        if let user {
            do { identity = try ServiceIdentity.resolve(user: user, group: group) } catch {
                printError(error.description)
                throw ExitCode.failure
            }
        } else if group != nil {
            printError("--group needs --user")
            throw ExitCode.failure
        }
        var metricsAddress: MetricsAddress?
        if let metrics {
            do { metricsAddress = try MetricsAddress.parse(metrics) } catch {
                printError("--metrics: \(error.description)")
                throw ExitCode.failure
            }
        }
        let count = workers ?? ProcessInfo.processInfo.activeProcessorCount
        guard (1...256).contains(count) else {
            printError("--workers: \(count) is not in 1...256")
            throw ExitCode.failure
        }
        switch format {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let logger = Logger(label: "mcrelay.daemon")
        var supervisorOptions = SupervisorOptions(controlPath: control, configPath: config, workerCount: count, dispatchMode: mode)
        supervisorOptions.recordDirectory = record.map(absolutePath)
        switch dataPath {
        case "packet": break
        case "xdp": supervisorOptions.xdpObject = xdpObject.map(absolutePath) ?? XDPDataPath.objectPath(option: nil)
        default:
            printError("--data-path: \"\(dataPath)\" is not packet or xdp")
            throw ExitCode.failure
        }
        if xdpObject != nil || xdpMode != nil, dataPath != "xdp" {
            printError("--xdp-object and --xdp-mode need --data-path xdp")
            throw ExitCode.failure
        }
        if let xdpMode {
            guard let mode = XDPDataPath.Mode(rawValue: xdpMode) else {
                printError("--xdp-mode: \"\(xdpMode)\" is not native or generic")
                throw ExitCode.failure
            }
            supervisorOptions.xdpMode = mode
        }
        guard let napi = InputNAPISetting(rawValue: inputNapi) else {
            printError("--input-napi: \"\(inputNapi)\" is not threaded or kernel")
            throw ExitCode.failure
        }
        supervisorOptions.inputNAPI = napi
        guard InputNAPIThreadPriority.range.contains(inputNapiNice) else {
            printError("--input-napi-nice: \(inputNapiNice) is not in -20...19")
            throw ExitCode.failure
        }
        supervisorOptions.inputNAPINice = inputNapiNice
        guard WorkerPriority.range.contains(workerNice) else {
            printError("--worker-nice: \(workerNice) is not in -20...19")
            throw ExitCode.failure
        }
        supervisorOptions.workerNice = workerNice
        if let recordLimit { supervisorOptions.recordLimitBytes = try parseByteSize(recordLimit, option: "--record-limit") }
        let supervisor: Supervisor
        do {
            supervisorOptions.metricsAddress = metricsAddress
            supervisor = try Supervisor(options: supervisorOptions, logger: logger)
        } catch {
            // With --log-format json every stderr line must stay a JSON object.
            if format == .json { logger.critical("\(error.description)") } else { printError(error.description) }
            throw ExitCode.failure
        }
        do {
            if let identity { try supervisor.dropPrivileges(to: identity) } else { supervisor.reportPrivileges() }
        } catch {
            if format == .json { logger.critical("\(error.description)") } else { printError(error.description) }
            throw ExitCode.failure
        }
        logger.info("egress: \(egressMode == .packet ? "packet (AF_PACKET for multicast outputs, UDP sockets for unicast and fallbacks)" : "udp (kernel UDP sockets)")")
        let status = supervisor.run()
        if status != 0 { throw ExitCode(status) }
    }
}

struct RuleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rule", abstract: "Add, remove and list rules of the running daemon.",
        subcommands: [Add.self, Remove.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a rule; prints its id.",
            discussion: "Outputs without a TTL get \(OutputSpec.defaultTTL). Adding an identical rule again is harmless.")

        // Optional here and checked in run(), so a missing one is one line on stderr like every other error.
        @Option(name: .customLong("in"), help: "IFACE:GROUP:PORT to listen for (required); a prefix and/or any port: eth0:239.0.0.0/8:*.") var input: String?
        @Option(name: .customLong("out"), help: "IFACE:ADDRESS:PORT[:TTL][:listeners] to send to (repeatable); :listeners sends only while an IGMP/MLD listener there wants the group.") var outputs: [String] = []
        @Option(name: .long, help: "Only accept datagrams from this source (source-specific join).") var source: String?
        @Option(name: .long, help: "A name to refer to the rule by.") var name: String?
        @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

        func run() throws {
            guard let input else {
                printError("rule add needs --in IFACE:GROUP:PORT")
                throw ExitCode.failure
            }
            let text = RuleText(name: name, in: input, source: source, out: outputs)
            // Check the syntax here, so a typo is reported even when no daemon runs.
            do { _ = try text.spec() } catch {
                printError(error.message)
                throw ExitCode.failure
            }
            guard !outputs.isEmpty else {
                printError("a rule needs at least one --out IFACE:ADDRESS:PORT[:TTL]")
                throw ExitCode.failure
            }
            let reply = try controlRequest(ControlRequest(op: .add, rule: text), control: control)
            guard let rule = reply.rule else { fail("the daemon's reply has no rule") }
            print(rule.id)
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a rule by id or name; prints its id.")
        @Argument(help: "The rule's id (12 hex digits) or name.") var selector: String?
        @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

        func run() throws {
            guard let selector, !selector.isEmpty else {
                printError("rule remove needs a rule id or name")
                throw ExitCode.failure
            }
            let reply = try controlRequest(ControlRequest(op: .remove, selector: selector), control: control)
            print(reply.rule?.id ?? selector)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the rules.")
        @Flag(name: .long, help: "Print the daemon's JSON reply.") var json = false
        @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

        func run() throws {
            let reply = try controlRequest(ControlRequest(op: .list), control: control)
            let rules = reply.rules ?? []
            if json {
                print(String(decoding: ControlProtocol.encodeLine(rules), as: UTF8.self), terminator: "")
            } else {
                for rule in rules { print(rule.text) }
            }
        }
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Show the daemon's counters.",
        discussion: """
            --watch refreshes a table of packets/s and payload Mbit/s per rule and per output every \
            --interval seconds, computed from the counter deltas between two replies. On a terminal \
            the screen is redrawn; otherwise (a pipe, a file) one block per refresh is printed, \
            separated by a blank line. With --json, one JSON object per line per refresh. A rate \
            is "-" (null in JSON) when unknown: the first refresh, a new rule, or a counter that \
            went down (the daemon or a worker restarted).
            """)
    @Flag(name: .long, help: "Print the daemon's JSON reply (with --watch: one object with rates per line).") var json = false
    @Flag(name: .long, help: "Refresh until Ctrl-C (or --count refreshes), with rates.") var watch = false
    @Option(name: .long, help: "Seconds between refreshes with --watch (default 1).") var interval: Double?
    @Option(name: .long, help: "Stop after this many refreshes with --watch.") var count: Int?
    @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

    func run() throws {
        guard watch else {
            if interval != nil || count != nil {
                printError("--interval and --count need --watch")
                throw ExitCode.failure
            }
            let reply = try controlRequest(ControlRequest(op: .stats), control: control)
            guard let stats = reply.stats else { fail("the daemon's reply has no statistics") }
            if json {
                print(String(decoding: ControlProtocol.encodeLine(stats), as: UTF8.self), terminator: "")
            } else {
                print(stats.text, terminator: "")
            }
            return
        }
        let seconds = interval ?? 1
        guard seconds.isFinite, seconds >= 0.05, seconds <= 3600 else {
            printError("--interval: \(seconds) is not between 0.05 and 3600 seconds")
            throw ExitCode.failure
        }
        if let count, count < 1 {
            printError("--count: \(count) is not a positive number")
            throw ExitCode.failure
        }
        try watchLoop(every: .milliseconds(Int64((seconds * 1000).rounded())))
    }

    /// Samples on a fixed schedule (no drift); rates use the time each reply arrived, on the
    /// client's monotonic clock.
    private func watchLoop(every period: Duration) throws {
        let clock = ContinuousClock()
        let redraw = !json && isatty(STDOUT_FILENO) == 1
        var previous: (stats: StatsView, at: ContinuousClock.Instant)?
        var next = clock.now
        var refreshes = 0
        while count.map({ refreshes < $0 }) ?? true {
            let reply = try controlRequest(ControlRequest(op: .stats), control: control)
            let arrived = clock.now
            guard let stats = reply.stats else { fail("the daemon's reply has no statistics") }
            let elapsed = previous.map { arrived - $0.at } ?? .zero
            let rates = StatsRates.compute(previous: previous?.stats, current: stats,
                                           elapsedSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            if json {
                print(String(decoding: ControlProtocol.encodeLine(rates), as: UTF8.self), terminator: "")
            } else if redraw {
                print("\u{1B}[H\u{1B}[2J" + rates.table, terminator: "")
            } else {
                print((refreshes > 0 ? "\n" : "") + rates.table, terminator: "")
            }
            fflush(nil)  // All streams (stdout is not concurrency-safe to name). A pipe is block-buffered: each refresh must reach the reader now.
            previous = (stats, arrived)
            refreshes += 1
            if let count, refreshes >= count { break }
            next = next.advanced(by: period)
            if next < clock.now { next = clock.now }  // Fell behind (slow daemon): do not burst.
            sleep(until: next, clock: clock)
        }
    }
}

/// Blocks until `deadline` (the command is synchronous, so no `Task.sleep`).
private func sleep(until deadline: ContinuousClock.Instant, clock: ContinuousClock) {
    while true {
        let left = clock.now.duration(to: deadline)
        guard left > .zero else { return }
        let (seconds, attoseconds) = left.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        _ = nanosleep(&request, nil)
    }
}

/// `mcrelay worker --id N --channel-fd FD`: started by the daemon, never by hand.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Data-plane worker process (started by the daemon).", shouldDisplay: false)
    @Option(name: .long) var id: Int
    @Option(name: .customLong("channel-fd")) var channelFD: Int32

    func run() throws {
        WorkerProcess.run(worker: WorkerID(id), channelFD: channelFD)
    }
}

/// Sends a request; a failure (no daemon, or the daemon's error) is one line on stderr and exit 1.
func controlRequest(_ request: ControlRequest, control: String) throws -> ControlReply {
    let reply: ControlReply
    do { reply = try ControlClient.send(request, to: control) } catch {
        printError(error.description)
        throw ExitCode.failure
    }
    guard reply.ok else {
        printError(reply.error ?? "the daemon refused the request")
        throw ExitCode.failure
    }
    return reply
}

func fail(_ message: String) -> Never {
    printError(message)
    Foundation.exit(1)
}
