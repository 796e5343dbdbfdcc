import RelayCore

/// `sim bench`: replay throughput on a synthetic trace, and fuzz cases per minute.
public enum Bench {
    /// `packets` frames round-robin over `streams` streams on one input interface, each rule
    /// with two outputs; top-speed timing, no faults, two workers with fanout.
    public static func replayCase(packets: Int, streams: Int = 4) -> SimCase {
        let input = InterfaceName("in0")!
        var rules: [RuleSpec] = []
        for stream in 0..<streams {
            rules.append(RuleSpec(name: "s\(stream)", input: InputSpec(interface: input, group: IPv4Address(239, 1, 2, UInt8(1 + stream)), port: 5000),
                                  outputs: [OutputSpec(interface: InterfaceName("out0")!, destination: IPv4Address(239, 10, 2, UInt8(1 + stream)), port: 6000, ttl: 16),
                                            OutputSpec(interface: InterfaceName("out1")!, destination: IPv4Address(239, 11, 2, UInt8(1 + stream)), port: 6000, ttl: 16)]))
        }
        var store = FrameStore()
        let payload = [UInt8](repeating: 0xAB, count: 100)
        let templates = (0..<streams).map { stream in
            TrafficMaker.datagram(interface: 0, source: IPv4Address(198, 18, 1, UInt8(1 + stream)),
                                  group: IPv4Address(239, 1, 2, UInt8(1 + stream)), port: 5000, payload: payload)
        }
        for index in 0..<packets {
            store.append(time: UInt64(index) * 1_000, interface: input, link: .ethernet, bytes: templates[index % streams])
        }
        var options = SimOptions()
        options.timing = .topspeed
        return SimCase(input: SimInput(store: store, rules: rules), options: options)
    }
}
