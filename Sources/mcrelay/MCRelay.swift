import ArgumentParser
import RelayControl

@main
struct MCRelay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcrelay",
        abstract: "Relay UDP multicast between interfaces, remapping groups and ports.",
        discussion: """
            The daemon reads raw frames (AF_PACKET) on input interfaces, joins the input groups, and \
            re-sends matching datagrams on output interfaces. It is controlled at run time through \
            a Unix socket. The simulator replays pcap traces through the same core.
            """,
        version: MCRelayVersion.banner,
        subcommands: [
            DaemonCommand.self, RuleCommand.self, StatsCommand.self, IGMPCommand.self, ConfigCommand.self, DoctorCommand.self, SimCommand.self,
            RecordCommand.self,
            WorkerCommand.self,
        ]
    )
}
