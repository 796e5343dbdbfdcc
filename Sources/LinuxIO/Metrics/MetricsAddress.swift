#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// Where `mcrelay daemon --metrics` listens: an IP literal and a port, `127.0.0.1:9464` or
/// `[::1]:9464`. Host names are refused rather than resolved: the daemon must not depend on
/// DNS to start, and a name that resolves to several addresses would make "where is it
/// listening" ambiguous.
public struct MetricsAddress: Equatable, Sendable, CustomStringConvertible {
    public enum Host: Equatable, Sendable {
        /// Network byte order, as `in_addr.s_addr` holds it.
        case ipv4(UInt32)
        case ipv6([UInt8])
    }

    public var host: Host
    public var port: UInt16
    /// The text as the operator wrote it (for messages).
    public var text: String

    public var description: String { text }

    /// Parses `IPV4:PORT` or `[IPV6]:PORT`; the error is one line saying what is wrong.
    public static func parse(_ text: String) throws(MetricsAddressError) -> MetricsAddress {
        let usage = "expected IPV4:PORT or [IPV6]:PORT, e.g. 127.0.0.1:9464 or [::1]:9464"
        let hostText: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw MetricsAddressError(text, "missing \"]\" after the IPv6 address; \(usage)")
            }
            hostText = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw MetricsAddressError(text, "missing \":PORT\" after \"]\"; \(usage)") }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw MetricsAddressError(text, "missing \":PORT\"; \(usage)")
            }
            hostText = text[..<colon]
            portText = text[text.index(after: colon)...]
            if hostText.contains(":") {
                throw MetricsAddressError(text, "an IPv6 address needs brackets; \(usage)")
            }
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = Int(portText), (1...65535).contains(port)
        else {
            throw MetricsAddressError(text, "port \"\(portText)\" is not a number in 1...65535")
        }
        guard !hostText.isEmpty else { throw MetricsAddressError(text, "missing address before the port; \(usage)") }
        let host: Host
        if text.hasPrefix("[") {
            var address = in6_addr()
            guard inet_pton(AF_INET6, String(hostText), &address) == 1 else {
                throw MetricsAddressError(text, "\"\(hostText)\" is not an IPv6 address")
            }
            host = .ipv6(withUnsafeBytes(of: address) { Array($0) })
        } else {
            var address = in_addr()
            guard inet_pton(AF_INET, String(hostText), &address) == 1 else {
                let hint = hostText.contains(where: \.isLetter) ? " (host names are not resolved)" : ""
                throw MetricsAddressError(text, "\"\(hostText)\" is not an IPv4 address\(hint); \(usage)")
            }
            host = .ipv4(address.s_addr)
        }
        return MetricsAddress(host: host, port: UInt16(port), text: text)
    }
}

public struct MetricsAddressError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    init(_ text: String, _ problem: String) { description = "\"\(text)\": \(problem)" }
}
