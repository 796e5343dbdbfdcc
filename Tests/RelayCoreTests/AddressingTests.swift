import Testing
@testable import RelayCore

@Suite struct AddressingTests {
    @Test func parsesStrictDottedQuads() {
        #expect(IPv4Address("239.1.2.3") == IPv4Address(239, 1, 2, 3))
        #expect(IPv4Address("0.0.0.0")?.value == 0)
        #expect(IPv4Address("255.255.255.255")?.value == .max)
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", " 1.2.3.4", "1.2.3.4 ", "a.b.c.d", "1.2.3.-4", "1.2.3.4."] {
            #expect(IPv4Address(bad) == nil, "\(bad) must be refused")
        }
        #expect(IPv4Address(239, 10, 0, 1).description == "239.10.0.1")
    }

    @Test func classifiesAddresses() {
        #expect(ip("239.1.1.1").isMulticast)
        #expect(ip("224.0.0.22").isLocalNetworkControl)
        #expect(!ip("224.0.1.1").isLocalNetworkControl)
        #expect(ip("198.18.0.1").isUnicast)
        #expect(!ip("0.1.2.3").isUnicast)
        #expect(!ip("240.0.0.1").isUnicast)
    }

    @Test func validatesInterfaceNames() {
        #expect(InterfaceName("eth0") != nil)
        #expect(InterfaceName("veth-relay-in01") != nil)  // 15 bytes
        for bad in ["", "veth-relay-in012", "a/b", "a:b", "a b", ".", "..", "caf\u{E9}", "cafe\u{301}"] {
            #expect(InterfaceName(bad) == nil, "\(bad) must be refused")
        }
    }

    @Test func endpointSyntaxErrorsNameTheField() throws {
        #expect(throws: EndpointSyntaxError.wrongFieldCount("eth0:239.1.1.1", expected: "IFACE:GROUP[/PREFIX]:PORT|*")) {
            try EndpointSyntax.parseInput("eth0:239.1.1.1")
        }
        #expect(throws: EndpointSyntaxError.badPort("eth0:239.1.1.1:99999", "99999")) {
            try EndpointSyntax.parseInput("eth0:239.1.1.1:99999")
        }
        #expect(throws: EndpointSyntaxError.badTTL("eth1:239.1.1.1:5000:0", "0")) {
            try EndpointSyntax.parseOutput("eth1:239.1.1.1:5000:0")
        }
        let output = try EndpointSyntax.parseOutput("eth1:239.10.1.1:6001")
        #expect(output.ttl == OutputSpec.defaultTTL)
        #expect(OutputSpec.defaultTTL > 1)
        #expect(try EndpointSyntax.parseOutput("eth1:239.10.1.1:6001:16").ttl == 16)
    }

    @Test func instantArithmeticSaturates() {
        let late = Instant(nanoseconds: .max - 5)
        #expect(late + .seconds(1) == Instant(nanoseconds: .max))
        #expect(Instant.zero + .milliseconds(1500) == Instant(nanoseconds: 1_500_000_000))
        #expect((Instant.zero + .milliseconds(1500)).description == "t=1.500s")
    }
}
