#if canImport(Glibc)
import Glibc
#endif
import Logging

/// `mcrelay daemon --log-format`: swift-log's usual text lines, or one JSON object per line
/// (for journald and log shippers).
public enum LogFormat: String, CaseIterable, Sendable {
    case text, json
}

/// A swift-log handler writing one JSON object per event to stderr:
///
///   {"ts":"2026-11-25T08:31:39.123Z","level":"notice","label":"mcrelay.daemon","message":"rule added: ...","rule":"cam1"}
///
/// Fields in a fixed order (ts, level, label, message, then the metadata keys sorted), so equal
/// events give equal lines. Metadata is flattened: a nested dictionary's keys are joined with
/// "." ("a.b"), arrays become JSON arrays of strings, and a metadata key that collides with one of
/// the four fixed fields gets a "meta." prefix instead of overwriting it.
/// Each line goes out in a single write(2): lines from the supervisor do not interleave.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let fileDescriptor: Int32

    public init(label: String, fileDescriptor: Int32 = STDERR_FILENO, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.fileDescriptor = fileDescriptor
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?,
                    source: String, file: String, function: String, line: UInt) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit { merged.merge(explicit) { _, new in new } }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let text = Self.line(seconds: Int(now.tv_sec), nanoseconds: Int(now.tv_nsec), level: level, label: label,
                             message: message.description, metadata: merged)
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fileDescriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }  // Nowhere to report a failing log stream.
            offset += written
        }
    }

    /// One event as a JSON line (newline included); pure, for tests.
    public static func line(seconds: Int, nanoseconds: Int, level: Logger.Level, label: String, message: String,
                            metadata: Logger.Metadata) -> String {
        var fields: [(String, String)] = [
            ("ts", quoted(timestamp(seconds: seconds, nanoseconds: nanoseconds))),
            ("level", quoted(level.rawValue)), ("label", quoted(label)), ("message", quoted(message)),
        ]
        var flat: [(String, String)] = []
        flatten(metadata, prefix: "", into: &flat)
        let reserved: Set<String> = ["ts", "level", "label", "message"]
        for (key, value) in flat.sorted(by: { $0.0 < $1.0 }) {
            fields.append((reserved.contains(key) ? "meta." + key : key, value))
        }
        return "{" + fields.map { quoted($0.0) + ":" + $0.1 }.joined(separator: ",") + "}\n"
    }

    /// RFC 3339 in UTC with milliseconds: 2026-11-25T08:31:39.123Z.
    public static func timestamp(seconds: Int, nanoseconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = nanoseconds / 1_000_000
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }

    private static func flatten(_ metadata: Logger.Metadata, prefix: String, into fields: inout [(String, String)]) {
        for (key, value) in metadata {
            let name = prefix + key
            switch value {
            case let .string(text): fields.append((name, quoted(text)))
            case let .stringConvertible(convertible): fields.append((name, quoted(convertible.description)))
            case let .dictionary(nested): flatten(nested, prefix: name + ".", into: &fields)
            case let .array(values): fields.append((name, "[" + values.map { quoted($0.description) }.joined(separator: ",") + "]"))
            }
        }
    }

    /// A JSON string literal: quotes, backslashes and every control character escaped.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028 || scalar.value == 0x2029:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
