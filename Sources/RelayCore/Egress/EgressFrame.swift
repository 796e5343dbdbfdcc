/// The bytes the relay puts on the wire for one datagram: Ethernet II, IPv4 (no options) or
/// IPv6 (no extension headers) and UDP headers in front of the payload, built here and
/// nowhere else. The daemon's packet
/// egress writes them (LinuxIO only hands them to the kernel), the simulator writes the same
/// bytes to its egress pcaps, and the tests build their frames with it.
///
/// Choices, all RFC-conformant:
/// - destination MAC: 01:00:5e + the low 23 bits of the group (RFC 1112 section 6.4), or
///   33:33 + the low 32 bits of an IPv6 group (RFC 2464 section 7);
/// - source MAC and IP address: the output interface's (`InterfaceFacts.source(for:)`);
/// - IPv6: traffic class and flow label 0, the output's hop limit, and the UDP checksum always
///   (RFC 8200 section 8.1 makes it mandatory);
/// - IPv4: DF set (as the kernel's UDP path sends), identification 0 (RFC 6864: any value for
///   an atomic datagram; the kernel's UDP path numbers its datagrams instead), the output's TTL;
/// - UDP source port: the original sender's, as a router forwarding the datagram keeps it, so
///   a stream keeps its identity across the relay and the bytes follow from the input alone;
/// - the IPv4 header checksum computed; the UDP checksum carried on from the received one
///   (RFC 1624: the received checksum less the received addresses and port, plus the new ones),
///   so a datagram corrupted before the relay still fails the receiver's check, as it would have
///   without the relay, and the payload is not read (`checksumCarry`). Only a received field
///   that cannot be carried on (IPv4 without a checksum, or a sender's checksum left to offload)
///   is summed from the payload, once per datagram.
///
/// The per-datagram path uses a template per output (`writeTemplate`, once per plan) and
/// `writeHeader` (per datagram: lengths, ports, checksums from partial sums and the datagram's
/// `checksumCarry`), writing into caller-owned memory: no allocation, and the payload is never
/// copied.
public enum EgressFrame {
    public static let ethernetHeaderBytes = 14
    /// Ethernet + IPv4 + UDP.
    public static let headerBytes = 42
    /// Ethernet + IPv6 + UDP.
    public static let ipv6HeaderBytes = 62
    /// The longest header of any family: what a per-datagram header buffer must hold.
    public static let maximumHeaderBytes = 62
    /// Bytes of a template: the header, then the partial sums and the header's length.
    public static let templateBytes = 80

    static let ip = 14
    static let udp = 34
    static let udp6 = 54
    static let ipSumOffset = 64
    static let udpSumOffset = 68
    static let headerLengthOffset = 72

    /// Bytes of the header `writeHeader` writes from this template (42 or 62).
    @inlinable @inline(__always)
    public static func headerLength(template: UnsafeRawPointer) -> Int {
        Int(template.load(fromByteOffset: 72, as: UInt8.self))
    }

    /// Bytes of the header for a destination of this family.
    public static func headerLength(for family: AddressFamily) -> Int {
        family == .ipv4 ? headerBytes : ipv6HeaderBytes
    }

    /// Every header field of one frame, for frames built whole (simulator traces, tests, and
    /// the reference the template path is checked against). The defaults are the relay's.
    public struct Fields: Sendable, Equatable {
        public var sourceMAC: MACAddress
        /// nil: the multicast MAC of a group destination (unicast destinations need one given).
        public var destinationMAC: MACAddress?
        /// An 802.1Q tag (VLAN id), for input frames as captures carry them.
        public var vlan: UInt16?
        /// Of the same family as `destination`.
        public var source: IPAddress
        public var destination: IPAddress
        public var sourcePort: UInt16
        public var destinationPort: UInt16
        public var ttl: UInt8
        public var identification: UInt16 = 0
        public var dontFragment = true
        /// IPv4 only: IPv6 always carries one.
        public var udpChecksum = true

        public init(sourceMAC: MACAddress, destinationMAC: MACAddress? = nil, source: IPv4Address, destination: IPv4Address,
                    sourcePort: UInt16, destinationPort: UInt16, ttl: UInt8) {
            self.init(sourceMAC: sourceMAC, destinationMAC: destinationMAC, source: .v4(source), destination: .v4(destination),
                      sourcePort: sourcePort, destinationPort: destinationPort, ttl: ttl)
        }

        public init(sourceMAC: MACAddress, destinationMAC: MACAddress? = nil, source: IPAddress, destination: IPAddress,
                    sourcePort: UInt16, destinationPort: UInt16, ttl: UInt8) {
            precondition(source.family == destination.family, "source and destination of one family")
            self.sourceMAC = sourceMAC
            self.destinationMAC = destinationMAC
            self.source = source
            self.destination = destination
            self.sourcePort = sourcePort
            self.destinationPort = destinationPort
            self.ttl = ttl
        }

        /// The destination MAC the frame carries.
        public var resolvedDestinationMAC: MACAddress {
            if let destinationMAC { return destinationMAC }
            switch destination {
            case let .v4(group) where group.isMulticast: return .multicast(group)
            case let .v6(group) where group.isMulticast: return .multicast(group)
            default: return MACAddress(0x02, 0x6D, 0x63, 0xFF, 0x00, 0x01)
            }
        }

        var headerLength: Int { EgressFrame.headerLength(for: destination.family) }
    }

    // MARK: - The per-datagram path

    /// Fills a template (`templateBytes`) for one output: the constant header fields and the
    /// partial sums of its checksums. The source port, lengths and checksums are per datagram.
    /// `source` and `destination` must be of one family.
    public static func writeTemplate(_ template: UnsafeMutableRawPointer, sourceMAC: MACAddress, source: IPv4Address,
                                     destination: IPv4Address, destinationPort: UInt16, ttl: UInt8) {
        writeTemplate(template, sourceMAC: sourceMAC, source: .v4(source), destination: .v4(destination),
                      destinationPort: destinationPort, ttl: ttl)
    }

    public static func writeTemplate(_ template: UnsafeMutableRawPointer, sourceMAC: MACAddress, source: IPAddress,
                                     destination: IPAddress, destinationPort: UInt16, ttl: UInt8) {
        template.initializeMemory(as: UInt8.self, repeating: 0, count: templateBytes)
        var fields = Fields(sourceMAC: sourceMAC, source: source, destination: destination, sourcePort: 0,
                            destinationPort: destinationPort, ttl: ttl)
        fields.udpChecksum = false
        writeFixedHeader(template, fields)
        template.storeBytes(of: UInt8(fields.headerLength), toByteOffset: headerLengthOffset, as: UInt8.self)
        if destination.family == .ipv6 {
            // Pseudo header (RFC 8200 8.1) without its length: both addresses and the next
            // header, plus the destination port.
            let pseudo = pseudoHeaderSum(ip: template + ip) &+ UInt64(destinationPort.bigEndian)
            template.storeBytes(of: UInt32(fold(pseudo)), toByteOffset: udpSumOffset, as: UInt32.self)
            return
        }
        // IPv4 header with total length and checksum 0.
        let ipSum = UInt32(fold(sum(template + ip, 20, 0)))
        template.storeBytes(of: ipSum, toByteOffset: ipSumOffset, as: UInt32.self)
        // Pseudo header without its length (source, destination, protocol) plus the destination port.
        let pseudo = pseudoHeaderSum(ip: template + ip) &+ UInt64(destinationPort.bigEndian)
        template.storeBytes(of: UInt32(fold(pseudo)), toByteOffset: udpSumOffset, as: UInt32.self)
    }

    /// Writes the header of one datagram into `out` (`maximumHeaderBytes` room) from an output's
    /// template; returns its length (`headerLength(template:)`). The UDP checksum is the
    /// template's part (addresses, protocol, destination port) plus `checksumCarry`, the part
    /// every copy of the datagram shares (`checksumCarry(frame:datagram:)`), so the payload is not
    /// read here. `udpChecksum` false (IPv4 only) sends none.
    @inlinable @inline(__always) @discardableResult
    public static func writeHeader(_ out: UnsafeMutableRawPointer, template: UnsafeRawPointer, sourcePort: UInt16,
                                   payloadCount: Int, checksumCarry: UInt16, udpChecksum: Bool = true) -> Int {
        if template.load(fromByteOffset: 72, as: UInt8.self) != 42 {
            writeIPv6Header(out, template: template, sourcePort: sourcePort, payloadCount: payloadCount,
                            checksumCarry: checksumCarry)
            return 62
        }
        out.copyMemory(from: template, byteCount: 42)
        let total = UInt16(truncatingIfNeeded: payloadCount + 28).bigEndian
        let udpLength = UInt16(truncatingIfNeeded: payloadCount + 8).bigEndian
        let ipSum = template.loadUnaligned(fromByteOffset: 64, as: UInt32.self)
        out.storeBytes(of: total, toByteOffset: 16, as: UInt16.self)
        out.storeBytes(of: ~fold(UInt64(ipSum) &+ UInt64(total)), toByteOffset: 24, as: UInt16.self)
        out.storeBytes(of: sourcePort.bigEndian, toByteOffset: 34, as: UInt16.self)
        out.storeBytes(of: udpLength, toByteOffset: 38, as: UInt16.self)
        // 0: no checksum (legal for UDP over IPv4)
        out.storeBytes(of: udpChecksum ? udpCheck(template: template, carry: checksumCarry) : 0, toByteOffset: 40, as: UInt16.self)
        return 42
    }

    /// `writeHeader` with the shared part summed from the payload (`payloadCarry`): for writers
    /// that have no received datagram (tests, benchmarks, frames built whole).
    @inlinable @inline(__always) @discardableResult
    public static func writeHeader(_ out: UnsafeMutableRawPointer, template: UnsafeRawPointer, sourcePort: UInt16,
                                   payload: UnsafeRawBufferPointer, udpChecksum: Bool = true) -> Int {
        writeHeader(out, template: template, sourcePort: sourcePort, payloadCount: payload.count,
                    checksumCarry: udpChecksum ? payloadCarry(sourcePort: sourcePort, payload: payload) : 0,
                    udpChecksum: udpChecksum)
    }

    @inlinable @inline(__always)
    static func writeIPv6Header(_ out: UnsafeMutableRawPointer, template: UnsafeRawPointer, sourcePort: UInt16,
                                payloadCount: Int, checksumCarry: UInt16) {
        out.copyMemory(from: template, byteCount: 62)
        let udpLength = UInt16(truncatingIfNeeded: payloadCount + 8).bigEndian
        out.storeBytes(of: udpLength, toByteOffset: 18, as: UInt16.self)  // payload length
        out.storeBytes(of: sourcePort.bigEndian, toByteOffset: 54, as: UInt16.self)
        out.storeBytes(of: udpLength, toByteOffset: 58, as: UInt16.self)
        out.storeBytes(of: udpCheck(template: template, carry: checksumCarry), toByteOffset: 60, as: UInt16.self)
    }

    /// The UDP checksum field: the template's part of the sum plus the datagram's.
    @inlinable @inline(__always)
    static func udpCheck(template: UnsafeRawPointer, carry: UInt16) -> UInt16 {
        let check = ~fold(UInt64(template.loadUnaligned(fromByteOffset: 68, as: UInt32.self)) &+ UInt64(carry))
        return check == 0 ? 0xFFFF : check  // a computed 0 is sent as all ones (RFC 768)
    }

    // MARK: - The UDP checksum every copy shares

    /// The part of a re-originated copy's UDP checksum sum that every copy of one received
    /// datagram shares: its source port, the UDP length twice (pseudo header and UDP header) and
    /// the payload, as a folded ones'-complement sum in `sum`'s representation. Each output's
    /// template holds the rest (`writeTemplate`: the new addresses, protocol and destination port).
    ///
    /// Taken from the received checksum (RFC 1624): a received checksum makes the whole sum come
    /// to all ones, so the shared part is its complement less the received addresses, protocol
    /// and destination port. The payload is not read, and whatever the received checksum says of
    /// the payload (valid or not) the copies say too: a datagram corrupted on the way to the
    /// relay still fails at the receiver, as it would have without the relay. Two received
    /// fields do not describe the payload and are summed from it instead (`payloadCarry`), once
    /// per datagram: 0 (IPv4 without a checksum; the copies get one, as the kernel's UDP sockets
    /// send them) and a field equal to the received pseudo header's sum, which a sender on this
    /// host or a VM beside it leaves for offload to complete (CHECKSUM_PARTIAL; see
    /// `completeUDPChecksum`; a valid checksum that happens to equal it sums to the same).
    /// `datagram` is what `FrameParser` found in `frame` (its offsets lie inside it); the words
    /// are read from the frame as `sum` reads headers.
    @inlinable @inline(__always)
    public static func checksumCarry(frame: UnsafeRawBufferPointer, datagram: UDPDatagram) -> UInt16 {
        guard let base = frame.baseAddress else { return 0 }
        let ip = base + datagram.ipOffset
        let udp = base + datagram.payloadOffset - 8
        let field = udp.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        let udpLength = udp.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        let addresses = pseudoHeaderSum(ip: ip)
        if field == 0 || field == fold(addresses &+ UInt64(udpLength)) {
            let payload = UnsafeRawBufferPointer(start: base + datagram.payloadOffset, count: datagram.payloadLength)
            return payloadCarry(sourcePort: datagram.sourcePort, payload: payload)
        }
        let received = fold(addresses &+ UInt64(udp.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        return fold(UInt64(~received) &+ UInt64(~field))
    }

    /// The shared part summed from the payload: the source port, the UDP length twice, the payload.
    @inlinable @inline(__always)
    public static func payloadCarry(sourcePort: UInt16, payload: UnsafeRawBufferPointer) -> UInt16 {
        let udpLength = UInt64(UInt16(truncatingIfNeeded: payload.count + 8).bigEndian)
        var total = UInt64(sourcePort.bigEndian) &+ udpLength &+ udpLength
        if let base = payload.baseAddress { total = sum(base, payload.count, total) }
        return fold(total)
    }

    /// Header and a copy of the payload at the start of `out` (which must hold
    /// `headerLength(template:) + payload.count`), from an output's template: what a frame writer
    /// that owns its buffer (the simulator's egress pcaps) does per datagram. Returns the
    /// frame's length.
    /// `checksumCarry` nil: summed from the payload (`payloadCarry`).
    @inlinable
    public static func writeFrame(_ out: UnsafeMutableRawBufferPointer, template: UnsafeRawPointer, sourcePort: UInt16,
                                  payload: UnsafeRawBufferPointer, checksumCarry: UInt16? = nil) -> Int {
        let header = headerLength(template: template)
        precondition(out.count >= header + payload.count, "frame buffer too small")
        writeHeader(out.baseAddress!, template: template, sourcePort: sourcePort, payloadCount: payload.count,
                    checksumCarry: checksumCarry ?? payloadCarry(sourcePort: sourcePort, payload: payload))
        if let body = payload.baseAddress, payload.count > 0 {
            (out.baseAddress! + header).copyMemory(from: body, byteCount: payload.count)
        }
        return header + payload.count
    }

    /// A frame through the per-datagram path (template, then header), as an array: for tests and
    /// fuzzing, which check it against the whole-frame builder (allocates). `checksumCarry`: a
    /// received datagram's (`checksumCarry(frame:datagram:)`); nil: summed from the payload.
    public static func templatedBytes(sourceMAC: MACAddress, source: IPv4Address, destination: IPv4Address, sourcePort: UInt16,
                                      destinationPort: UInt16, ttl: UInt8, payload: [UInt8]) -> [UInt8] {
        templatedBytes(sourceMAC: sourceMAC, source: .v4(source), destination: .v4(destination), sourcePort: sourcePort,
                       destinationPort: destinationPort, ttl: ttl, payload: payload)
    }

    public static func templatedBytes(sourceMAC: MACAddress, source: IPAddress, destination: IPAddress, sourcePort: UInt16,
                                      destinationPort: UInt16, ttl: UInt8, payload: [UInt8], checksumCarry: UInt16? = nil) -> [UInt8] {
        var template = [UInt8](repeating: 0xA5, count: templateBytes)
        var frame = [UInt8](repeating: 0x5A, count: headerLength(for: destination.family) + payload.count)
        template.withUnsafeMutableBytes { template in
            writeTemplate(template.baseAddress!, sourceMAC: sourceMAC, source: source, destination: destination,
                          destinationPort: destinationPort, ttl: ttl)
            frame.withUnsafeMutableBytes { out in
                payload.withUnsafeBytes {
                    _ = writeFrame(out, template: UnsafeRawPointer(template.baseAddress!), sourcePort: sourcePort, payload: $0,
                                   checksumCarry: checksumCarry)
                }
            }
        }
        return frame
    }

    // MARK: - Routed frames (a proxy's downstream)

    /// The longest header `writeRoutedHeader` writes: Ethernet, then a received IP header with
    /// options (IPv4, up to 60 bytes) or extension headers (IPv6), and the UDP header. A
    /// datagram whose headers are longer is not routed (the driver counts a send failure).
    public static let maximumRoutedHeaderBytes = 256

    /// A routed output's template: the source MAC only (every other field comes from the
    /// datagram); its header length byte is 0, which tells it from a re-originating template.
    public static func writeRoutedTemplate(_ template: UnsafeMutableRawPointer, sourceMAC: MACAddress) {
        template.initializeMemory(as: UInt8.self, repeating: 0, count: templateBytes)
        let bytes = sourceMAC.bytes
        for (index, byte) in [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5].enumerated() {
            template.storeBytes(of: byte, toByteOffset: 6 + index, as: UInt8.self)
        }
    }

    /// Is this a routed output's template (`writeRoutedTemplate`)?
    @inlinable @inline(__always)
    public static func isRouted(template: UnsafeRawPointer) -> Bool {
        template.load(fromByteOffset: 72, as: UInt8.self) == 0
    }

    /// Bytes `writeRoutedHeader` writes for these received headers.
    @inlinable @inline(__always)
    public static func routedHeaderLength(headers: UnsafeRawBufferPointer) -> Int { ethernetHeaderBytes + headers.count }

    /// The header of a routed datagram, as a router forwards it: Ethernet (destination MAC
    /// from the group, RFC 1112 6.4 / RFC 2464 7; source MAC the downstream interface's, from
    /// the template), then the received IP header and UDP header copied, with the TTL / hop
    /// limit one less and, for IPv4, the header checksum computed again (RFC 1812 5.3.1).
    /// Addresses, ports and the UDP checksum stay as the sender wrote them (the UDP pseudo
    /// header does not cover the TTL), with one exception, `completeUDPChecksum`.
    /// `headers` is what the `FrameParser` accepted (IPv4 or IPv6 from its first byte, TTL > 1:
    /// the Forwarder drops the rest) and the payload is read (for the checksum), never written:
    /// it follows as is. `out` holds `routedHeaderLength(headers:)` bytes (at most
    /// `maximumRoutedHeaderBytes`). Returns that length.
    @inlinable @inline(__always) @discardableResult
    public static func writeRoutedHeader(_ out: UnsafeMutableRawPointer, template: UnsafeRawPointer,
                                         headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Int {
        let length = writeRoutedIPHeader(out, template: template, headers: headers)
        completeUDPChecksum(out + ethernetHeaderBytes, headers: headers.count, payload: payload)
        return length
    }

    /// A sender on this host or a VM next to it hands its datagrams over with the UDP checksum
    /// left to the NIC (CHECKSUM_PARTIAL: the field holds only the pseudo header's sum), and a
    /// packet socket reads them so; the kernel would complete it on the way out, frames the
    /// relay writes are not completed by anyone. So: a checksum that verifies stays; one that
    /// does not and holds exactly that partial sum is completed; anything else (corrupted on
    /// the way) stays as it came, for the receiver to discard as it would have. IPv4 without a
    /// checksum (0) stays without. Only a field equal to that partial sum costs a pass over the
    /// payload (to tell a partial checksum from a valid one that happens to equal it).
    @inlinable @inline(__always)
    static func completeUDPChecksum(_ ip: UnsafeMutableRawPointer, headers: Int, payload: UnsafeRawBufferPointer) {
        let udp = ip + headers - 8
        let field = udp.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        let udpLength = UInt64(udp.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        if ip.load(as: UInt8.self) >> 4 == 4 {
            guard field != 0 else { return }
        }
        let pseudo = pseudoHeaderSum(ip: UnsafeRawPointer(ip)) &+ udpLength
        // Only a field that holds the pseudo header's sum can be a partial checksum: every other
        // datagram goes on without a pass over its payload.
        guard field == fold(pseudo) else { return }
        // The UDP header without its checksum field, then the payload.
        var total = sum(UnsafeRawPointer(udp), 6, pseudo)
        // The UDP length's bytes only (the IP datagram may carry more after them).
        let covered = min(payload.count, Int(UInt16(bigEndian: UInt16(truncatingIfNeeded: udpLength))) - 8)
        if let base = payload.baseAddress, covered > 0 { total = sum(base, covered, total) }
        guard fold(total &+ UInt64(field)) != 0xFFFF else { return }  // valid after all: kept
        var check = ~fold(total)
        if check == 0 { check = 0xFFFF }
        udp.storeBytes(of: check, toByteOffset: 6, as: UInt16.self)
    }

    /// `writeRoutedHeader` without the UDP checksum's completion.
    @inlinable @inline(__always)
    static func writeRoutedIPHeader(_ out: UnsafeMutableRawPointer, template: UnsafeRawPointer,
                                    headers: UnsafeRawBufferPointer) -> Int {
        let ip = out + ethernetHeaderBytes
        if let base = headers.baseAddress, headers.count > 0 { ip.copyMemory(from: base, byteCount: headers.count) }
        out.copyMemory(from: template, byteCount: 12)
        if ip.load(as: UInt8.self) >> 4 == 6 {
            out.storeBytes(of: UInt16(0x86DD).bigEndian, toByteOffset: 12, as: UInt16.self)
            // 33:33 + the group's low 32 bits (destination at IPv6 bytes 24-39).
            out.storeBytes(of: UInt16(0x3333).bigEndian, toByteOffset: 0, as: UInt16.self)
            for index in 0..<4 {
                out.storeBytes(of: ip.load(fromByteOffset: 36 + index, as: UInt8.self), toByteOffset: 2 + index, as: UInt8.self)
            }
            ip.storeBytes(of: ip.load(fromByteOffset: 7, as: UInt8.self) &- 1, toByteOffset: 7, as: UInt8.self)
            return ethernetHeaderBytes + headers.count
        }
        out.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 12, as: UInt16.self)
        // 01:00:5e + the group's low 23 bits (destination at IPv4 bytes 16-19).
        out.storeBytes(of: UInt8(0x01), toByteOffset: 0, as: UInt8.self)
        out.storeBytes(of: UInt8(0x00), toByteOffset: 1, as: UInt8.self)
        out.storeBytes(of: UInt8(0x5E), toByteOffset: 2, as: UInt8.self)
        out.storeBytes(of: ip.load(fromByteOffset: 17, as: UInt8.self) & 0x7F, toByteOffset: 3, as: UInt8.self)
        out.storeBytes(of: ip.load(fromByteOffset: 18, as: UInt8.self), toByteOffset: 4, as: UInt8.self)
        out.storeBytes(of: ip.load(fromByteOffset: 19, as: UInt8.self), toByteOffset: 5, as: UInt8.self)
        ip.storeBytes(of: ip.load(fromByteOffset: 8, as: UInt8.self) &- 1, toByteOffset: 8, as: UInt8.self)
        let ipLength = Int(ip.load(as: UInt8.self) & 0x0F) * 4
        ip.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        ip.storeBytes(of: ~fold(sum(UnsafeRawPointer(ip), ipLength, 0)), toByteOffset: 10, as: UInt16.self)
        return ethernetHeaderBytes + headers.count
    }

    /// A routed frame as an array (tests, the simulator's reference; allocates): header and payload.
    public static func routedBytes(sourceMAC: MACAddress, headers: [UInt8], payload: [UInt8]) -> [UInt8] {
        var template = [UInt8](repeating: 0xA5, count: templateBytes)
        var frame = [UInt8](repeating: 0x5A, count: ethernetHeaderBytes + headers.count)
        template.withUnsafeMutableBytes { template in
            writeRoutedTemplate(template.baseAddress!, sourceMAC: sourceMAC)
            frame.withUnsafeMutableBytes { out in
                headers.withUnsafeBytes { headers in
                    payload.withUnsafeBytes {
                        _ = writeRoutedHeader(out.baseAddress!, template: UnsafeRawPointer(template.baseAddress!), headers: headers, payload: $0)
                    }
                }
            }
        }
        return frame + payload
    }

    // MARK: - Whole frames

    /// Bytes of the frame `fields` and a payload of `payloadCount` bytes make.
    public static func length(_ fields: Fields, payloadCount: Int) -> Int {
        fields.headerLength + (fields.vlan != nil ? 4 : 0) + payloadCount
    }

    /// Writes a whole frame (header and a copy of the payload) at the start of `out`, which
    /// must hold `length(fields, payloadCount:)` bytes; returns that length.
    @discardableResult
    public static func write(_ fields: Fields, payload: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        let length = length(fields, payloadCount: payload.count)
        precondition(out.count >= length, "frame buffer too small")
        let base = out.baseAddress!
        let tag = fields.vlan != nil ? 4 : 0
        if let vlan = fields.vlan {
            // Written as an untagged frame, then the tag is opened up after the MACs.
            var untagged = fields
            untagged.vlan = nil
            _ = write(untagged, payload: payload, into: UnsafeMutableRawBufferPointer(rebasing: out[tag...]))
            for index in 0..<12 {  // MACs forward by the tag's size (overlapping: byte by byte, in order)
                base.storeBytes(of: base.load(fromByteOffset: index + tag, as: UInt8.self), toByteOffset: index, as: UInt8.self)
            }
            base.storeBytes(of: UInt16(0x8100).bigEndian, toByteOffset: 12, as: UInt16.self)
            base.storeBytes(of: (vlan & 0x0FFF).bigEndian, toByteOffset: 14, as: UInt16.self)
            return length
        }
        writeFixedHeader(base, fields)
        if fields.destination.family == .ipv6 {
            let udpLength = UInt16(truncatingIfNeeded: payload.count + 8).bigEndian
            base.storeBytes(of: udpLength, toByteOffset: ip + 4, as: UInt16.self)
            base.storeBytes(of: fields.sourcePort.bigEndian, toByteOffset: udp6, as: UInt16.self)
            base.storeBytes(of: udpLength, toByteOffset: udp6 + 4, as: UInt16.self)
            if let payloadBase = payload.baseAddress, payload.count > 0 {
                (base + ipv6HeaderBytes).copyMemory(from: payloadBase, byteCount: payload.count)
            }
            let pseudo = pseudoHeaderSum(ip: base + ip) &+ UInt64(udpLength)
            var check = ~fold(sum(base + udp6, payload.count + 8, pseudo))
            if check == 0 { check = 0xFFFF }
            base.storeBytes(of: check, toByteOffset: udp6 + 6, as: UInt16.self)
            return length
        }
        base.storeBytes(of: fields.identification.bigEndian, toByteOffset: ip + 4, as: UInt16.self)
        base.storeBytes(of: UInt16(truncatingIfNeeded: payload.count + 28).bigEndian, toByteOffset: ip + 2, as: UInt16.self)
        base.storeBytes(of: ~fold(sum(base + ip, 20, 0)), toByteOffset: ip + 10, as: UInt16.self)
        base.storeBytes(of: fields.sourcePort.bigEndian, toByteOffset: udp, as: UInt16.self)
        base.storeBytes(of: UInt16(truncatingIfNeeded: payload.count + 8).bigEndian, toByteOffset: udp + 4, as: UInt16.self)
        if let payloadBase = payload.baseAddress, payload.count > 0 {
            (base + headerBytes).copyMemory(from: payloadBase, byteCount: payload.count)
        }
        if fields.udpChecksum {
            let udpLength = UInt16(truncatingIfNeeded: payload.count + 8).bigEndian
            let pseudo = pseudoHeaderSum(ip: base + ip) &+ UInt64(udpLength)
            var check = ~fold(sum(base + udp, payload.count + 8, pseudo))
            if check == 0 { check = 0xFFFF }
            base.storeBytes(of: check, toByteOffset: udp + 6, as: UInt16.self)
        }
        return length
    }

    /// A whole frame as an array (tests, traces; allocates).
    public static func bytes(_ fields: Fields, payload: [UInt8]) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: length(fields, payloadCount: payload.count))
        frame.withUnsafeMutableBytes { out in payload.withUnsafeBytes { _ = write(fields, payload: $0, into: out) } }
        return frame
    }

    /// MACs, type, and the IP/UDP fields that do not depend on the payload; lengths,
    /// identification, checksums and the source port zero.
    static func writeFixedHeader(_ base: UnsafeMutableRawPointer, _ fields: Fields) {
        base.initializeMemory(as: UInt8.self, repeating: 0, count: fields.headerLength)
        let destination = fields.resolvedDestinationMAC.array
        let source = fields.sourceMAC.array
        for index in 0..<6 {
            base.storeBytes(of: destination[index], toByteOffset: index, as: UInt8.self)
            base.storeBytes(of: source[index], toByteOffset: 6 + index, as: UInt8.self)
        }
        if case let .v6(destinationAddress) = fields.destination, case let .v6(sourceAddress) = fields.source {
            base.storeBytes(of: UInt16(0x86DD).bigEndian, toByteOffset: 12, as: UInt16.self)
            base.storeBytes(of: UInt32(0x6000_0000).bigEndian, toByteOffset: ip, as: UInt32.self)
            base.storeBytes(of: UInt8(17), toByteOffset: ip + 6, as: UInt8.self)
            base.storeBytes(of: fields.ttl, toByteOffset: ip + 7, as: UInt8.self)
            base.storeBytes(of: sourceAddress.high.bigEndian, toByteOffset: ip + 8, as: UInt64.self)
            base.storeBytes(of: sourceAddress.low.bigEndian, toByteOffset: ip + 16, as: UInt64.self)
            base.storeBytes(of: destinationAddress.high.bigEndian, toByteOffset: ip + 24, as: UInt64.self)
            base.storeBytes(of: destinationAddress.low.bigEndian, toByteOffset: ip + 32, as: UInt64.self)
            base.storeBytes(of: fields.destinationPort.bigEndian, toByteOffset: udp6 + 2, as: UInt16.self)
            return
        }
        guard case let .v4(sourceAddress) = fields.source, case let .v4(destinationAddress) = fields.destination else {
            preconditionFailure("source and destination of one family")
        }
        base.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 12, as: UInt16.self)
        base.storeBytes(of: UInt8(0x45), toByteOffset: ip, as: UInt8.self)
        base.storeBytes(of: UInt16(fields.dontFragment ? 0x4000 : 0).bigEndian, toByteOffset: ip + 6, as: UInt16.self)
        base.storeBytes(of: fields.ttl, toByteOffset: ip + 8, as: UInt8.self)
        base.storeBytes(of: UInt8(17), toByteOffset: ip + 9, as: UInt8.self)
        base.storeBytes(of: sourceAddress.value.bigEndian, toByteOffset: ip + 12, as: UInt32.self)
        base.storeBytes(of: destinationAddress.value.bigEndian, toByteOffset: ip + 16, as: UInt32.self)
        base.storeBytes(of: fields.destinationPort.bigEndian, toByteOffset: udp + 2, as: UInt16.self)
    }

    // MARK: - Internet checksum (RFC 1071)

    /// Adds `count` bytes at `data` to a ones'-complement sum kept "in native order over
    /// network-order data" (RFC 1071 section 2(B)): words are loaded as they lie in memory and
    /// the folded result is stored the same way, so no byte swapping is needed on either
    /// endianness; constants added to such a sum must be in network byte order.
    @inlinable @inline(__always)
    public static func sum(_ data: UnsafeRawPointer, _ count: Int, _ initial: UInt64) -> UInt64 {
        var total = initial
        var offset = 0
        while offset + 8 <= count {
            total &+= UInt64(data.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                &+ UInt64(data.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
            offset += 8
        }
        if offset + 4 <= count {
            total &+= UInt64(data.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            offset += 4
        }
        if offset + 2 <= count {
            total &+= UInt64(data.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            offset += 2
        }
        if offset < count {
            // The odd byte is the first byte of a word whose second byte is zero.
            var word: UInt16 = 0
            withUnsafeMutableBytes(of: &word) { $0[0] = data.load(fromByteOffset: offset, as: UInt8.self) }
            total &+= UInt64(word)
        }
        return total
    }

    /// The UDP pseudo header's addresses and protocol (17) as `sum` adds them, from the IP header
    /// at `ip` (its version nibble says which): IPv4 bytes 12-19, IPv6 bytes 8-39. The UDP length
    /// (and, for a template, the destination port) is the caller's to add. The protocol is added
    /// as a 16-bit word for both families: a 32-bit one (IPv6's next-header field) folds the same.
    @inlinable @inline(__always)
    static func pseudoHeaderSum(ip: UnsafeRawPointer) -> UInt64 {
        (ip.load(as: UInt8.self) >> 4 == 6 ? sum(ip + 8, 32, 0) : sum(ip + 12, 8, 0)) &+ UInt64(UInt16(17).bigEndian)
    }

    @inlinable @inline(__always)
    public static func fold(_ value: UInt64) -> UInt16 {
        var sum = (value & 0xFFFF_FFFF) &+ (value >> 32)
        sum = (sum & 0xFFFF_FFFF) &+ (sum >> 32)
        sum = (sum & 0xFFFF) &+ (sum >> 16)
        sum = (sum & 0xFFFF) &+ (sum >> 16)
        sum = (sum & 0xFFFF) &+ (sum >> 16)
        return UInt16(truncatingIfNeeded: sum)
    }

    /// The Internet checksum of `count` bytes: 0 over a header whose checksum is valid.
    public static func checksum(_ data: UnsafeRawBufferPointer) -> UInt16 {
        guard let base = data.baseAddress else { return 0xFFFF }
        return ~fold(sum(base, data.count, 0))
    }
}
