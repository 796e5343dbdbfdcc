/// How multicast outputs leave a worker (`mcrelay daemon --egress`).
///
/// - `packet` (the default): the worker writes Ethernet/IPv4/UDP headers itself (`EgressFrame`)
///   and sends one frame per datagram through an AF_PACKET socket per output interface. This
///   skips the kernel's per-datagram UDP/IP send path (routing, socket accounting, IP output,
///   netfilter OUTPUT/POSTROUTING); the qdisc, tc and packet taps still see the frames.
/// - `udp`: every output goes through kernel UDP sockets, so the host's firewall sees all
///   relayed traffic.
public enum EgressMode: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    case packet
    case udp

    public static let `default`: EgressMode = .packet
    public var description: String { rawValue }
}

/// Whether UDP sends may coalesce same-size datagrams of one output into one UDP GSO send
/// (`mcrelay daemon --segmentation`).
///
/// - `auto` (the default): only toward a device that splits the super-frame back into one
///   frame per datagram before the wire (see `EgressPolicy.segmentation`);
/// - `off`: never;
/// - `on`: toward every device, also virtual links that pass the super-frame to their peer
///   whole (a receiver's UDP socket still gets each datagram; a frame reader, tcpdump or a
///   second relay reading AF_PACKET sees one large datagram). For users who want that.
public enum SegmentationSetting: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    case auto
    case off
    case on

    public static let `default`: SegmentationSetting = .auto
    public var description: String { rawValue }
}

/// The path one output interface's outputs take.
public enum EgressPath: String, Sendable, Codable, CustomStringConvertible {
    /// Frames the relay builds, through an AF_PACKET socket.
    case packet
    /// The kernel's UDP send path.
    case udp
    public var description: String { rawValue }
}

/// What the relay does on one output interface, and why: shown by `mcrelay stats` and
/// `mcrelay doctor`, logged when it changes.
public struct InterfaceEgress: Hashable, Sendable, Codable {
    public var interface: InterfaceName
    /// The path of its multicast outputs (unicast outputs always take the UDP path: they need
    /// the kernel's neighbour resolution).
    public var path: EgressPath
    public var pathReason: String
    /// Whether UDP sends on it may use GSO.
    public var segmentation: Bool
    public var segmentationReason: String

    public init(interface: InterfaceName, path: EgressPath, pathReason: String, segmentation: Bool, segmentationReason: String) {
        self.interface = interface
        self.path = path
        self.pathReason = pathReason
        self.segmentation = segmentation
        self.segmentationReason = segmentationReason
    }

    enum CodingKeys: String, CodingKey {
        case interface, path, pathReason = "path_reason", segmentation, segmentationReason = "segmentation_reason"
    }

    public var description: String {
        "\(interface): \(path) (\(pathReason)); UDP GSO \(segmentation ? "on" : "off") (\(segmentationReason))"
    }
}

/// The egress decisions, from interface facts alone: pure, so the daemon, `doctor` and the
/// simulator decide alike.
public enum EgressPolicy {
    /// The path of an interface's multicast outputs in `mode`.
    public static func path(_ facts: InterfaceFacts?, mode: EgressMode) -> (EgressPath, String) {
        guard mode == .packet else { return (.udp, "--egress udp") }
        guard let facts else { return (.udp, "interface not found") }
        guard facts.hardwareType == InterfaceFacts.ethernet, facts.mac != nil else {
            return (.udp, "not an Ethernet interface (hardware type \(facts.hardwareType))")
        }
        guard facts.ipv4 != nil else { return (.udp, "no IPv4 address") }
        guard facts.mtu >= 68 else { return (.udp, "MTU \(facts.mtu) below IPv4's minimum") }
        return (.packet, "frames built by the relay")
    }

    /// Whether UDP sends toward this interface may use GSO. `auto` keeps one datagram per frame
    /// on every link: GSO only where the super-frame is split before the wire: a physical
    /// device (its hardware segments, or the kernel does in software before the driver), or a
    /// device without `tx-udp-segmentation` (the kernel segments before handing it the frames).
    public static func segmentation(_ facts: InterfaceFacts?, setting: SegmentationSetting) -> (Bool, String) {
        switch setting {
        case .off: return (false, "--segmentation off")
        case .on: return (true, "--segmentation on (super-frames may reach the link whole)")
        case .auto: break
        }
        guard let facts else { return (false, "interface not found") }
        let driver = facts.driver.isEmpty ? "" : " (\(facts.driver))"
        if facts.physical { return (true, "physical device\(driver): segments before the wire") }
        if !facts.udpSegmentationOffload { return (true, "no tx-udp-segmentation: the kernel segments before the device") }
        return (false, "virtual device\(driver) passes UDP GSO super-frames on whole")
    }

    public static func decide(_ name: InterfaceName, facts: InterfaceFacts?, mode: EgressMode,
                              segmentation setting: SegmentationSetting) -> InterfaceEgress {
        let (path, pathReason) = path(facts, mode: mode)
        let (segmentation, segmentationReason) = segmentation(facts, setting: setting)
        return InterfaceEgress(interface: name, path: path, pathReason: pathReason, segmentation: segmentation,
                               segmentationReason: segmentationReason)
    }
}
