/// IGMP messages (IP protocol 2) to and from bytes: IGMPv1 (RFC 1112 appendix I), IGMPv2
/// (RFC 2236 2) and IGMPv3 (RFC 3376 4). The bytes are the IP payload; the checksum covers
/// all of them.
public enum IGMPCodec {
    static let typeQuery: UInt8 = 0x11
    static let typeV1Report: UInt8 = 0x12
    static let typeV2Report: UInt8 = 0x16
    static let typeV2Leave: UInt8 = 0x17
    static let typeV3Report: UInt8 = 0x22

    public static func decode(_ bytes: [UInt8]) -> Result<ListenerMessage, ListenerRefusal> {
        guard bytes.count >= 8 else { return .failure(.truncated) }
        guard InternetChecksum.checksum(bytes) == 0 else { return .failure(.badChecksum) }
        var reader = ListenerBytes(bytes)
        let type = reader.u8()!
        let code = reader.u8()!
        _ = reader.u16()  // checksum, verified above
        switch type {
        case typeQuery:
            return decodeQuery(&reader, code: code, length: bytes.count)
        case typeV1Report, typeV2Report, typeV2Leave:
            // RFC 2236 2.5: longer v1/v2 messages are accepted and the extra bytes ignored.
            let group = IPv4Address(reader.u32()!)
            guard group.isMulticast else { return .failure(.groupNotMulticast) }
            switch type {
            case typeV1Report: return .success(.report(.v1, group: .v4(group)))
            case typeV2Report: return .success(.report(.v2, group: .v4(group)))
            default: return .success(.leave(group: .v4(group)))
            }
        case typeV3Report:
            return decodeV3Report(&reader)
        default:
            return .failure(.unknownType)
        }
    }

    /// RFC 3376 7.1: an 8-byte query is v1 (Max Resp Code 0) or v2; 12 bytes or more is v3;
    /// anything else is not a valid query.
    static func decodeQuery(_ reader: inout ListenerBytes, code: UInt8, length: Int) -> Result<ListenerMessage, ListenerRefusal> {
        let groupValue = IPv4Address(reader.u32()!)
        guard groupValue.isUnspecified || groupValue.isMulticast else { return .failure(.groupNotMulticast) }
        let group: IPAddress? = groupValue.isUnspecified ? nil : .v4(groupValue)
        if length == 8 {
            return .success(.query(ListenerQuery(version: code == 0 ? .v1 : .v2, group: group, maxResponseCode: UInt16(code))))
        }
        guard length >= 12 else { return .failure(.badLength) }
        let flags = reader.u8()!
        let qqic = reader.u8()!
        let count = Int(reader.u16()!)
        guard reader.remaining >= 4 * count else { return .failure(.badLength) }
        var sources: [IPAddress] = []
        sources.reserveCapacity(count)
        for _ in 0..<count {
            let source = reader.ipv4()!
            guard source.isUnicast else { return .failure(.badSource) }
            sources.append(.v4(source))
        }
        // A general query carries no sources (RFC 3376 4.1.8 defines them for specific ones).
        guard group != nil || sources.isEmpty else { return .failure(.badSource) }
        return .success(.query(ListenerQuery(
            version: .v3, group: group, maxResponseCode: UInt16(code), suppressRouterSideProcessing: flags & 0x08 != 0,
            robustness: flags & 0x07, queryIntervalCode: qqic, sources: sources)))
    }

    static func decodeV3Report(_ reader: inout ListenerBytes) -> Result<ListenerMessage, ListenerRefusal> {
        guard let _ = reader.u16(), let count = reader.u16() else { return .failure(.truncated) }
        var records: [GroupRecord] = []
        for _ in 0..<count {
            guard let rawType = reader.u8(), let auxWords = reader.u8(), let sourceCount = reader.u16(),
                  let group = reader.ipv4() else { return .failure(.badLength) }
            guard let type = GroupRecordType(rawValue: rawType) else { return .failure(.unknownRecordType) }
            guard group.isMulticast else { return .failure(.groupNotMulticast) }
            guard reader.remaining >= 4 * Int(sourceCount) + 4 * Int(auxWords) else { return .failure(.badLength) }
            var sources: [IPAddress] = []
            sources.reserveCapacity(Int(sourceCount))
            for _ in 0..<sourceCount {
                let source = reader.ipv4()!
                guard source.isUnicast else { return .failure(.badSource) }
                sources.append(.v4(source))
            }
            let aux = reader.take(4 * Int(auxWords))!
            records.append(GroupRecord(type, group: .v4(group), sources: sources, auxiliaryData: aux))
        }
        return .success(.v3Report(records))
    }

    /// The message's bytes with a correct checksum. IPv6 addresses in a message are a caller
    /// error (the state machine never mixes families); they are written as 0.0.0.0.
    public static func encode(_ message: ListenerMessage) -> [UInt8] {
        var bytes: [UInt8] = []
        func v4(_ address: IPAddress?) -> UInt32 { address?.v4?.value ?? 0 }
        switch message {
        case let .query(query):
            bytes = [typeQuery, query.version == .v1 ? 0 : UInt8(truncatingIfNeeded: query.maxResponseCode), 0, 0]
            bytes.appendBigEndian(v4(query.group))
            if query.version == .v3 {
                bytes.append((query.suppressRouterSideProcessing ? 0x08 : 0) | query.robustness & 0x07)
                bytes.append(query.queryIntervalCode)
                bytes.appendBigEndian(UInt16(clamping: query.sources.count))
                for source in query.sources.prefix(Int(UInt16.max)) { bytes.appendBigEndian(v4(source)) }
            }
        case let .report(version, group):
            bytes = [version == .v1 ? typeV1Report : typeV2Report, 0, 0, 0]
            bytes.appendBigEndian(v4(group))
        case let .leave(group):
            bytes = [typeV2Leave, 0, 0, 0]
            bytes.appendBigEndian(v4(group))
        case let .v3Report(records):
            bytes = [typeV3Report, 0, 0, 0, 0, 0]
            bytes.appendBigEndian(UInt16(clamping: records.count))
            for record in records.prefix(Int(UInt16.max)) {
                let auxWords = min(record.auxiliaryData.count / 4, 255)
                bytes.append(record.type.rawValue)
                bytes.append(UInt8(auxWords))
                bytes.appendBigEndian(UInt16(clamping: record.sources.count))
                bytes.appendBigEndian(v4(record.group))
                for source in record.sources.prefix(Int(UInt16.max)) { bytes.appendBigEndian(v4(source)) }
                bytes += record.auxiliaryData.prefix(4 * auxWords)
            }
        }
        let checksum = InternetChecksum.checksum(bytes)
        bytes[2] = UInt8(checksum >> 8)
        bytes[3] = UInt8(truncatingIfNeeded: checksum)
        return bytes
    }
}
