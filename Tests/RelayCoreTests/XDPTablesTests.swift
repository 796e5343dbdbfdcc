import Testing
@testable import RelayCore

/// What XDPTables puts into the XDP program's maps and what it leaves to the packet path.
/// The program's behaviour on these bytes is checked by Tests/XDPTests (root).
@Suite struct XDPTablesTests {
    static func facts(_ names: [String]) -> [InterfaceName: InterfaceFacts] {
        Dictionary(uniqueKeysWithValues: names.enumerated().map { (position, name) in
            (iface(name), InterfaceFacts.simulated(iface(name), position: position))
        })
    }

    @Test func aCarriedRuleHasItsKeyAndOneTemplatePerOutput() throws {
        let plan = plan([spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001:16", "eth2:239.20.1.1:7001"])])
        let facts = Self.facts(["eth0", "eth1", "eth2"])
        let tables = XDPTables(plan: plan, facts: facts)
        #expect(tables.fallbacks.isEmpty)
        try #require(tables.rules.count == 1)
        let key = tables.rules[0].key
        #expect(key.count == 40 && tables.rules[0].value.count == 16)
        #expect(Array(key[4..<8]) == [0x13, 0x89, 4, 0])  // port 5001 in network order, IPv4, any source
        #expect(Array(key[8..<12]) == [239, 1, 1, 1])
        #expect(tables.outputs.count == 2 && tables.outputs.allSatisfy { $0.key.count == 8 && $0.value.count == 80 })
        #expect(tables.devices == [facts[iface("eth1")]!.index, facts[iface("eth2")]!.index])
        // The template is the one the packet egress writes for that output.
        var template = [UInt8](repeating: 0, count: EgressFrame.templateBytes)
        let eth1 = facts[iface("eth1")]!
        template.withUnsafeMutableBytes {
            EgressFrame.writeTemplate($0.baseAddress!, sourceMAC: eth1.mac!, source: eth1.ipv4!, destination: ip("239.10.1.1"),
                                      destinationPort: 6001, ttl: 16)
        }
        #expect(tables.outputs[0].value == template)
    }

    @Test func shapesTheProgramCannotCarryFallBackWithTheirReason() {
        let facts = Self.facts(["eth0", "eth1", "eth2"])
        let plan = plan([
            spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001", "eth1:239.10.1.2:6001"]),
            spec("eth0:239.1.1.2:5001", ["eth0:239.10.1.1:6001"]),
            spec("eth0:239.1.1.3:5001", ["eth1:198.18.5.5:9000"]),
            spec("eth0:239.1.1.4:5001", ["eth2:239.10.1.4:6001"]),
        ])
        let tables = XDPTables(plan: plan, facts: facts)
        let reasons = Dictionary(uniqueKeysWithValues: tables.fallbacks.map { ($0.rule, $0.reason) })
        #expect(reasons.count == 3)
        #expect(reasons.values.contains { $0.hasPrefix("two outputs on eth1") })
        #expect(reasons.values.contains { $0.hasPrefix("output on its input interface eth0") })
        #expect(reasons.values.contains { $0.hasPrefix("output 198.18.5.5 is not a multicast group") })
        #expect(tables.rules.count == 1)
    }

    /// A refused source-specific rule takes the any-source rule of its input along, so the
    /// program never forwards a frame whose rule (by RouteTable's order) it does not carry.
    @Test func aRefusedRuleTakesTheOtherRulesOfItsInputAlong() {
        let facts = Self.facts(["eth0", "eth1", "eth2"])
        let plan = plan([
            spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"]),
            spec("eth0:239.1.1.1:5001", ["eth0:239.10.1.1:6001"], source: "198.18.1.1"),
        ])
        let tables = XDPTables(plan: plan, facts: facts)
        #expect(tables.rules.isEmpty && tables.fallbacks.count == 2)
        #expect(tables.fallbacks.contains { $0.reason.hasPrefix("shares its input with") })
    }

    @Test func aRuleWithAFollowOutputIsLeftToThePacketPathWhichHasTheGates() {
        let facts = Self.facts(["eth0", "eth1", "eth2"])
        let tables = XDPTables(plan: plan([spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001:listeners", "eth2:239.10.1.2:6001"])]),
                               facts: facts)
        #expect(tables.rules.isEmpty)
        #expect(tables.fallbacks.map(\.reason) == ["output eth1:239.10.1.1:6001:64:listeners follows listeners (the XDP path has no gates)"])
    }

    @Test func aMissingInterfaceIsARefusalNotACrash() {
        let tables = XDPTables(plan: plan([spec("eth0:239.1.1.1:5001", ["eth9:239.10.1.1:6001"])]),
                               facts: Self.facts(["eth0"]))
        #expect(tables.fallbacks.map(\.reason) == ["output eth9 is not a known Ethernet interface"])
    }
}
