import Foundation
import PcapFile
import RelayCore
import Testing
@testable import Sim

/// The simulator's egress writes a proxy's routed datagram with the worker's code
/// (`EgressFrame.writeRoutedHeader` from a routed template): the pcap holds exactly the bytes
/// `EgressFrame.routedBytes` builds for the port's MAC. (The simulator has no proxy
/// configuration yet; this covers its egress, which a proxy route's transmits would take.)
@Suite struct RoutedEgressTests {
    @Test func theSimulatorsRoutedFrameIsTheDaemonsBytes() throws {
        let directory = NSTemporaryDirectory() + "mcrelay-routed-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let name = InterfaceName("eth1")!
        let recorder = try EgressRecorder(interfaces: InterfaceTable([name]), directory: directory, egress: [0])
        // A received IPv4 header with Router Alert, TTL 9, and its UDP header; then 100 bytes.
        var headers: [UInt8] = [0x46, 0, 0, 132, 0x12, 0x34, 0x40, 0, 9, 17, 0, 0, 198, 18, 0, 10, 239, 1, 2, 3, 0x94, 4, 0, 0]
        let sum = stride(from: 0, to: 24, by: 2).reduce(UInt32(0)) { $0 + (UInt32(headers[$1]) << 8 | UInt32(headers[$1 + 1])) }
        let folded = ~UInt16((sum & 0xFFFF) + (sum >> 16))
        headers[10] = UInt8(folded >> 8)
        headers[11] = UInt8(folded & 0xFF)
        headers += [0x9C, 0x40, 0x13, 0x89, 0, 108, 0, 0]  // ports 40000 -> 5001, length 108, no checksum
        let payload = (0..<100).map { UInt8($0) }
        try headers.withUnsafeBytes { h in
            try payload.withUnsafeBytes { p in try recorder.recordRouted(interface: 0, time: 1, headers: h, payload: p) }
        }
        try recorder.close()
        let records = try PcapReader.readAll(path: directory + "/eth1.pcap").records
        let mac = InterfaceFacts.simulated(name, position: 0).mac!
        #expect(records.map(\.bytes) == [EgressFrame.routedBytes(sourceMAC: mac, headers: headers, payload: payload)])
        #expect(records.first?.bytes[14 + 8] == 8, "TTL 9 - 1")
        #expect(recorder.ports[0].frames == 1)
    }
}
