import PcapFile
import RelayCore

/// What the relay puts on each egress interface, as Ethernet frames: written to
/// `DIR/<iface>.pcap` when a directory is given, and always summarised (count, content hash)
/// so two runs can be compared without files.
///
/// The frame is what the kernel would build for the relay's UDP send: destination MAC from
/// the group (01:00:5e + low 23 bits), a synthetic locally administered source MAC and a
/// source address 198.19.<interface index>.1 per interface, source port 49152 + interface
/// index, IPv4 identification counting per interface, the output's TTL, and a UDP checksum.
final class EgressRecorder {
    struct Port {
        var name: InterfaceName
        var writer: PcapWriter?
        var frames = 0
        var bytes = 0
        var hash = FNV64()
        var identification: UInt16 = 0
    }

    @exclusivity(unchecked) private(set) var ports: [Port]
    @exclusivity(unchecked) private var buffer: [UInt8] = []
    private let directory: String?
    /// Egress interfaces that get a file even when nothing is sent on them.
    private let announced: Set<Int>

    init(interfaces: InterfaceTable, directory: String?, egress: Set<Int>) throws(SimError) {
        self.directory = directory
        self.announced = egress
        ports = interfaces.names.map { Port(name: $0) }
        buffer.reserveCapacity(2048)
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
    func record(interface: Int, time: UInt64, destination: IPv4Address, port: UInt16, ttl: UInt8,
                payload: UnsafeRawBufferPointer) throws(SimError) {
        var header = FrameBuilder.Header(
            sourceMAC: FrameBuilder.syntheticMAC(interfaceIndex: interface),
            source: IPv4Address(198, 19, UInt8(truncatingIfNeeded: interface), 1),
            destination: destination, sourcePort: 49152 &+ UInt16(truncatingIfNeeded: interface),
            destinationPort: port, ttl: ttl)
        header.identification = ports[interface].identification
        ports[interface].identification &+= 1
        let length = FrameBuilder.build(header, payload: payload, into: &buffer)
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
