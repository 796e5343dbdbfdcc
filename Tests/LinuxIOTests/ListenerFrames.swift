import Foundation
import Glibc

/// Frames for the ListenerTap tests: IGMP and MLD built byte by byte from the RFCs (what the
/// tap sends), and a parser for what Linux hosts send (what the tap receives). Deliberately
/// independent of RelayCore's frame code.
enum ListenerFrames {
    // MARK: Checksums

    /// The Internet checksum (RFC 1071) of `bytes`, as the 16-bit value to store big-endian.
    static func checksum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
        var sum = initial
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    static func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }

    // MARK: Building

    /// Ethernet + IPv4 (IHL 6: Router Alert option 94 04 00 00, TOS 0xc0, TTL 1) + an IGMP
    /// message whose checksum is filled in.
    static func igmpFrame(sourceMAC: [UInt8], destinationMAC: [UInt8], source: [UInt8], destination: [UInt8],
                          igmp: [UInt8], ttl: UInt8 = 1) -> [UInt8] {
        var message = igmp
        message[2] = 0; message[3] = 0
        let sum = checksum(message)
        message[2] = UInt8(sum >> 8); message[3] = UInt8(sum & 0xff)
        var ip: [UInt8] = [0x46, 0xc0] + be16(UInt16(24 + message.count)) + [0, 0, 0, 0, ttl, 2, 0, 0]
        ip += source + destination + [0x94, 0x04, 0x00, 0x00]
        let ipSum = checksum(ip)
        ip[10] = UInt8(ipSum >> 8); ip[11] = UInt8(ipSum & 0xff)
        return destinationMAC + sourceMAC + [0x08, 0x00] + ip + message
    }

    /// An IGMPv2 general query (RFC 2236): type 0x11, max response time in tenths of a second,
    /// group 0, to 224.0.0.1 (MAC 01:00:5e:00:00:01).
    static func igmpV2GeneralQuery(sourceMAC: [UInt8], source: [UInt8], maxResponseTenths: UInt8) -> [UInt8] {
        igmpFrame(sourceMAC: sourceMAC, destinationMAC: [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01], source: source,
                  destination: [224, 0, 0, 1], igmp: [0x11, maxResponseTenths, 0, 0, 0, 0, 0, 0])
    }

    /// Ethernet + IPv6 (hop limit 1) + hop-by-hop header (Router Alert, value 0 = MLD, + PadN)
    /// + an ICMPv6 message whose checksum (over the pseudo-header, RFC 8200 8.1) is filled in.
    static func mldFrame(sourceMAC: [UInt8], destinationMAC: [UInt8], source: [UInt8], destination: [UInt8],
                         icmp: [UInt8], hopLimit: UInt8 = 1) -> [UInt8] {
        var message = icmp
        message[2] = 0; message[3] = 0
        var pseudo = source + destination
        pseudo += [0, 0] + be16(UInt16(message.count)) + [0, 0, 0, 58]
        let sum = checksum(pseudo + message)
        message[2] = UInt8(sum >> 8); message[3] = UInt8(sum & 0xff)
        let hopByHop: [UInt8] = [58, 0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00]
        var ip: [UInt8] = [0x60, 0, 0, 0] + be16(UInt16(hopByHop.count + message.count)) + [0, hopLimit]
        ip += source + destination
        return destinationMAC + sourceMAC + [0x86, 0xdd] + ip + hopByHop + message
    }

    /// An MLDv2 general query (RFC 3810 5.1): type 130, maximum response code in milliseconds,
    /// address ::, QRV 2, QQIC 125, no sources; to ff02::1 (MAC 33:33:00:00:00:01).
    static func mldV2GeneralQuery(sourceMAC: [UInt8], linkLocalSource: [UInt8], maxResponseMilliseconds: UInt16) -> [UInt8] {
        var icmp: [UInt8] = [130, 0, 0, 0] + be16(maxResponseMilliseconds) + [0, 0]
        icmp += [UInt8](repeating: 0, count: 16)
        icmp += [0x02, 125, 0, 0]
        var allNodes = [UInt8](repeating: 0, count: 16)
        allNodes[0] = 0xff; allNodes[1] = 0x02; allNodes[15] = 1
        return mldFrame(sourceMAC: sourceMAC, destinationMAC: [0x33, 0x33, 0, 0, 0, 1], source: linkLocalSource,
                        destination: allNodes, icmp: icmp)
    }

    // MARK: Parsing

    /// One IGMP or MLD message as the test sees it.
    struct Message: CustomStringConvertible {
        enum Family { case ipv4, ipv6 }
        var family: Family
        /// IGMP type (0x11, 0x16, 0x17, 0x22, ...) or ICMPv6 type (130, 131, 132, 143).
        var type: UInt8
        /// For v1/v2 reports, leaves and dones: (0, group). For v3/MLDv2 reports: each record's
        /// (record type, group). For queries: (0, group).
        var records: [(type: UInt8, group: String)]
        var source: String
        var sourceMAC: [UInt8]
        var timestamp: UInt64
        var hasRouterAlert: Bool
        var ttl: UInt8

        var description: String {
            let kind = family == .ipv4 ? String(format: "IGMP 0x%02x", type) : "MLD \(type)"
            return "\(kind) from \(source) ttl \(ttl)\(hasRouterAlert ? " RA" : "") \(records.map { "\($0.type):\($0.group)" })"
        }

        func mentions(_ group: String, recordType: UInt8? = nil) -> Bool {
            records.contains { $0.group == group && (recordType == nil || $0.type == recordType) }
        }
    }

    static func ipv4Text(_ b: ArraySlice<UInt8>) -> String {
        let s = b.startIndex
        return "\(b[s]).\(b[s + 1]).\(b[s + 2]).\(b[s + 3])"
    }

    static func ipv6Text(_ b: ArraySlice<UInt8>) -> String {
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: b.prefix(16)) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Parses an Ethernet frame carrying IGMP or MLD; nil for anything else (or malformed).
    static func parse(_ frame: [UInt8], timestamp: UInt64 = 0) -> Message? {
        guard frame.count >= 14 else { return nil }
        let etherType = UInt16(frame[12]) << 8 | UInt16(frame[13])
        let mac = Array(frame[6..<12])
        if etherType == 0x0800 {
            guard frame.count >= 34, frame[14] >> 4 == 4, frame[23] == 2 else { return nil }
            let ihl = Int(frame[14] & 0x0f) * 4
            let start = 14 + ihl
            guard ihl >= 20, frame.count >= start + 8 else { return nil }
            // IPv4 options: look for Router Alert (type 148).
            var routerAlert = false
            var option = 34
            while option < start {
                let kind = frame[option]
                if kind == 0 { break }
                if kind == 1 { option += 1; continue }
                if kind == 148 { routerAlert = true }
                guard option + 1 < start, frame[option + 1] >= 2 else { break }
                option += Int(frame[option + 1])
            }
            let type = frame[start]
            var records: [(UInt8, String)] = []
            if type == 0x22 {
                let count = Int(frame[start + 6]) << 8 | Int(frame[start + 7])
                var at = start + 8
                for _ in 0..<count {
                    guard frame.count >= at + 8 else { return nil }
                    let sources = Int(frame[at + 2]) << 8 | Int(frame[at + 3])
                    records.append((frame[at], ipv4Text(frame[(at + 4)..<(at + 8)])))
                    at += 8 + 4 * sources + 4 * Int(frame[at + 1])
                }
            } else {
                records.append((0, ipv4Text(frame[(start + 4)..<(start + 8)])))
            }
            return Message(family: .ipv4, type: type, records: records, source: ipv4Text(frame[26..<30]), sourceMAC: mac,
                           timestamp: timestamp, hasRouterAlert: routerAlert, ttl: frame[22])
        }
        if etherType == 0x86dd {
            guard frame.count >= 54, frame[14] >> 4 == 6 else { return nil }
            var next = frame[20]
            var at = 54
            var routerAlert = false
            if next == 0 {
                guard frame.count >= at + 8 else { return nil }
                let length = (Int(frame[at + 1]) + 1) * 8
                guard frame.count >= at + length else { return nil }
                var option = at + 2
                while option < at + length {
                    let kind = frame[option]
                    if kind == 0 { option += 1; continue }
                    if kind == 5 { routerAlert = true }
                    guard option + 1 < at + length else { break }
                    option += 2 + Int(frame[option + 1])
                }
                next = frame[at]
                at += length
            }
            guard next == 58, frame.count >= at + 8 else { return nil }
            let type = frame[at]
            guard [130, 131, 132, 143].contains(type) else { return nil }
            var records: [(UInt8, String)] = []
            if type == 143 {
                let count = Int(frame[at + 6]) << 8 | Int(frame[at + 7])
                var record = at + 8
                for _ in 0..<count {
                    guard frame.count >= record + 20 else { return nil }
                    let sources = Int(frame[record + 2]) << 8 | Int(frame[record + 3])
                    records.append((frame[record], ipv6Text(frame[(record + 4)..<(record + 20)])))
                    record += 20 + 16 * sources + 4 * Int(frame[record + 1])
                }
            } else {
                guard frame.count >= at + 24 else { return nil }
                records.append((0, ipv6Text(frame[(at + 8)..<(at + 24)])))
            }
            return Message(family: .ipv6, type: type, records: records, source: ipv6Text(frame[22..<38]), sourceMAC: mac,
                           timestamp: timestamp, hasRouterAlert: routerAlert, ttl: frame[21])
        }
        return nil
    }
}
