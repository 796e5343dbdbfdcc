/// The part of HTTP/1.x the metrics endpoint needs: a request head (request line and header
/// fields) arriving in arbitrary pieces, checked strictly enough that garbage, oversize and
/// half-sent requests get a definite answer instead of holding a connection open.
///
/// Bodies are never read: the endpoint answers every request with `Connection: close`, and
/// Prometheus sends none.
public struct HTTPRequestHead: Equatable, Sendable {
    public var method: String
    /// The request target as sent (`/metrics`, `/metrics?x=1`).
    public var target: String
    /// `HTTP/1.0` or `HTTP/1.1`.
    public var version: String
    /// Header fields in order; names as sent.
    public var headers: [(name: String, value: String)]

    /// The target without its query.
    public var path: Substring { target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0] }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.method == rhs.method && lhs.target == rhs.target && lhs.version == rhs.version
            && lhs.headers.elementsEqual(rhs.headers) { $0.name == $1.name && $0.value == $1.value }
    }
}

public enum HTTPParseResult: Equatable, Sendable {
    /// The head is not complete yet: read more.
    case incomplete
    case complete(HTTPRequestHead)
    /// Answer with this status and close; `reason` is for the response body and the debug log.
    case invalid(status: Int, reason: String)
}

public struct HTTPRequestParser: Sendable {
    /// Request line plus headers. Prometheus sends about 300 bytes; 8 KiB is generous and
    /// bounds what one slow client can make the daemon hold.
    public static let defaultMaximumHeadSize = 8 * 1024

    public let maximumHeadSize: Int
    private var buffer: [UInt8] = []
    /// Where the search for the blank line resumes (avoids rescanning on every piece).
    private var scanFrom = 0
    private var result: HTTPParseResult = .incomplete

    public init(maximumHeadSize: Int = Self.defaultMaximumHeadSize) {
        self.maximumHeadSize = maximumHeadSize
    }

    /// Bytes buffered so far (bounded by `maximumHeadSize` plus one read).
    public var bufferedCount: Int { buffer.count }

    /// Adds received bytes; once the result is not `.incomplete` it never changes.
    public mutating func append(_ bytes: some Sequence<UInt8>) -> HTTPParseResult {
        guard case .incomplete = result else { return result }
        buffer.append(contentsOf: bytes)
        // Robustness (RFC 9112 2.2): empty lines before the request line are ignored.
        var leading = 0
        while leading < buffer.count, buffer[leading] == UInt8(ascii: "\r") || buffer[leading] == UInt8(ascii: "\n") { leading += 1 }
        if leading > 0 {
            buffer.removeFirst(leading)
            scanFrom = 0
        }
        if let end = headEnd() {
            guard end.headLength <= maximumHeadSize else { return finish(tooLarge) }
            return finish(Self.parseHead(buffer[0..<end.headLength]))
        }
        if buffer.count > maximumHeadSize { return finish(tooLarge) }
        return .incomplete
    }

    private var tooLarge: HTTPParseResult {
        .invalid(status: 431, reason: "request head larger than \(maximumHeadSize) bytes")
    }

    private mutating func finish(_ outcome: HTTPParseResult) -> HTTPParseResult {
        result = outcome
        buffer = []
        return outcome
    }

    /// The end of the head: a blank line, CRLF CRLF or (leniently) LF LF.
    private mutating func headEnd() -> (headLength: Int, total: Int)? {
        var index = max(scanFrom, 0)
        while index < buffer.count {
            if buffer[index] == UInt8(ascii: "\n") {
                // "\n\n" or "\n\r\n" ends the head.
                if index + 1 < buffer.count, buffer[index + 1] == UInt8(ascii: "\n") { return (index + 1, index + 2) }
                if index + 2 < buffer.count, buffer[index + 1] == UInt8(ascii: "\r"), buffer[index + 2] == UInt8(ascii: "\n") {
                    return (index + 1, index + 3)
                }
            }
            index += 1
        }
        // Resume a little before the end: the terminator may straddle two pieces.
        scanFrom = max(0, buffer.count - 3)
        return nil
    }

    static func parseHead(_ head: ArraySlice<UInt8>) -> HTTPParseResult {
        var lines: [ArraySlice<UInt8>] = head.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map {
            $0.last == UInt8(ascii: "\r") ? $0.dropLast() : $0
        }
        if lines.last?.isEmpty == true { lines.removeLast() }
        guard let requestLine = lines.first else { return .invalid(status: 400, reason: "empty request") }
        // Visible ASCII only (no NUL, no control characters, no UTF-8) on the request line.
        guard requestLine.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            return .invalid(status: 400, reason: "request line contains control or non-ASCII bytes")
        }
        let parts = requestLine.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else {
            return .invalid(status: 400, reason: "request line is not METHOD TARGET HTTP/VERSION")
        }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        let version = String(decoding: parts[2], as: UTF8.self)
        guard method.utf8.allSatisfy(isTokenCharacter) else {
            return .invalid(status: 400, reason: "method \"\(method.prefix(32))\" is not a token")
        }
        guard version.hasPrefix("HTTP/") else {
            return .invalid(status: 400, reason: "request line is not METHOD TARGET HTTP/VERSION")
        }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            return .invalid(status: 505, reason: "\(version.prefix(16)) is not supported; use HTTP/1.1")
        }
        guard target.hasPrefix("/") else {
            return .invalid(status: 400, reason: "request target must be a path starting with /")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else {
                return .invalid(status: 400, reason: "header line without a field name and \":\"")
            }
            let name = line[line.startIndex..<colon]
            guard name.allSatisfy(isTokenCharacter) else {
                return .invalid(status: 400, reason: "header field name is not a token")
            }
            let value = line[(colon + 1)...]
            guard value.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else {
                return .invalid(status: 400, reason: "header field value contains control bytes")
            }
            headers.append((String(decoding: name, as: UTF8.self),
                            String(decoding: value, as: UTF8.self).trimmingSpaces()))
        }
        return .complete(HTTPRequestHead(method: method, target: target, version: version, headers: headers))
    }

    /// RFC 9110 token characters.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view.removeFirst() }
        while let last = view.last, last == " " || last == "\t" { view.removeLast() }
        return String(view)
    }
}
