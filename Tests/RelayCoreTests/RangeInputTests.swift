import Testing
@testable import RelayCore

@Suite struct RangeInputTests {
    private func parseError(_ text: String) -> EndpointSyntaxError? {
        do { _ = try EndpointSyntax.parseInput(text); return nil } catch { return error }
    }

    private func refused(_ s: RuleSpec) -> RuleError? {
        do { _ = try RuleBook.validated(s); return nil } catch { return error }
    }

    @Test func parsesAndPrintsPrefixesAndAnyPort() throws {
        let cases = ["eth0:239.0.0.0/8:*", "eth0:239.1.1.1:*", "eth0:239.1.0.0/16:5000", "eth0:[ff3e::]/16:*",
                     "eth0:[ff3e::8000:0]/112:6000", "eth0:239.1.1.1:5000", "eth0:[ff3e::1]:5000"]
        for text in cases {
            #expect(try EndpointSyntax.parseInput(text).endpoint == text)
        }
        let range = try EndpointSyntax.parseInput("eth0:239.0.0.0/8:*")
        #expect(range.prefixLength == 8 && range.port == 0 && range.isRange && range.isAnyPort)
        // A full-length prefix is the group itself, with the same text and id as before.
        let full = try EndpointSyntax.parseInput("eth0:239.1.1.1/32:5000")
        #expect(full == (try EndpointSyntax.parseInput("eth0:239.1.1.1:5000")))
        #expect(full.endpoint == "eth0:239.1.1.1:5000")
        #expect(!full.isRange)
        // Exact inputs keep the ids they had (FNV-1a of the unchanged text).
        #expect(RuleID(deriving: full).description == RuleID(deriving: InputSpec(
            interface: InterfaceName("eth0")!, group: .v4(ip("239.1.1.1")), port: 5000)).description)
    }

    @Test func refusesBadPrefixesWithClearMessages() {
        #expect(parseError("eth0:239.1.0.0/8:*")?.description
            == "\"eth0:239.1.0.0/8:*\": \"239.1.0.0/8\" has bits set past its prefix length; the prefix starts at 239.0.0.0")
        #expect(parseError("eth0:239.0.0.0/33:*") == .badPrefix("eth0:239.0.0.0/33:*", "239.0.0.0/33"))
        #expect(parseError("eth0:239.0.0.0/x:*") == .badPrefix("eth0:239.0.0.0/x:*", "239.0.0.0/x"))
        #expect(parseError("eth0:[ff3e::]/129:*") != nil)
        #expect(parseError("eth0:239.1.1.1:0")?.description.contains("write * for any port") == true)
        #expect(parseError("eth0:239.1.1.1:**") != nil)
        let outputs = ["eth1:239.9.9.9:9"]
        #expect(refused(spec("eth0:192.0.0.0/4:*", outputs)) == .inputRangeNotMulticast(try! EndpointSyntax.parseInput("eth0:192.0.0.0/4:*")))
        #expect(refused(spec("eth0:224.0.0.0/4:*", outputs)) == .inputRangeLinkScoped(try! EndpointSyntax.parseInput("eth0:224.0.0.0/4:*")))
        #expect(refused(spec("eth0:224.0.0.0/24:*", outputs)) != nil)
        #expect(refused(spec("eth0:224.0.0.128/25:*", outputs)) != nil)
        #expect(refused(spec("eth0:224.0.1.0/24:*", outputs)) == nil)
        #expect(refused(spec("eth0:239.0.0.0/8:*", outputs)) == nil)
        #expect(refused(spec("eth0:0.0.0.0/0:*", outputs)) == .inputRangeNotMulticast(try! EndpointSyntax.parseInput("eth0:0.0.0.0/0:*")))
        #expect(refused(spec("eth0:[ff00::]/8:*", outputs)) != nil)    // spans scopes 0-2
        #expect(refused(spec("eth0:[ff02::]/16:*", outputs)) != nil)
        #expect(refused(spec("eth0:[ff12::]/16:*", outputs)) != nil)   // transient, link scope
        #expect(refused(spec("eth0:[ff3e::]/16:*", outputs)) == nil)
        #expect(refused(spec("eth0:[fe80::]/16:*", outputs)) != nil)
        #expect(refused(spec("eth0:239.1.1.1:*", outputs)) == nil)
        #expect(RuleError.inputRangeLinkScoped(try! EndpointSyntax.parseInput("eth0:224.0.0.0/4:*")).description.contains("224.0.0.0/24"))
    }

    @Test func rangeLoopsAreRefusedNamingBoth() throws {
        // An output into a range on its own interface.
        let own = refused(spec("eth0:239.0.0.0/8:*", ["eth0:239.5.5.5:1000"]))
        #expect(own == .outputFeedsInput(try EndpointSyntax.parseOutput("eth0:239.5.5.5:1000"),
                                         RuleID(deriving: try EndpointSyntax.parseInput("eth0:239.0.0.0/8:*"))))
        #expect(refused(spec("eth0:239.0.0.0/8:5000", ["eth0:239.5.5.5:5001"])) == nil)

        // A new rule's output into an existing range.
        var book = RuleBook()
        let range = try book.add(spec("eth1:239.0.0.0/8:*", ["eth2:239.200.0.1:6000"])).rule
        #expect(throws: RuleError.outputFeedsInput(try EndpointSyntax.parseOutput("eth1:239.3.3.3:7000"), range.id)) {
            try book.add(spec("eth0:239.1.1.1:5000", ["eth1:239.3.3.3:7000"]))
        }
        // A new range over an existing rule's output.
        let exact = try book.add(spec("eth0:239.1.1.1:5000", ["eth3:239.4.4.4:7000"])).rule
        #expect(throws: RuleError.inputFedByOutput(try EndpointSyntax.parseInput("eth3:239.4.0.0/16:*"), exact.id)) {
            try book.add(spec("eth3:239.4.0.0/16:*", ["eth5:239.9.9.9:1"]))
        }
        let message = RuleError.inputFedByOutput(try EndpointSyntax.parseInput("eth3:239.4.0.0/16:*"), exact.id).description
        #expect(message.contains("eth3:239.4.0.0/16:*") && message.contains(exact.id.description))
    }

    @Test func overlappingInputsAreAllAcceptedAndTheMostSpecificWins() throws {
        var book = RuleBook()
        // Crossing pairs too (a /16 any port and a /8 with a port): the longer prefix wins.
        for text in ["eth0:239.0.0.0/8:*", "eth0:239.1.0.0/16:*", "eth0:239.0.0.0/8:5000", "eth0:239.1.1.1:*",
                     "eth0:239.1.0.0/16:5000", "eth0:239.1.1.1:5000", "eth0:239.0.0.0/8:* "] {
            try book.add(spec(String(text.filter { $0 != " " }), ["eth1:239.100.0.1:1"]))
        }
        #expect(book.count == 6)
        // The same input with other outputs is still one input claimed twice.
        #expect(throws: RuleError.self) { try book.add(spec("eth0:239.0.0.0/8:*", ["eth2:239.100.0.1:1"])) }
    }

    @Test func forwarderMatchesExactThenAnyPortThenLongestPrefix() {
        var forwarder = Forwarder(plan: plan([
            spec("eth0:239.0.0.0/8:*", ["eth1:239.100.0.1:1"]),
            spec("eth0:239.1.0.0/16:*", ["eth2:239.100.0.2:2"]),
            spec("eth0:239.1.0.0/16:5000", ["eth2:239.100.0.3:3"]),
            spec("eth0:239.0.0.0/8:5000", ["eth2:239.100.0.7:7"]),
            spec("eth0:239.1.1.1:*", ["eth3:239.100.0.4:4"]),
            spec("eth0:239.1.1.1:5000", ["eth4:239.100.0.5:5"]),
            spec("eth0:239.7.0.0/16:*", ["eth5:239.100.0.6:6"], source: "198.18.9.9"),
        ]))
        func port(_ group: String, _ destinationPort: UInt16, source: String = "198.18.1.1") -> UInt16? {
            let frame = FrameBuilder(source: ip(source), destination: ip(group), destinationPort: destinationPort).build()
            return frame.withUnsafeBytes { bytes -> UInt16? in
                guard case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: 0) else { return nil }
                return forwarder.transmits(for: forwarding).first?.port
            }
        }
        #expect(port("239.1.1.1", 5000) == 5)   // exact
        #expect(port("239.1.1.1", 5001) == 4)   // any port on the exact group
        #expect(port("239.1.2.2", 5000) == 3)   // /16 with the port
        #expect(port("239.1.2.2", 5001) == 2)   // /16 any port
        #expect(port("239.9.9.9", 1) == 1)      // /8
        #expect(port("239.9.9.9", 5000) == 7)   // /8 with the port
        #expect(port("239.1.9.9", 5000) == 3)   // a longer prefix beats a port on a shorter one
        #expect(port("239.7.0.1", 1, source: "198.18.9.9") == 6)  // source-specific /16
        #expect(port("239.7.0.1", 1) == 1)      // other source: falls to the /8
        #expect(port("238.1.1.1", 5000) == nil)
        #expect(forwarder.drops[.noMatchingRule] == 1)
    }

    @Test func forwarderMatchesIPv6Prefixes() {
        var forwarder = Forwarder(plan: plan([
            spec("eth0:[ff3e::]/16:*", ["eth1:[ff3e::9]:1"]),
            spec("eth0:[ff3e::8000:0]/112:*", ["eth1:[ff3e::9]:2"]),
        ]))
        func port(_ group: String) -> UInt16? {
            var builder = FrameBuilder6()
            builder.destination = IPv6Address(group)!
            return builder.build().withUnsafeBytes { bytes -> UInt16? in
                guard case let .forward(forwarding) = forwarder.decide(bytes, link: .ethernet, ingress: 0) else { return nil }
                return forwarder.transmits(for: forwarding).first?.port
            }
        }
        #expect(port("ff3e::8000:1") == 2)
        #expect(port("ff3e::1:1") == 1)
        #expect(port("ff3f::1") == nil)
    }

    @Test func rangeInputsAreNotJoined() {
        let rules = [spec("eth0:239.0.0.0/8:*", ["eth1:239.100.0.1:1"]), spec("eth0:239.5.5.5:*", ["eth1:239.100.0.2:1"])]
            .map { try! RuleBook.validated($0) }
        #expect(ControlPlane.neededMemberships(for: rules) == [MembershipKey(interface: InterfaceName("eth0")!, group: ip("239.5.5.5"))])
    }
}
