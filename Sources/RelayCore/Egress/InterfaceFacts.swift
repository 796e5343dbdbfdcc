/// What the relay knows about one network interface: read by the daemon from the kernel
/// (ioctls, rtnetlink, ethtool, sysfs), recorded by the flight recorder, and given to the
/// simulator, so that every driver builds the same egress frames and takes the same egress
/// decisions from the same facts.
public struct InterfaceFacts: Hashable, Sendable, Codable {
    public var name: InterfaceName
    /// The kernel's interface index.
    public var index: Int32
    /// ARPHRD_* (1: Ethernet, which veth, bridges, bonds, VLANs and NICs all are).
    public var hardwareType: UInt16
    /// The hardware address (nil when the interface has none of six bytes).
    public var mac: MACAddress?
    /// The primary IPv4 address: the source address of everything the relay sends there (the
    /// kernel's UDP path picks the same one for a datagram sent with IP_MULTICAST_IF).
    public var ipv4: IPv4Address?
    /// The first global-scope IPv6 address (not deprecated/tentative), if any.
    public var ipv6: IPv6Address?
    /// The fe80::/10 address: every IPv6 interface has one (RFC 4291 2.1), and it is the
    /// source of what the relay sends to link-scoped groups.
    public var ipv6LinkLocal: IPv6Address?
    public var mtu: Int
    /// The driver (ETHTOOL_GDRVINFO: "veth", "bridge", "macvlan", "vxlan", "tun", "e1000e",
    /// ...; empty when the device reports none), for reasons shown to the operator.
    public var driver: String
    /// Whether a bus device backs it (`/sys/class/net/NAME/device` exists): a physical NIC or
    /// an SR-IOV function, which segments UDP GSO before the wire (in hardware or in the
    /// kernel's software fallback) rather than handing the super-frame to another stack.
    public var physical: Bool
    /// Whether the device takes UDP GSO super-frames whole (ethtool `tx-udp-segmentation`,
    /// NETIF_F_GSO_UDP_L4). When it does not, the kernel segments before the device.
    public var udpSegmentationOffload: Bool

    public init(name: InterfaceName, index: Int32, hardwareType: UInt16 = Self.ethernet, mac: MACAddress?,
                ipv4: IPv4Address?, ipv6: IPv6Address? = nil, ipv6LinkLocal: IPv6Address? = nil, mtu: Int = 1500,
                driver: String = "", physical: Bool = false, udpSegmentationOffload: Bool = false) {
        self.name = name
        self.index = index
        self.hardwareType = hardwareType
        self.mac = mac
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.ipv6LinkLocal = ipv6LinkLocal
        self.mtu = mtu
        self.driver = driver
        self.physical = physical
        self.udpSegmentationOffload = udpSegmentationOffload
    }

    /// ARPHRD_ETHER.
    public static let ethernet: UInt16 = 1

    enum CodingKeys: String, CodingKey {
        case name, index, hardwareType = "hardware_type", mac, ipv4, ipv6, ipv6LinkLocal = "ipv6_link_local", mtu
        case driver, physical, udpSegmentationOffload = "udp_segmentation_offload"
    }

    /// The largest UDP payload one IPv4 frame carries (20-byte header, 8 bytes of UDP).
    public var payloadLimit: Int { max(0, mtu - 28) }

    /// The largest UDP payload one frame to `family` carries (IPv6: 40-byte header).
    public func payloadLimit(for family: AddressFamily) -> Int { max(0, mtu - (family == .ipv4 ? 28 : 48)) }

    /// The source address of what the relay sends to `destination` here, as the kernel picks
    /// it (RFC 6724 rule 2, scope): IPv4, the primary address; IPv6, the link-local address
    /// for a link-scoped group or a link-local unicast destination, otherwise a global address
    /// when the interface has one and the link-local one when it has not. nil: the interface
    /// has no address of that family, so nothing can be sent there.
    public func source(for destination: IPAddress) -> IPAddress? {
        switch destination {
        case .v4:
            return ipv4.map(IPAddress.v4)
        case let .v6(address):
            let linkScoped = address.isMulticast ? address.multicastScope <= 2 : address.isLinkLocalUnicast
            if linkScoped { return ipv6LinkLocal.map(IPAddress.v6) }
            return (ipv6 ?? ipv6LinkLocal).map(IPAddress.v6)
        }
    }

    /// What the simulator assumes of an interface nothing was recorded for: a veth (the lab's
    /// link, and the common container link) with a locally administered MAC naming the
    /// interface by position and the addresses 198.19.POSITION.1, fd00:6d63::POSITION:1 and the
    /// link-local address the kernel derives from that MAC (EUI-64, RFC 4291 appendix A).
    public static func simulated(_ name: InterfaceName, position: Int) -> InterfaceFacts {
        let mac = MACAddress(0x02, 0x6D, 0x63, 0x00, UInt8(truncatingIfNeeded: position >> 8), UInt8(truncatingIfNeeded: position))
        let slot = UInt16(truncatingIfNeeded: position)
        return InterfaceFacts(
            name: name, index: Int32(position + 2), mac: mac,
            ipv4: IPv4Address(198, 19, UInt8(truncatingIfNeeded: position), 1),
            ipv6: IPv6Address(0xfd00, 0x6d63, 0, 0, 0, 0, slot, 1), ipv6LinkLocal: mac.linkLocalIPv6,
            mtu: 1500, driver: "veth",
            physical: false, udpSegmentationOffload: true)
    }
}
