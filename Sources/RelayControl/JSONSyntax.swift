/// Finds the first JSON syntax error and where it is. Foundation's decoder only says "not
/// valid JSON"; an operator editing a config file by hand needs the line and column.
public enum JSONSyntax {
    public struct Problem: Equatable, Sendable, CustomStringConvertible {
        public var line: Int
        public var column: Int
        public var message: String
        public var description: String { "line \(line), column \(column): \(message)" }
    }

    /// The first problem in `bytes`, or nil when they are one valid JSON value.
    public static func firstProblem(in bytes: some Collection<UInt8>) -> Problem? {
        var scanner = Scanner(bytes: Array(bytes))
        do throws(Problem) {
            scanner.skipSpace()
            try scanner.value(depth: 0)
            scanner.skipSpace()
            if scanner.position < scanner.bytes.count { throw scanner.problem("unexpected text after the JSON value") }
            return nil
        } catch {
            return error
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var position = 0
        static let maximumDepth = 256

        func problem(_ message: String) -> Problem {
            var line = 1
            var column = 1
            for byte in bytes[..<min(position, bytes.count)] {
                if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
            }
            return Problem(line: line, column: column, message: message)
        }

        var current: UInt8? { position < bytes.count ? bytes[position] : nil }

        mutating func skipSpace() {
            while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { position += 1 }
        }

        mutating func expect(_ byte: UInt8, _ what: String) throws(Problem) {
            guard current == byte else { throw problem(current == nil ? "unexpected end of input, expected \(what)" : "expected \(what)") }
            position += 1
        }

        mutating func value(depth: Int) throws(Problem) {
            guard depth < Self.maximumDepth else { throw problem("nested too deeply") }
            switch current {
            case UInt8(ascii: "{"):
                position += 1
                skipSpace()
                if current == UInt8(ascii: "}") { position += 1; return }
                while true {
                    skipSpace()
                    guard current == UInt8(ascii: "\"") else { throw problem("expected a quoted key") }
                    try string()
                    skipSpace()
                    try expect(UInt8(ascii: ":"), "':' after the key")
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if current == UInt8(ascii: ",") { position += 1; continue }
                    try expect(UInt8(ascii: "}"), "',' or '}'")
                    return
                }
            case UInt8(ascii: "["):
                position += 1
                skipSpace()
                if current == UInt8(ascii: "]") { position += 1; return }
                while true {
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if current == UInt8(ascii: ",") { position += 1; continue }
                    try expect(UInt8(ascii: "]"), "',' or ']'")
                    return
                }
            case UInt8(ascii: "\""):
                try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case let byte? where byte == UInt8(ascii: "-") || (byte >= 0x30 && byte <= 0x39):
                try number()
            case nil:
                throw problem("unexpected end of input, expected a value")
            default:
                throw problem("expected a value (object, array, string, number, true, false or null)")
            }
        }

        mutating func string() throws(Problem) {
            position += 1
            while let byte = current {
                position += 1
                if byte == UInt8(ascii: "\"") { return }
                if byte < 0x20 { position -= 1; throw problem("control character inside a string (a missing closing quote?)") }
                if byte == UInt8(ascii: "\\") {
                    guard let escaped = current else { break }
                    position += 1
                    if escaped == UInt8(ascii: "u") {
                        for _ in 0..<4 {
                            guard let hex = current, (hex >= 0x30 && hex <= 0x39) || (hex | 0x20 >= 0x61 && hex | 0x20 <= 0x66)
                            else { throw problem("bad \\u escape") }
                            position += 1
                        }
                    } else if !"\"\\/bfnrt".utf8.contains(escaped) {
                        position -= 1
                        throw problem("bad escape in string")
                    }
                }
            }
            throw problem("unterminated string")
        }

        mutating func literal(_ word: String) throws(Problem) {
            for byte in word.utf8 {
                guard current == byte else { throw problem("expected \(word)") }
                position += 1
            }
        }

        mutating func number() throws(Problem) {
            if current == UInt8(ascii: "-") { position += 1 }
            guard let first = current, first >= 0x30 && first <= 0x39 else { throw problem("expected a digit") }
            while let byte = current, byte >= 0x30 && byte <= 0x39 { position += 1 }
            if current == UInt8(ascii: ".") {
                position += 1
                guard let digit = current, digit >= 0x30 && digit <= 0x39 else { throw problem("expected a digit after '.'") }
                while let byte = current, byte >= 0x30 && byte <= 0x39 { position += 1 }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                position += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
                guard let digit = current, digit >= 0x30 && digit <= 0x39 else { throw problem("expected a digit in the exponent") }
                while let byte = current, byte >= 0x30 && byte <= 0x39 { position += 1 }
            }
        }
    }
}

extension JSONSyntax.Problem: Error {}
