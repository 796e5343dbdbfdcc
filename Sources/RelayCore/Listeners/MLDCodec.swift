/// MLD messages (ICMPv6) to and from bytes: MLDv1 (RFC 2710 3: Query 130, Report 131,
/// Done 132) and MLDv2 (RFC 3810 5: Query 130, Report 143). The bytes are the ICMPv6
/// message; its checksum covers the IPv6 pseudo-header, so decoding and encoding need the
/// IP source and destination.
public enum MLDCodec {
    static let typeQuery: UInt8 = 130
    static let typeV1Report: UInt8 = 131
    static let typeV1Done: UInt8 = 132
    static let typeV2Report: UInt8 = 143
    static let nextHeaderICMPv6: UInt8 = 58

    /// ICMPv6 types this codec reads; other ICMPv6 (neighbour discovery, echo) is not MLD.
    public static func isMLDType(_ type: UInt8) -> Bool {
        type == typeQuery || type == typeV1Report || type == typeV1Done || type == typeV2Report
    }

    public static func decode(_ bytes: [UInt8], source: IPv6Address, destination: IPv6Address) -> Result<ListenerMessage, ListenerRefusal> {
        guard bytes.count >= 4 else { return .failure(.truncated) }
        let pseudo = InternetChecksum.ipv6PseudoHeader(source: source, destination: destination, length: bytes.count,
                                                        nextHeader: nextHeaderICMPv6)
        guard InternetChecksum.checksum(bytes, initial: pseudo) == 0 else { return .failure(.badChecksum) }
        var reader = ListenerBytes(bytes)
        let type = reader.u8()!
        _ = reader.u8()  // code: 0, ignored on receipt
        _ = reader.u16()
        switch type {
        case typeQuery:
            return decodeQuery(&reader, length: bytes.count)
        case typeV1Report, typeV1Done:
            // RFC 2710 3.7: the message is 24 bytes at least; more is ignored.
            guard let _ = reader.u32(), let group = reader.ipv6() else { return .failure(.truncated) }
            guard group.isMulticast else { return .failure(.groupNotMulticast) }
            return .success(type == typeV1Report ? .report(.v2, group: .v6(group)) : .leave(group: .v6(group)))
        case typeV2Report:
            return decodeV2Report(&reader)
        default:
            return .failure(.unknownType)
        }
    }

    /// RFC 3810 8.1: a 24-byte query is MLDv1, 28 bytes or more MLDv2, anything else invalid.
    static func decodeQuery(_ reader: inout ListenerBytes, length: Int) -> Result<ListenerMessage, ListenerRefusal> {
        guard length >= 24 else { return .failure(length < 8 ? .truncated : .badLength) }
        let code = reader.u16()!
        _ = reader.u16()
        let groupValue = reader.ipv6()!
        guard groupValue.isUnspecified || groupValue.isMulticast else { return .failure(.groupNotMulticast) }
        let group: IPAddress? = groupValue.isUnspecified ? nil : .v6(groupValue)
        if length == 24 { return .success(.query(ListenerQuery(version: .v2, group: group, maxResponseCode: code))) }
        guard length >= 28 else { return .failure(.badLength) }
        let flags = reader.u8()!
        let qqic = reader.u8()!
        let count = Int(reader.u16()!)
        guard reader.remaining >= 16 * count else { return .failure(.badLength) }
        var sources: [IPAddress] = []
        sources.reserveCapacity(count)
        for _ in 0..<count {
            let source = reader.ipv6()!
            guard source.isUnicast else { return .failure(.badSource) }
            sources.append(.v6(source))
        }
        guard group != nil || sources.isEmpty else { return .failure(.badSource) }
        return .success(.query(ListenerQuery(
            version: .v3, group: group, maxResponseCode: code, suppressRouterSideProcessing: flags & 0x08 != 0,
            robustness: flags & 0x07, queryIntervalCode: qqic, sources: sources)))
    }

    static func decodeV2Report(_ reader: inout ListenerBytes) -> Result<ListenerMessage, ListenerRefusal> {
        guard let _ = reader.u16(), let count = reader.u16() else { return .failure(.truncated) }
        var records: [GroupRecord] = []
        for _ in 0..<count {
            guard let rawType = reader.u8(), let auxWords = reader.u8(), let sourceCount = reader.u16(),
                  let group = reader.ipv6() else { return .failure(.badLength) }
            guard let type = GroupRecordType(rawValue: rawType) else { return .failure(.unknownRecordType) }
            guard group.isMulticast else { return .failure(.groupNotMulticast) }
            guard reader.remaining >= 16 * Int(sourceCount) + 4 * Int(auxWords) else { return .failure(.badLength) }
            var sources: [IPAddress] = []
            sources.reserveCapacity(Int(sourceCount))
            for _ in 0..<sourceCount {
                let source = reader.ipv6()!
                guard source.isUnicast else { return .failure(.badSource) }
                sources.append(.v6(source))
            }
            let aux = reader.take(4 * Int(auxWords))!
            records.append(GroupRecord(type, group: .v6(group), sources: sources, auxiliaryData: aux))
        }
        return .success(.v3Report(records))
    }

    /// The ICMPv6 message with its checksum over the pseudo-header of `source` -> `destination`.
    /// IPv4 addresses in a message are a caller error; they are written as ::.
    public static func encode(_ message: ListenerMessage, source: IPv6Address, destination: IPv6Address) -> [UInt8] {
        var bytes: [UInt8] = []
        func v6(_ address: IPAddress?) -> [UInt8] { (address?.v6 ?? IPv6Address(high: 0, low: 0)).bytes }
        switch message {
        case let .query(query):
            bytes = [typeQuery, 0, 0, 0]
            bytes.appendBigEndian(query.maxResponseCode)
            bytes += [0, 0]
            bytes += v6(query.group)
            if query.version == .v3 {
                bytes.append((query.suppressRouterSideProcessing ? 0x08 : 0) | query.robustness & 0x07)
                bytes.append(query.queryIntervalCode)
                bytes.appendBigEndian(UInt16(clamping: query.sources.count))
                for source in query.sources.prefix(Int(UInt16.max)) { bytes += v6(source) }
            }
        case let .report(_, group):
            bytes = [typeV1Report, 0, 0, 0, 0, 0, 0, 0] + v6(group)
        case let .leave(group):
            bytes = [typeV1Done, 0, 0, 0, 0, 0, 0, 0] + v6(group)
        case let .v3Report(records):
            bytes = [typeV2Report, 0, 0, 0, 0, 0]
            bytes.appendBigEndian(UInt16(clamping: records.count))
            for record in records.prefix(Int(UInt16.max)) {
                let auxWords = min(record.auxiliaryData.count / 4, 255)
                bytes.append(record.type.rawValue)
                bytes.append(UInt8(auxWords))
                bytes.appendBigEndian(UInt16(clamping: record.sources.count))
                bytes += v6(record.group)
                for source in record.sources.prefix(Int(UInt16.max)) { bytes += v6(source) }
                bytes += record.auxiliaryData.prefix(4 * auxWords)
            }
        }
        let pseudo = InternetChecksum.ipv6PseudoHeader(source: source, destination: destination, length: bytes.count,
                                                        nextHeader: nextHeaderICMPv6)
        let checksum = InternetChecksum.checksum(bytes, initial: pseudo)
        bytes[2] = UInt8(checksum >> 8)
        bytes[3] = UInt8(truncatingIfNeeded: checksum)
        return bytes
    }
}
