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
    /// (IPv4 outputs; `ipv6Path` for IPv6 ones.)
    public var path: EgressPath
    public var pathReason: String
    /// The path of its IPv6 multicast outputs: the packet path needs an IPv6 source address
    /// there, which an interface may have without an IPv4 one, or lack while it has one.
    public var ipv6Path: EgressPath
    public var ipv6PathReason: String
    /// Whether UDP sends on it may use GSO.
    public var segmentation: Bool
    public var segmentationReason: String

    public init(interface: InterfaceName, path: EgressPath, pathReason: String, ipv6Path: EgressPath? = nil,
                ipv6PathReason: String? = nil, segmentation: Bool, segmentationReason: String) {
        self.interface = interface
        self.path = path
        self.pathReason = pathReason
        self.ipv6Path = ipv6Path ?? path
        self.ipv6PathReason = ipv6PathReason ?? pathReason
        self.segmentation = segmentation
        self.segmentationReason = segmentationReason
    }

    /// The path of this interface's multicast outputs to `family`.
    public func path(for family: AddressFamily) -> EgressPath { family == .ipv4 ? path : ipv6Path }
    public func pathReason(for family: AddressFamily) -> String { family == .ipv4 ? pathReason : ipv6PathReason }
    /// Whether any family's multicast outputs take the packet path (the packet socket is needed).
    public var anyPacketPath: Bool { path == .packet || ipv6Path == .packet }

    enum CodingKeys: String, CodingKey {
        case interface, path, pathReason = "path_reason", segmentation, segmentationReason = "segmentation_reason"
        case ipv6Path = "ipv6_path", ipv6PathReason = "ipv6_path_reason"
    }

    /// Decisions recorded before IPv6 have no IPv6 path: it is taken to be the IPv4 one.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(interface: try container.decode(InterfaceName.self, forKey: .interface),
                  path: try container.decode(EgressPath.self, forKey: .path),
                  pathReason: try container.decode(String.self, forKey: .pathReason),
                  ipv6Path: try container.decodeIfPresent(EgressPath.self, forKey: .ipv6Path),
                  ipv6PathReason: try container.decodeIfPresent(String.self, forKey: .ipv6PathReason),
                  segmentation: try container.decode(Bool.self, forKey: .segmentation),
                  segmentationReason: try container.decode(String.self, forKey: .segmentationReason))
    }

    public var description: String {
        "\(interface): \(path) (\(pathReason))" + ipv6Text + "; UDP GSO \(segmentation ? "on" : "off") (\(segmentationReason))"
    }

    /// The IPv6 decision when it differs from the IPv4 one.
    var ipv6Text: String { ipv6Path == path && ipv6PathReason == pathReason ? "" : ", IPv6 \(ipv6Path) (\(ipv6PathReason))" }
}

/// The egress decisions, from interface facts alone: pure, so the daemon, `doctor` and the
/// simulator decide alike.
public enum EgressPolicy {
    /// The path of an interface's multicast outputs to `family` in `mode`.
    public static func path(_ facts: InterfaceFacts?, mode: EgressMode, family: AddressFamily = .ipv4) -> (EgressPath, String) {
        guard mode == .packet else { return (.udp, "--egress udp") }
        guard let facts else { return (.udp, "interface not found") }
        guard facts.hardwareType == InterfaceFacts.ethernet, facts.mac != nil else {
            return (.udp, "not an Ethernet interface (hardware type \(facts.hardwareType))")
        }
        switch family {
        case .ipv4:
            guard facts.ipv4 != nil else { return (.udp, "no IPv4 address") }
            guard facts.mtu >= 68 else { return (.udp, "MTU \(facts.mtu) below IPv4's minimum") }
        case .ipv6:
            guard facts.ipv6 != nil || facts.ipv6LinkLocal != nil else { return (.udp, "no usable IPv6 address") }
            guard facts.mtu >= 1280 else { return (.udp, "MTU \(facts.mtu) below IPv6's minimum of 1280") }
        }
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
        let (path, pathReason) = path(facts, mode: mode, family: .ipv4)
        let (ipv6Path, ipv6PathReason) = self.path(facts, mode: mode, family: .ipv6)
        let (segmentation, segmentationReason) = segmentation(facts, setting: setting)
        return InterfaceEgress(interface: name, path: path, pathReason: pathReason, ipv6Path: ipv6Path,
                               ipv6PathReason: ipv6PathReason, segmentation: segmentation, segmentationReason: segmentationReason)
    }
}
