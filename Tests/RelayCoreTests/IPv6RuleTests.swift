import Collections
import Testing
@testable import RelayCore

@Suite struct IPv6RuleTests {
    @Test func endpointsBracketIPv6AndKeepIPv4TextAndIDs() throws {
        let input = try EndpointSyntax.parseInput("eth0:[FF3E:0::8000:1]:5000", source: EndpointSyntax.parseAddress("[2001:db8::10]"))
        #expect(input.group == .v6(IPv6Address("ff3e::8000:1")!))
        #expect(input.source == .v6(IPv6Address("2001:db8::10")!))
        #expect(input.description == "eth0:[ff3e::8000:1]:5000 from 2001:db8::10")
        let output = try EndpointSyntax.parseOutput("eth1:[ff05::1:3]:6000:16")
        #expect(output.description == "eth1:[ff05::1:3]:6000:16")
        #expect(try EndpointSyntax.parseOutput(output.description) == output)
        // IPv4 text, and so every IPv4 rule id, is what it was before IPv6.
        let v4 = try EndpointSyntax.parseInput("eth0:239.1.1.1:5001")
        #expect(v4.description == "eth0:239.1.1.1:5001")
        #expect(RuleID(deriving: v4).description == RuleID(deriving: InputSpec(interface: v4.interface, group: IPv4Address(239, 1, 1, 1), port: 5001)).description)
        #expect(try EndpointSyntax.parseAddress("2001:db8::10") == .v6(IPv6Address("2001:db8::10")!))
    }

    @Test func endpointErrorsNameTheField() {
        #expect(throws: EndpointSyntaxError.wrongFieldCount("eth0:ff3e::1:5000", expected: "IFACE:GROUP[/PREFIX]:PORT|*")) {
            try EndpointSyntax.parseInput("eth0:ff3e::1:5000")
        }
        #expect(throws: EndpointSyntaxError.badBrackets("eth0:[ff3e::1:5000")) { try EndpointSyntax.parseInput("eth0:[ff3e::1:5000") }
        #expect(throws: EndpointSyntaxError.badBrackets("eth0:[ff3e::1]x:5000")) { try EndpointSyntax.parseInput("eth0:[ff3e::1]x:5000") }
        #expect(throws: EndpointSyntaxError.badBrackets("eth0:ff[3e::1]:5000")) { try EndpointSyntax.parseInput("eth0:ff[3e::1]:5000") }
        #expect(throws: EndpointSyntaxError.badAddress("eth0:[239.1.1.1]:5000", "[239.1.1.1]")) {
            try EndpointSyntax.parseInput("eth0:[239.1.1.1]:5000")
        }
        #expect(throws: EndpointSyntaxError.badAddress("eth0:[fe80::1%eth0]:5000", "[fe80::1%eth0]")) {
            try EndpointSyntax.parseInput("eth0:[fe80::1%eth0]:5000")
        }
    }

    @Test func validationIsFamilyAware() throws {
        func refused(_ input: String, _ outputs: [String], source: String? = nil) -> RuleError? {
            do {
                let spec = RuleSpec(input: try EndpointSyntax.parseInput(input, source: source.map { try EndpointSyntax.parseAddress($0) }),
                                    outputs: try outputs.map { try EndpointSyntax.parseOutput($0) })
                _ = try RuleBook.validated(spec)
                return nil
            } catch let error as RuleError {
                return error
            } catch {
                Issue.record("syntax: \(error)")
                return nil
            }
        }
        #expect(refused("eth0:[ff3e::1]:5000", ["eth1:[ff3e::2]:6000"]) == nil)
        #expect(refused("eth0:[ff3e::1]:5000", ["eth1:239.1.1.1:6000"]) == nil, "an output may change family")
        #expect(refused("eth0:239.1.1.1:5000", ["eth1:[ff3e::2]:6000", "eth1:[2001:db8::9]:6000"]) == nil)
        #expect(refused("eth0:[ff3e::1]:5000", ["eth1:[ff3e::2]:6000"], source: "2001:db8::10") == nil)
        #expect(refused("eth0:[ff3e::1]:5000", ["eth1:[ff3e::2]:6000"], source: "fe80::10") == nil, "a link-local sender is a sender")
        #expect(refused("eth0:[2001:db8::1]:5000", ["eth1:[ff3e::2]:6000"]) == .inputNotMulticast(IPAddress("2001:db8::1")!))
        #expect(refused("eth0:[ff02::fb]:5353", ["eth1:[ff3e::2]:6000"]) == .inputLocalNetworkControl(IPAddress("ff02::fb")!))
        #expect(refused("eth0:[ff01::1]:5000", ["eth1:[ff3e::2]:6000"]) == .inputLocalNetworkControl(IPAddress("ff01::1")!))
        #expect(refused("eth0:[ff02::fb]:5353", ["eth1:[ff3e::2]:6000"])?.description.contains("must not leave its link") == true)
        #expect(refused("eth0:[ff3e::1]:5000", ["eth1:[ff3e::2]:6000"], source: "198.18.0.1")
                == .sourceFamilyMismatch(IPAddress("198.18.0.1")!, group: IPAddress("ff3e::1")!))
        #expect(refused("eth0:[ff3e::1]:5000", ["eth1:[ff3e::2]:6000"], source: "::ffff:198.18.0.1")
                == .sourceNotUnicast(IPAddress("::ffff:198.18.0.1")!))
        #expect(refused("eth0:[ff3e::1]:5000", ["eth1:[ff02::1]:6000"]) != nil, "a link-scoped output destination")
        #expect(refused("eth0:[ff3e::1]:5000", ["eth1:[::1]:6000"]) != nil)
        #expect(refused("eth0:[ff3e::1]:5000", ["eth0:[ff3e::1]:5000"]) != nil, "a loop")
    }

    @Test func sourceSelectionFollowsScope() {
        let facts = InterfaceFacts.simulated(InterfaceName("eth1")!, position: 3)
        #expect(facts.source(for: IPAddress("239.1.1.1")!) == .v4(IPv4Address(198, 19, 3, 1)))
        #expect(facts.source(for: IPAddress("ff3e::1")!) == facts.ipv6.map(IPAddress.v6))
        #expect(facts.source(for: IPAddress("ff05::1")!) == facts.ipv6.map(IPAddress.v6))
        #expect(facts.source(for: IPAddress("fe80::99")!) == facts.ipv6LinkLocal.map(IPAddress.v6))
        #expect(facts.ipv6LinkLocal == IPv6Address("fe80::6d:63ff:fe00:3"))
        var linkLocalOnly = facts
        linkLocalOnly.ipv6 = nil
        #expect(linkLocalOnly.source(for: IPAddress("ff3e::1")!) == facts.ipv6LinkLocal.map(IPAddress.v6))
        linkLocalOnly.ipv6LinkLocal = nil
        #expect(linkLocalOnly.source(for: IPAddress("ff3e::1")!) == nil)
        #expect(MACAddress.multicast(IPv6Address("ff3e::8000:1234")!).description == "33:33:80:00:12:34")
    }

    @Test func ipv6JoinsUseTheirOwnSocketPool() {
        var membership = Membership(socketLimits: SocketLimits(ipv4: 20, ipv6: 3))
        var actions = Deque<ControlAction>()
        let eth0 = InterfaceName("eth0")!
        membership.interfaceUp(eth0, now: .zero, actions: &actions)
        var needed = Set<MembershipKey>()
        for index in 1...7 { needed.insert(MembershipKey(interface: eth0, group: .v6(IPv6Address(0xff3e, 0, 0, 0, 0, 0, 0, UInt16(index))))) }
        for index in 1...2 { needed.insert(MembershipKey(interface: eth0, group: IPv4Address(239, 1, 1, UInt8(index)))) }
        membership.setNeeded(needed, now: .zero, actions: &actions)
        let usage = membership.socketUsage
        #expect(usage.filter { $0.socket.family == .ipv6 }.map(\.groups) == [3, 3, 1])
        #expect(usage.filter { $0.socket.family == .ipv4 }.map(\.groups) == [2])
        #expect(usage.map(\.socket.description) == ["eth0#0", "eth0#v6.0", "eth0#v6.1", "eth0#v6.2"])
    }
}
