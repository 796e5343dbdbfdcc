import PcapFile
import RelayCore

/// What the relay puts on each egress interface, as Ethernet frames: written to
/// `DIR/<iface>.pcap` when a directory is given, and always summarised (count, content hash)
/// so two runs can be compared without files.
///
/// The frames are the daemon's: on the packet path (multicast outputs of an interface whose
/// `EgressPolicy` decision is packet egress) the very code the worker runs builds them
/// (`EgressFrame.writeTemplate` + `writeHeader`) from the interface's facts (a recording's, a
/// case's, or `InterfaceFacts.simulated`). The kernel's UDP path (unicast outputs, `--egress
/// udp`, interfaces without packet egress) is modelled with the same fields (MACs, addresses,
/// TTL, DF, checksums), except what only the kernel knows: the IPv4 identification (it numbers
/// its datagrams; the model writes 0), the source port (the socket's ephemeral port; the model
/// writes the sender's), a unicast
/// destination's MAC (neighbour resolution; the model writes 02:6d:63:ff:00:01), and the
/// fragments of a datagram larger than the MTU (the model writes one oversized frame).
final class EgressRecorder {
    struct Port {
        var name: InterfaceName
        var facts: InterfaceFacts
        var path: EgressPath
        var ipv6Path: EgressPath
        var writer: PcapWriter?
        var frames = 0
        var bytes = 0
        var hash = FNV64()
        /// The header template of the output last sent on this port (an interface's datagrams
        /// come in runs per output), rewritten only when the output changes.
        var templateFor: (destination: IPAddress, port: UInt16, ttl: UInt8)?
    }

    @exclusivity(unchecked) private(set) var ports: [Port]
    @exclusivity(unchecked) private var buffer: [UInt8] = []
    private let directory: String?
    /// Egress interfaces that get a file even when nothing is sent on them.
    private let announced: Set<Int>

    /// One template per port (`templateBytes` each), owned here.
    private let templates: UnsafeMutableRawPointer

    init(interfaces: InterfaceTable, directory: String?, egress: Set<Int>, facts: [InterfaceName: InterfaceFacts] = [:],
         mode: EgressMode = .default) throws(SimError) {
        self.directory = directory
        self.announced = egress
        ports = interfaces.names.enumerated().map { position, name in
            let facts = facts[name] ?? .simulated(name, position: position)
            return Port(name: name, facts: facts, path: EgressPolicy.path(facts, mode: mode, family: .ipv4).0,
                        ipv6Path: EgressPolicy.path(facts, mode: mode, family: .ipv6).0)
        }
        buffer = [UInt8](repeating: 0, count: 65_536 + EgressFrame.maximumHeaderBytes)
        templates = .allocate(byteCount: max(1, interfaces.count) * EgressFrame.templateBytes, alignment: 16)
        if directory != nil {
            for index in egress.sorted() { try openWriter(index) }
        }
    }

    private func openWriter(_ index: Int) throws(SimError) {
        guard let directory, ports[index].writer == nil else { return }
        let path = directory + "/" + ports[index].name.rawValue + ".pcap"
        do { ports[index].writer = try PcapWriter(path: path, linkType: .ethernet) } catch {
            throw SimError.output("cannot create \(path): \(error)")
        }
    }

    @inline(__always)
    func record(interface: Int, time: UInt64, destination: IPAddress, port: UInt16, ttl: UInt8, sourcePort: UInt16,
                payload: UnsafeRawBufferPointer, checksumCarry: UInt16) throws(SimError) {
        let facts = ports[interface].facts
        let sourceMAC = facts.mac ?? MACAddress(0, 0, 0, 0, 0, 0)
        // What the daemon's egress does for an interface without an address of the family.
        let source = facts.source(for: destination)
            ?? (destination.family == .ipv4 ? .v4(IPv4Address(0)) : .v6(IPv6Address(high: 0, low: 0)))
        let count = min(payload.count, buffer.count - EgressFrame.maximumHeaderBytes)
        let body = UnsafeRawBufferPointer(rebasing: payload[0..<count])
        let length: Int
        if destination.isMulticast && (destination.family == .ipv4 ? ports[interface].path : ports[interface].ipv6Path) == .packet,
           facts.source(for: destination) != nil {
            // The worker's code path, byte for byte: a template per output, a header per datagram.
            let template = templates + interface * EgressFrame.templateBytes
            if ports[interface].templateFor.map({ $0 != (destination, port, ttl) }) ?? true {
                EgressFrame.writeTemplate(template, sourceMAC: sourceMAC, source: source, destination: destination,
                                          destinationPort: port, ttl: ttl)
                ports[interface].templateFor = (destination, port, ttl)
            }
            length = buffer.withUnsafeMutableBytes {
                // A payload cut to the buffer no longer matches the received checksum's carry.
                EgressFrame.writeFrame($0, template: UnsafeRawPointer(template), sourcePort: sourcePort, payload: body,
                                       checksumCarry: count == payload.count ? checksumCarry : nil)
            }
        } else {
            let fields = EgressFrame.Fields(sourceMAC: sourceMAC, source: source, destination: destination,
                                            sourcePort: sourcePort, destinationPort: port, ttl: ttl)
            length = buffer.withUnsafeMutableBytes { EgressFrame.write(fields, payload: body, into: $0) }
        }
        try account(interface: interface, time: time, length: length)
    }

    /// A proxy's routed datagram, with the worker's code path (`EgressFrame.writeRoutedHeader`
    /// from a routed template holding the port's MAC): the received headers, TTL - 1, then the
    /// payload.
    func recordRouted(interface: Int, time: UInt64, headers: UnsafeRawBufferPointer,
                      payload: UnsafeRawBufferPointer) throws(SimError) {
        let sourceMAC = ports[interface].facts.mac ?? MACAddress(0, 0, 0, 0, 0, 0)
        let template = templates + interface * EgressFrame.templateBytes
        EgressFrame.writeRoutedTemplate(template, sourceMAC: sourceMAC)
        ports[interface].templateFor = nil
        let header = EgressFrame.routedHeaderLength(headers: headers)
        let count = min(payload.count, buffer.count - header)
        let length = buffer.withUnsafeMutableBytes { out in
            EgressFrame.writeRoutedHeader(out.baseAddress!, template: UnsafeRawPointer(template), headers: headers,
                                          payload: UnsafeRawBufferPointer(rebasing: payload[0..<count]))
            if let body = payload.baseAddress, count > 0 { (out.baseAddress! + header).copyMemory(from: body, byteCount: count) }
            return header + count
        }
        try account(interface: interface, time: time, length: length)
    }

    private func account(interface: Int, time: UInt64, length: Int) throws(SimError) {
        ports[interface].frames += 1
        ports[interface].bytes += length
        var hash = ports[interface].hash
        hash.add(time)
        buffer.withUnsafeBytes { hash.addWords(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
        ports[interface].hash = hash
        if directory != nil {
            if ports[interface].writer == nil { try openWriter(interface) }
            do {
                try buffer.withUnsafeBytes {
                    try ports[interface].writer?.write(timestampNanoseconds: time, bytes: UnsafeRawBufferPointer(rebasing: $0[0..<length]))
                }
            } catch {
                throw SimError.output("writing \(ports[interface].name).pcap: \(error)")
            }
        }
    }

    deinit { templates.deallocate() }

    func close() throws(SimError) {
        for index in ports.indices {
            do { try ports[index].writer?.close() } catch {
                throw SimError.output("closing \(ports[index].name).pcap: \(error)")
            }
            ports[index].writer = nil
        }
    }

    /// Interfaces that carried traffic or were announced as egress, sorted by name.
    var used: [Int] { ports.indices.filter { ports[$0].frames > 0 || announced.contains($0) } }
}

extension FNV64 {
    /// Hashes 8 bytes at a time (plus the tail and the length): fast enough for every egress frame.
    mutating func addWords(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        var value = self.value
        while offset + 8 <= bytes.count {
            let word = bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            value = (value ^ word) &* 0x0000_0100_0000_01b3
            value ^= value >> 29
            offset += 8
        }
        var tail: UInt64 = UInt64(bytes.count) << 56
        var shift: UInt64 = 0
        while offset < bytes.count {
            tail |= UInt64(bytes[offset]) << shift
            shift += 8
            offset += 1
        }
        value = (value ^ tail) &* 0x0000_0100_0000_01b3
        self.set(value)
    }
}
