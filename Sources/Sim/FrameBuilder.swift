import RelayCore

/// Builds Ethernet II / IPv4 / UDP frames: the egress frames the relay would put on the wire,
/// liveness probes, and the generated traces. Writes into a caller-owned buffer that is reused
/// from frame to frame, so the per-packet egress path does not allocate.
public enum FrameBuilder {
    public static let ethernetHeaderLength = 14
    public static let headersLength = 14 + 20 + 8

    /// 01:00:5e + the low 23 bits of the group (RFC 1112 section 6.4).
    public static func multicastMAC(_ group: IPv4Address) -> (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) {
        (0x01, 0x00, 0x5E, UInt8((group.value >> 16) & 0x7F), UInt8(truncatingIfNeeded: group.value >> 8),
         UInt8(truncatingIfNeeded: group.value))
    }

    /// A locally administered MAC (02:...) naming the simulated interface by its index.
    public static func syntheticMAC(interfaceIndex: Int, host: UInt8 = 0) -> (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) {
        (0x02, 0x6D, 0x63, host, UInt8(truncatingIfNeeded: interfaceIndex >> 8), UInt8(truncatingIfNeeded: interfaceIndex))
    }

    public struct Header {
        public var sourceMAC: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)
        public var destinationMAC: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)? = nil
        public var vlan: UInt16? = nil
        public var source: IPv4Address
        public var destination: IPv4Address
        public var sourcePort: UInt16
        public var destinationPort: UInt16
        public var ttl: UInt8
        public var identification: UInt16 = 0
        public var udpChecksum = true

        public init(sourceMAC: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8), source: IPv4Address,
                    destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16, ttl: UInt8) {
            self.sourceMAC = sourceMAC
            self.source = source
            self.destination = destination
            self.sourcePort = sourcePort
            self.destinationPort = destinationPort
            self.ttl = ttl
        }
    }

    /// Writes the frame at the start of `buffer` (growing it if needed, never shrinking it, so
    /// a buffer reused from frame to frame stops allocating) and returns the frame's length.
    @discardableResult
    public static func build(_ header: Header, payload: UnsafeRawBufferPointer, into buffer: inout [UInt8]) -> Int {
        let length = headersLength + (header.vlan != nil ? 4 : 0) + payload.count
        if buffer.count < length { buffer.append(contentsOf: repeatElement(0, count: length - buffer.count)) }
        buffer.withUnsafeMutableBytes { write(header, payload: payload, into: $0) }
        return length
    }

    public static func build(_ header: Header, payload: [UInt8]) -> [UInt8] {
        var buffer: [UInt8] = []
        let length = payload.withUnsafeBytes { build(header, payload: $0, into: &buffer) }
        return Array(buffer.prefix(length))
    }

    @inline(__always)
    static func put16(_ out: UnsafeMutableRawBufferPointer, _ offset: Int, _ value: UInt16) {
        out[offset] = UInt8(value >> 8); out[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    @inline(__always)
    static func put32(_ out: UnsafeMutableRawBufferPointer, _ offset: Int, _ value: UInt32) {
        put16(out, offset, UInt16(value >> 16)); put16(out, offset + 2, UInt16(truncatingIfNeeded: value))
    }

    static func write(_ header: Header, payload: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        let dmac = header.destinationMAC ?? (header.destination.isMulticast
            ? multicastMAC(header.destination) : (0x02, 0x6D, 0x63, 0xFF, 0x00, 0x01))
        out[0] = dmac.0; out[1] = dmac.1; out[2] = dmac.2; out[3] = dmac.3; out[4] = dmac.4; out[5] = dmac.5
        let smac = header.sourceMAC
        out[6] = smac.0; out[7] = smac.1; out[8] = smac.2; out[9] = smac.3; out[10] = smac.4; out[11] = smac.5
        var at = 12
        if let vlan = header.vlan { put16(out, at, 0x8100); put16(out, at + 2, vlan & 0x0FFF); at += 4 }
        put16(out, at, 0x0800)
        let ip = at + 2
        let udpLength = 8 + payload.count
        out[ip] = 0x45; out[ip + 1] = 0
        put16(out, ip + 2, UInt16(truncatingIfNeeded: 20 + udpLength))
        put16(out, ip + 4, header.identification)
        put16(out, ip + 6, 0)  // flags and fragment offset: a whole datagram
        out[ip + 8] = header.ttl; out[ip + 9] = 17
        put16(out, ip + 10, 0)
        put32(out, ip + 12, header.source.value)
        put32(out, ip + 16, header.destination.value)
        let checksum = FrameParser.ipv4HeaderChecksum(UnsafeRawBufferPointer(rebasing: out[ip..<ip + 20]))
        put16(out, ip + 10, checksum)
        let udp = ip + 20
        put16(out, udp, header.sourcePort)
        put16(out, udp + 2, header.destinationPort)
        put16(out, udp + 4, UInt16(truncatingIfNeeded: udpLength))
        put16(out, udp + 6, 0)
        if let base = payload.baseAddress, payload.count > 0 {
            (out.baseAddress! + udp + 8).copyMemory(from: base, byteCount: payload.count)
        }
        guard header.udpChecksum else { return }
        var sum = UInt64(header.source.value >> 16) + UInt64(header.source.value & 0xFFFF)
            + UInt64(header.destination.value >> 16) + UInt64(header.destination.value & 0xFFFF)
            + 17 + UInt64(udpLength)
        // Ones'-complement sum, eight bytes at a time (byte order fixed up at the end).
        var offset = udp
        let end = udp + udpLength
        var wide: UInt64 = 0
        let raw = UnsafeRawBufferPointer(out)
        while offset + 8 <= end {
            let word = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            wide = wide &+ (word >> 32) &+ (word & 0xFFFF_FFFF)
            offset += 8
        }
        sum &+= (wide >> 32) + ((wide >> 16) & 0xFFFF) + (wide & 0xFFFF)
        while offset + 1 < end { sum &+= UInt64(out[offset]) << 8 | UInt64(out[offset + 1]); offset += 2 }
        if offset < end { sum &+= UInt64(out[offset]) << 8 }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        var value = ~UInt16(sum)
        if value == 0 { value = 0xFFFF }  // RFC 768: zero means "no checksum"
        put16(out, udp + 6, value)
    }

    @inline(__always) static func append16(_ buffer: inout [UInt8], _ value: UInt16) {
        buffer.append(UInt8(value >> 8)); buffer.append(UInt8(truncatingIfNeeded: value))
    }

    @inline(__always) static func append32(_ buffer: inout [UInt8], _ value: UInt32) {
        append16(&buffer, UInt16(value >> 16)); append16(&buffer, UInt16(truncatingIfNeeded: value))
    }
}
