import RelayCore
import RelayControl
import Testing

/// `mcrelay igmp proxy`'s forwarding lines, from the stats of the proxies' routes only.
@Suite struct ProxyForwardingTextTests {
    @Test func oneLinePerProxyRouteWithEachDownstreamsCounts() throws {
        let proxy = ProxyConfiguration(upstream: InterfaceName("rin0")!, downstream: [InterfaceName("rout0")!, InterfaceName("rout1")!],
                                       groups: [try GroupPrefix(parsing: "239.0.0.0/8")])
        var route = RuleStatsView(unused: Proxies.routes(for: [proxy], besides: []).first!)
        route.outputs[0].packets = 400
        route.outputs[0].suppressed = 800
        route.outputs[1].packets = 200
        route.outputs[1].suppressed = 1000
        route.outputs[1].sendErrors = 3
        let rule = RuleStatsView(unused: try RuleBook.validated(RuleSpec(
            name: "proxy", input: EndpointSyntax.parseInput("rin0:239.1.1.1:5000"), outputs: [EndpointSyntax.parseOutput("rout0:239.2.2.2:5000")])))
        let stats = StatsView(rules: [rule, route], drops: DropCounters(), workers: [], planVersion: 1, joined: [], outstanding: [],
                              helperSockets: [], interfacesUp: [])
        #expect(ListenersView.proxyForwardingText(stats)
            == "forwarding rin0:239.0.0.0/8:* -> rout0 400 forwarded, 800 suppressed; rout1 200 forwarded, 1000 suppressed, 3 send errors",
                "a user rule named \"proxy\" is not a proxy route")
        #expect(ListenersView.proxyForwardingText(StatsView(rules: [rule], drops: DropCounters(), workers: [], planVersion: 1, joined: [],
                                                            outstanding: [], helperSockets: [], interfacesUp: [])).isEmpty)
    }
}
