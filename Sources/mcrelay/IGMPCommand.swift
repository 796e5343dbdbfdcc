import ArgumentParser
import RelayControl

/// `mcrelay igmp interfaces|groups|proxy`: the IGMP/MLD router's state (config `queriers`)
/// and what the proxies (config `proxies`) join upstream. Both families show here: an IPv6
/// line is MLD.
struct IGMPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "igmp",
        abstract: "Show the IGMP/MLD router: querier interfaces, the listeners it tracks, what proxies join upstream.",
        subcommands: [Interfaces.self, Groups.self, Proxy.self])

    static func fetch(_ control: String) throws -> ListenersView {
        let reply = try controlRequest(ControlRequest(op: .listeners), control: control)
        guard let view = reply.listeners else { fail("the daemon's reply has no listener state") }
        return view
    }

    /// What every subcommand takes, and the one way they print: the daemon's JSON for their
    /// part of the reply, or its text.
    struct ViewOptions: ParsableArguments {
        @Flag(name: .long, help: "Print the daemon's JSON reply.") var json = false
        @Option(name: .long, help: "Control socket path.") var control: String = ControlProtocol.defaultSocketPath

        func show(_ part: (ListenersView) -> some Encodable, text: (ListenersView) -> String) throws {
            let view = try IGMPCommand.fetch(control)
            if json {
                print(String(decoding: ControlProtocol.encodeLine(part(view)), as: UTF8.self), terminator: "")
            } else {
                print(text(view))
            }
        }
    }

    struct Interfaces: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per interface and family: querier or not, who the querier is, timers, counters.")
        @OptionGroup var options: ViewOptions
        func run() throws { try options.show({ $0.interfaces }, text: { $0.interfacesText }) }
    }

    struct Groups: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per interface and group: filter mode, sources, expiry, last reporter.")
        @OptionGroup var options: ViewOptions
        func run() throws { try options.show({ $0.groups }, text: { $0.groupsText }) }
    }

    struct Proxy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per upstream and group: what the proxies join (any source or which sources) and which downstream listeners ask for it; then per proxy route what each downstream forwarded and held back.")
        @OptionGroup var options: ViewOptions
        func run() throws {
            // The text adds what each proxy route forwarded and held back per downstream (the
            // daemon's counters, as `mcrelay stats` shows them); the JSON stays the joins.
            try options.show({ $0.proxy ?? [] }, text: { view in
                guard let stats = try? controlRequest(ControlRequest(op: .stats), control: options.control).stats else {
                    return view.proxyText
                }
                let forwarding = ListenersView.proxyForwardingText(stats)
                return forwarding.isEmpty ? view.proxyText : view.proxyText + "\n" + forwarding
            })
        }
    }
}
