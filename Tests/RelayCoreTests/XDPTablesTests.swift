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

    /// The daemon installs a new plan beside the old one: the other generation's indices, so
    /// no rule index of the new plan names an old rule's templates while both are in the maps.
    @Test func aPlanOfTheOtherGenerationUsesTheOtherHalfOfTheIndices() throws {
        let facts = Self.facts(["eth0", "eth1", "eth2"])
        let plan = plan([spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"]), spec("eth0:239.1.1.2:5001", ["eth2:239.10.1.2:6001"])])
        let zero = XDPTables(plan: plan, facts: facts, generation: 0)
        let one = XDPTables(plan: plan, facts: facts, generation: 1)
        func index(_ entry: XDPTables.Entry) -> UInt32 { entry.value.withUnsafeBytes { $0.load(as: UInt32.self) } }
        func outputIndex(_ entry: XDPTables.Entry) -> UInt32 { entry.key.withUnsafeBytes { $0.load(as: UInt32.self) } }
        #expect(zero.rules.map(index) == [0, 1])
        #expect(one.rules.map(index) == [UInt32(XDPTables.ruleCapacity), UInt32(XDPTables.ruleCapacity) + 1])
        #expect(one.outputs.map(outputIndex) == one.rules.map(index))
        // Same keys, same templates: only the indices differ.
        #expect(zero.rules.map(\.key) == one.rules.map(\.key) && zero.outputs.map(\.value) == one.outputs.map(\.value))
        #expect(zero.carried == [0, 1] && one.carried == [0, 1])
        #expect(XDPTables.ruleCapacity * 2 == XDPTables.mapRuleCapacity && XDPTables.outputCapacity * 2 == XDPTables.mapOutputCapacity)
    }

    @Test func inputsWithoutTheProgramAndOutputsWithoutRedirectsLeaveTheirRulesToThePacketPath() {
        let facts = Self.facts(["eth0", "eth1", "eth2", "eth3"])
        let plan = plan([
            spec("eth0:239.1.1.1:5001", ["eth1:239.10.1.1:6001"]),
            spec("eth3:239.1.1.2:5001", ["eth1:239.10.1.2:6001"]),
            spec("eth0:239.1.1.3:5001", ["eth1:239.10.1.3:6001", "eth2:239.10.1.4:6001"]),
        ], ingress: ["eth0", "eth3"])
        let tables = XDPTables(plan: plan, facts: facts, unavailableInputs: [iface("eth3"): "attach failed"],
                               unavailableOutputs: [iface("eth2"): "no ndo-xmit"])
        #expect(tables.fallbacks.map(\.reason) == ["no XDP program on input eth3: attach failed",
                                                   "output eth2 cannot take XDP redirects: no ndo-xmit"])
        #expect(tables.carried == [0] && tables.devices == [facts[iface("eth1")]!.index])
    }
}
