// Owned by the daemon work (issue 4): `daemon`, `rule`, `stats`. Stubs until then.
import ArgumentParser

struct DaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "daemon", abstract: "Run the relay (not yet built).")
}

struct RuleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rule", abstract: "Add, remove and list rules.")
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show counters.")
}
