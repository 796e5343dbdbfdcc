@testable import RelayCore

/// Builds valid frames (with a correct IPv4 header checksum) for tests, and lets a test
/// break one field at a time.
struct FrameBuilder {
    var link: LinkType = .ethernet
    var vlanTags = 0
    var source = IPv4Address(198, 18, 1, 1)
    var destination = IPv4Address(239, 1, 1, 1)
    var sourcePort: UInt16 = 40000
    var destinationPort: UInt16 = 5001
    var ttl: UInt8 = 1
    var payload: [UInt8] = Array("hello multicast".utf8)
    var ipOptions: [UInt8] = []  // a multiple of 4 bytes
    var protocolNumber: UInt8 = 17
    var flagsAndOffset: UInt16 = 0x4000  // DF
    var outgoing = false
    var etherPadding = 0

    func build() -> [UInt8] {
        var frame: [UInt8] = []
        switch link {
        case .ethernet:
            frame += [0x01, 0x00, 0x5E, 0x01, 0x01, 0x01, 0x02, 0, 0, 0, 0, 1]
            for _ in 0..<vlanTags { frame += [0x81, 0x00, 0x00, 0x07] }
            frame += [0x08, 0x00]
        case .linuxCooked:
            frame += be16(outgoing ? 4 : 2) + be16(1) + be16(6) + [2, 0, 0, 0, 0, 1, 0, 0] + [0x08, 0x00]
        case .linuxCooked2:
            frame += [0x08, 0x00, 0, 0] + [0, 0, 0, 3] + be16(1) + [outgoing ? 4 : 2, 6] + [2, 0, 0, 0, 0, 1, 0, 0]
        case .rawIP:
            break
        }
        let headerLength = 20 + ipOptions.count
        let udpLength = 8 + payload.count
        var ip: [UInt8] = [UInt8(0x40 | headerLength / 4), 0] + be16(UInt16(headerLength + udpLength))
        ip += [0x12, 0x34] + be16(flagsAndOffset) + [ttl, protocolNumber, 0, 0]
        ip += be32(source.value) + be32(destination.value) + ipOptions
        let checksum = ip.withUnsafeBytes { FrameParser.ipv4HeaderChecksum($0) }
        ip[10] = UInt8(checksum >> 8)
        ip[11] = UInt8(checksum & 0xFF)
        frame += ip
        frame += be16(sourcePort) + be16(destinationPort) + be16(UInt16(udpLength)) + [0, 0]
        frame += payload
        frame += [UInt8](repeating: 0, count: etherPadding)
        return frame
    }

    /// Offset of the IPv4 header in what `build()` returns.
    var ipOffset: Int {
        switch link {
        case .ethernet: 14 + 4 * vlanTags
        case .linuxCooked: 16
        case .linuxCooked2: 20
        case .rawIP: 0
        }
    }
}

func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
func be32(_ value: UInt32) -> [UInt8] { be16(UInt16(value >> 16)) + be16(UInt16(value & 0xFFFF)) }

func parse(_ frame: [UInt8], link: LinkType = .ethernet) -> ParseOutcome {
    frame.withUnsafeBytes { FrameParser.parse($0, link: link) }
}

func iface(_ name: String) -> InterfaceName { InterfaceName(name)! }
func ip(_ text: String) -> IPv4Address { IPv4Address(text)! }

func spec(_ input: String, _ outputs: [String], source: String? = nil, name: String? = nil) -> RuleSpec {
    RuleSpec(
        name: name,
        input: try! EndpointSyntax.parseInput(input, source: source.map { try! EndpointSyntax.parseAddress($0) }),
        outputs: outputs.map { try! EndpointSyntax.parseOutput($0) })
}
