#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayCore

/// Interface lookups by name (the kernel's view at the moment of the call).
public enum Interfaces {
    /// The interface index, nil if no such interface exists now.
    public static func index(of name: InterfaceName) -> Int32? {
        let index = if_nametoindex(name.rawValue)
        return index == 0 ? nil : Int32(index)
    }

    /// The first IPv4 address configured on the interface, nil if none (or no such interface).
    /// Source-specific joins and IP_MULTICAST_IF by address need it.
    public static func ipv4Address(of name: InterfaceName) -> IPv4Address? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(first) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET),
                  String(cString: entry.pointee.ifa_name) == name.rawValue
            else { continue }
            let value = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
            return IPv4Address(UInt32(bigEndian: value))
        }
        return nil
    }
}

extension IPv4Address {
    /// In network byte order, as `in_addr` and the socket structs want it.
    public var inAddr: in_addr { in_addr(s_addr: value.bigEndian) }
}
