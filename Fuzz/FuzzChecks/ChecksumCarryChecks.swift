import RelayCore

/// Part of fuzz target `egress` (`checkEgress`, frame branches): the relay's frame `whole`
/// (valid checksums) received again and relayed to an output of the other family, through the
/// per-datagram path with the received datagram's `EgressFrame.checksumCarry`, gives the bytes of a
/// checksum summed over the payload; with one payload byte changed on the way (`corrupt` picks
/// which and how), the copy's UDP checksum fails as the received one does.
func checkChecksumCarry(_ whole: [UInt8], payload: [UInt8], corrupt: UInt16) {
    let v6 = whole[12] == 0x86
    let output: (IPAddress, IPAddress) = v6 ? (.v4(IPv4Address(198, 18, 9, 1)), .v4(IPv4Address(239, 9, 9, 9)))
        : (.v6(IPv6Address(high: 0x2001_0db8_0009_0000, low: 1)), .v6(IPv6Address(high: 0xFF3E_0000_0000_0000, low: 9)))
    func relay(_ frame: [UInt8]) -> (copy: [UInt8], summed: [UInt8]) {
        frame.withUnsafeBytes { bytes in
            guard case let .datagram(datagram) = FrameParser.parse(bytes, link: .ethernet) else {
                fuzzFailure("a relayed frame does not parse: \(FrameParser.parse(bytes, link: .ethernet))")
            }
            let body = UnsafeRawBufferPointer(rebasing: bytes[datagram.payloadOffset..<datagram.payloadOffset + datagram.payloadLength])
            func copy(_ carry: UInt16?) -> [UInt8] {
                EgressFrame.templatedBytes(sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), source: output.0, destination: output.1,
                                           sourcePort: datagram.sourcePort, destinationPort: 6001, ttl: 5, payload: Array(body),
                                           checksumCarry: carry)
            }
            return (copy(EgressFrame.checksumCarry(frame: bytes, datagram: datagram)), copy(nil))
        }
    }
    let relayed = relay(whole)
    require(relayed.copy == relayed.summed, "a valid checksum carried on gives the bytes of one summed over the payload")
    guard !payload.isEmpty else { return }
    let field = v6 ? 60 : 40
    var corrupted = whole
    corrupted[(v6 ? 62 : 42) + Int(corrupt) % payload.count] ^= UInt8(truncatingIfNeeded: corrupt >> 8) | 1
    // A field equal to the pseudo header's sum reads as an offload's partial checksum and is
    // summed from the payload by design (1 in 65,536 valid checksums).
    guard UInt16(whole[field]) << 8 | UInt16(whole[field + 1]) != partialPseudoSum(whole) else { return }
    require(!udpChecksumVerifies(relay(corrupted).copy),
            "a datagram corrupted on the way leaves with a checksum that fails, not one summed over the corrupted payload")
}

/// Whether an untagged frame's UDP checksum verifies over its pseudo header and UDP datagram
/// (also used by ChecksumCarryTests).
public func udpChecksumVerifies(_ frame: [UInt8]) -> Bool {
    let v6 = frame[12] == 0x86
    let udp = Array(frame[(v6 ? 54 : 34)...])
    let length = [UInt8(truncatingIfNeeded: udp.count >> 8), UInt8(truncatingIfNeeded: udp.count)]
    let pseudo = v6 ? Array(frame[22..<54]) + [0, 0] + length + [0, 0, 0, 17] : Array(frame[26..<34]) + [0, 17] + length
    return (pseudo + udp).withUnsafeBytes { EgressFrame.checksum($0) } == 0
}

/// The pseudo header's folded sum (addresses, protocol 17, UDP length) of an untagged frame, as a
/// number: what a sender leaving its checksum to offload puts in the field (also used by
/// ChecksumCarryTests and XDPDifferentialTests).
public func partialPseudoSum(_ frame: [UInt8]) -> UInt16 {
    let v6 = frame[12] == 0x86
    let words = (v6 ? Array(frame[22..<54]) : Array(frame[26..<34])) + Array(frame[(v6 ? 58 : 38)..<(v6 ? 60 : 40)])
    var sum: UInt32 = 17
    for index in stride(from: 0, to: words.count, by: 2) { sum += UInt32(words[index]) << 8 | UInt32(words[index + 1]) }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return UInt16(sum)
}
