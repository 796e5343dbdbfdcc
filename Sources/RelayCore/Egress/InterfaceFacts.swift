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
                ipv4: IPv4Address?, mtu: Int = 1500, driver: String = "", physical: Bool = false,
                udpSegmentationOffload: Bool = false) {
        self.name = name
        self.index = index
        self.hardwareType = hardwareType
        self.mac = mac
        self.ipv4 = ipv4
        self.mtu = mtu
        self.driver = driver
        self.physical = physical
        self.udpSegmentationOffload = udpSegmentationOffload
    }

    /// ARPHRD_ETHER.
    public static let ethernet: UInt16 = 1

    enum CodingKeys: String, CodingKey {
        case name, index, hardwareType = "hardware_type", mac, ipv4, mtu, driver, physical
        case udpSegmentationOffload = "udp_segmentation_offload"
    }

    /// The largest UDP payload one IPv4 frame carries (20-byte header, 8 bytes of UDP).
    public var payloadLimit: Int { max(0, mtu - 28) }

    /// What the simulator assumes of an interface nothing was recorded for: a veth (the lab's
    /// link, and the common container link) with a locally administered MAC naming the
    /// interface by position and the address 198.19.POSITION.1.
    public static func simulated(_ name: InterfaceName, position: Int) -> InterfaceFacts {
        InterfaceFacts(
            name: name, index: Int32(position + 2),
            mac: MACAddress(0x02, 0x6D, 0x63, 0x00, UInt8(truncatingIfNeeded: position >> 8), UInt8(truncatingIfNeeded: position)),
            ipv4: IPv4Address(198, 19, UInt8(truncatingIfNeeded: position), 1), mtu: 1500, driver: "veth",
            physical: false, udpSegmentationOffload: true)
    }
}
