import Testing
@testable import RelayCore

@Suite struct IPv6AddressTests {
    @Test func parsesRFC4291TextAndPrintsRFC5952() throws {
        let cases: [(String, String)] = [
            ("ff3e::8000:1", "ff3e::8000:1"),
            ("FF3E:0:0:0:0:0:8000:1", "ff3e::8000:1"),
            ("2001:db8::10", "2001:db8::10"),
            ("::", "::"),
            ("::1", "::1"),
            ("fe80::", "fe80::"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // the first of two equal runs
            ("2001:0db8:0000:0001:0001:0001:0001:0001", "2001:db8:0:1:1:1:1:1"),  // one zero group stays
            ("::ffff:198.18.0.1", "::ffff:c612:1"),
            ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
            ("ff02::fb", "ff02::fb"),
        ]
        for (text, canonical) in cases {
            let address = try #require(IPv6Address(text), "\(text) must parse")
            #expect(address.description == canonical, "\(text)")
            #expect(IPv6Address(canonical) == address, "round trip of \(text)")
        }
        for bad in ["", ":", ":::", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "g::1",
                    "fe80::1%eth0", ":1::", "1::2:", "[ff3e::1]", "::1.2.3", "1.2.3.4::", " ::1", "::1 ",
                    "1:2:3:4:5:6:7:8::", "::1.2.3.4:5"] {
            #expect(IPv6Address(bad) == nil, "\(bad) must be refused")
        }
    }

    @Test func bytesRoundTripInNetworkOrder() throws {
        let address = try #require(IPv6Address("2001:db8::1:2"))
        #expect(address.bytes == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2])
        #expect(IPv6Address(bytes: address.bytes) == address)
    }

    @Test func classifiesScopesAndKinds() throws {
        #expect(try #require(IPv6Address("ff3e::1")).multicastScope == 14)
        #expect(try #require(IPv6Address("ff05::1")).multicastScope == 5)
        #expect(try #require(IPv6Address("ff02::fb")).multicastScope == 2)
        #expect(try #require(IPv6Address("fe80::1")).isLinkLocalUnicast)
        #expect(try #require(IPv6Address("2001:db8::1")).isUnicast)
        #expect(try #require(IPv6Address("::ffff:1.2.3.4")).isIPv4Mapped)
        #expect(!(try #require(IPv6Address("::ffff:1.2.3.4")).isUnicast))
        #expect(!(try #require(IPv6Address("::1")).isUnicast))
        #expect(!(try #require(IPv6Address("ff3e::1")).isUnicast))
    }

    @Test func genericAddressesKeepIPv4TextAndBracketIPv6() throws {
        #expect(IPAddress("239.1.1.1") == .v4(IPv4Address(239, 1, 1, 1)))
        #expect(IPAddress("[ff3e::1]") == IPAddress("ff3e::1"))
        #expect(IPAddress("ff3e::1")?.family == .ipv6)
        #expect(IPAddress("239.1.1.1")?.endpointText == "239.1.1.1")
        #expect(IPAddress("ff3e::1")?.endpointText == "[ff3e::1]")
        #expect(IPAddress("1234") == nil)
        #expect(IPAddress("[239.1.1.1]") == nil)
        #expect(try #require(IPAddress("224.0.0.251")).isLinkScopedGroup)
        #expect(try #require(IPAddress("ff02::fb")).isLinkScopedGroup)
        #expect(try #require(IPAddress("ff01::1")).isLinkScopedGroup)
        #expect(!(try #require(IPAddress("ff05::1")).isLinkScopedGroup))
        #expect(!(try #require(IPAddress("239.1.1.1")).isLinkScopedGroup))
        #expect(try #require(IPAddress("239.1.1.1")) < (try #require(IPAddress("::"))))
    }
}
