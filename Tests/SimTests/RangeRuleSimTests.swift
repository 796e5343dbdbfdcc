import RelayCore
import Testing
@testable import Sim

/// Range inputs in the simulator: the exact rule joins 239.1.1.1 (a prefix joins nothing), so
/// its traffic arrives; datagrams to other ports of that group miss the exact route and are
/// taken by the 239.0.0.0/8 any-port rule; the oracle, with its own matching, must agree frame
/// by frame, and the counts must add up.
@Suite struct RangeRuleSimTests {
    @Test func exactThenRangeMatchesTheOracle() throws {
        let input = InterfaceName("in0")!
        let exact = RuleSpec(input: InputSpec(interface: input, group: IPv4Address(239, 1, 1, 1), port: 5000),
                             outputs: [OutputSpec(interface: InterfaceName("out0")!, destination: IPv4Address(239, 9, 0, 1), port: 6000)])
        let range = RuleSpec(input: try EndpointSyntax.parseInput("in0:239.0.0.0/8:*"),
                             outputs: [OutputSpec(interface: InterfaceName("out1")!, destination: IPv4Address(239, 9, 0, 2), port: 6001),
                                       OutputSpec(interface: InterfaceName("out0")!, destination: IPv4Address(239, 9, 0, 3), port: 6002)])
        var store = FrameStore()
        for index in 0..<300 {
            let port: UInt16 = index % 3 == 0 ? 5000 : 7000 + UInt16(index % 5)
            let frame = TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, 1), group: IPv4Address(239, 1, 1, 1),
                                              port: port, payload: [UInt8](repeating: UInt8(index & 0xFF), count: 200),
                                              id: UInt16(index))
            store.append(time: UInt64(index) * 100_000, interface: input, link: .ethernet, bytes: frame)
        }
        var options = SimOptions()
        options.timing = .topspeed
        let result = try Simulation(input: SimInput(store: store, rules: [exact, range]), options: options).run()
        #expect(result.passed, "\(result.violations.prefix(3))")
        let byInput = Dictionary(uniqueKeysWithValues: result.report.rules.map { ($0.input, $0) })
        #expect(byInput["in0:239.1.1.1:5000"]?.accepted == 100)
        #expect(byInput["in0:239.0.0.0/8:*"]?.accepted == 200)
        #expect(byInput["in0:239.0.0.0/8:*"]?.outputs.map(\.transmitted) == [200, 200])
    }
}
