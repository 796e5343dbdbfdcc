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
            """)

    @Option(name: .long, help: "JSON config file with the initial rules.") var config: String?
    @Option(name: .long, help: "Control socket path (created with mode 0660).")
    var control: String = ControlProtocol.defaultSocketPath
    @Option(name: .long, help: "Worker processes (default: the number of CPUs).") var workers: Int?
    @Option(name: .long, help: "How workers share input interfaces: fanout or partition.")
    var dispatch: String = DispatchMode.fanout.rawValue
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            printError("--log-level: \"\(logLevel)\" is not one of trace, debug, info, notice, warning, error, critical")
            throw ExitCode.failure
        }
        guard let mode = DispatchMode(rawValue: dispatch) else {
            printError("--dispatch: \"\(dispatch)\" is not fanout or partition")
            throw ExitCode.failure
        }
        let count = workers ?? ProcessInfo.processInfo.activeProcessorCount
        guard (1...256).contains(count) else {
            printError("--workers: \(count) is not in 1...256")
            throw ExitCode.failure
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "mcrelay.daemon")
        let supervisor: Supervisor
        do {
            supervisor = try Supervisor(
                options: SupervisorOptions(controlPath: control, configPath: config, workerCount: count, dispatchMode: mode),
                logger: logger)
        } catch {
            printError(error.description)
            throw ExitCode.failure
        }
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
        @Option(name: .customLong("in"), help: "IFACE:GROUP:PORT to listen for (required).") var input: String?
        @Option(name: .customLong("out"), help: "IFACE:ADDRESS:PORT[:TTL] to send to (repeatable).") var outputs: [String] = []
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
            let reply = try request(ControlRequest(op: .add, rule: text), control: control)
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
            let reply = try request(ControlRequest(op: .remove, selector: selector), control: control)
            print(reply.rule?.id ?? selector)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the rules.")
        @Flag(name: .long, help: "Print the daemon's JSON reply.") var json = false
        @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

        func run() throws {
            let reply = try request(ControlRequest(op: .list), control: control)
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
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show the daemon's counters.")
    @Flag(name: .long, help: "Print the daemon's JSON reply.") var json = false
    @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

    func run() throws {
        let reply = try request(ControlRequest(op: .stats), control: control)
        guard let stats = reply.stats else { fail("the daemon's reply has no statistics") }
        if json {
            print(String(decoding: ControlProtocol.encodeLine(stats), as: UTF8.self), terminator: "")
        } else {
            print(stats.text, terminator: "")
        }
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
private func request(_ request: ControlRequest, control: String) throws -> ControlReply {
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

private func fail(_ message: String) -> Never {
    printError(message)
    Foundation.exit(1)
}
