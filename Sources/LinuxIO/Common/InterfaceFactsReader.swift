import CLinuxNet
import Glibc
import RelayCore

/// Reads `InterfaceFacts` from the kernel: index (if_nametoindex), hardware type and MAC
/// (SIOCGIFHWADDR), primary IPv4 address (SIOCGIFADDR), MTU (SIOCGIFMTU), driver
/// (ETHTOOL_GDRVINFO), `tx-udp-segmentation` (ETHTOOL_GFEATURES) and whether a bus device backs
/// it (`/sys/class/net/NAME/device`). Workers re-read their output interfaces every second
/// and when the supervisor reports a link change; `doctor` reads them once.
public enum InterfaceFactsReader {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// No interface of that name in this network namespace.
        case missing
        case lookup(String, Int32)

        public var description: String {
            switch self {
            case .missing: "does not exist"
            case let .lookup(call, code): "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
            }
        }
    }

    /// `probe`: any socket of the caller's network namespace (ioctls need one).
    public static func read(_ interface: InterfaceName, probe: Int32) -> Result<InterfaceFacts, Failure> {
        let name = interface.rawValue
        let index = Int32(bitPattern: if_nametoindex(name))
        guard index > 0 else { return .failure(.missing) }
        var type: UInt16 = 0
        var mac = [UInt8](repeating: 0, count: 6)
        let hardware = ldp_interface_hardware(probe, name, &type, &mac)
        guard hardware == 0 else { return .failure(hardware == -ENODEV ? .missing : .lookup("SIOCGIFHWADDR", -hardware)) }
        var address: UInt32 = 0
        let found = ldp_interface_ipv4(probe, name, &address)
        guard found == 0 || found == -EADDRNOTAVAIL else {
            return .failure(found == -ENODEV ? .missing : .lookup("SIOCGIFADDR", -found))
        }
        let mtu = ldp_interface_mtu(probe, name)
        guard mtu > 0 else { return .failure(mtu == -ENODEV ? .missing : .lookup("SIOCGIFMTU", -mtu)) }
        let driver = Self.driver(name)
        // A device that cannot say is taken to pass super-frames on (the safe side for `auto`).
        let uso = cln_ethtool_feature(name, "tx-udp-segmentation")
        let physical = access("/sys/class/net/\(name)/device", F_OK) == 0
        let v6 = IPv6InterfaceAddresses.read(index: index)
        return .success(InterfaceFacts(
            name: interface, index: index, hardwareType: type,
            mac: type == InterfaceFacts.ethernet ? MACAddress(mac) : nil,
            ipv4: found == 0 ? IPv4Address(UInt32(bigEndian: address)) : nil,
            ipv6: v6.global, ipv6LinkLocal: v6.linkLocal,
            mtu: Int(mtu), driver: driver, physical: physical, udpSegmentationOffload: uso != 0))
    }
}

extension InterfaceFactsReader {
    /// The interface's driver name (ETHTOOL_GDRVINFO: "veth", "bridge", ...), "" if it cannot say.
    public static func driver(_ name: String) -> String {
        var bytes = [CChar](repeating: 0, count: 64)
        guard cln_ethtool_driver(name, &bytes, Int32(bytes.count)) == 0 else { return "" }
        return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An interface's usable IPv6 addresses, from `/proc/net/if_inet6` (one line per address:
/// 32 hex digits, ifindex, prefix length, scope, flags, name, all hex but the name). Usable:
/// not tentative (DAD still running: the kernel would not send from it), not DAD-failed, not
/// deprecated.
public enum IPv6InterfaceAddresses {
    static let tentative: UInt32 = 0x40
    static let deprecated: UInt32 = 0x20
    static let dadFailed: UInt32 = 0x08

    public static func read(index: Int32, path: String = "/proc/net/if_inet6") -> (global: IPv6Address?, linkLocal: IPv6Address?) {
        guard let file = fopen(path, "r") else { return (nil, nil) }
        defer { fclose(file) }
        var text = ""
        var buffer = [CChar](repeating: 0, count: 256)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            text += String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return parse(text, index: index)
    }

    /// The first usable global-scope (scope 0) and link-local (scope 0x20) address of `index`.
    public static func parse(_ text: String, index: Int32) -> (global: IPv6Address?, linkLocal: IPv6Address?) {
        var global: IPv6Address?
        var linkLocal: IPv6Address?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[0].utf8.count == 32, Int32(fields[1], radix: 16) == index,
                  let scope = UInt32(fields[3], radix: 16), let flags = UInt32(fields[4], radix: 16),
                  flags & (tentative | deprecated | dadFailed) == 0,
                  let high = UInt64(fields[0].prefix(16), radix: 16), let low = UInt64(fields[0].suffix(16), radix: 16)
            else { continue }
            let address = IPv6Address(high: high, low: low)
            if scope == 0x20, linkLocal == nil { linkLocal = address }
            if scope == 0, global == nil, address.isUnicast { global = address }
        }
        return (global, linkLocal)
    }
}
