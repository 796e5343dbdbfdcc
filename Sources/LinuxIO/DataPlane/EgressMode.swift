/// How a worker sends multicast outputs (`MCRELAY_EGRESS`, set by `mcrelay daemon --egress`).
///
/// - `packet` (the default): the worker writes Ethernet/IPv4/UDP headers itself and sends the
///   frames through one AF_PACKET socket per output interface (see `PacketEgressLink`). This
///   skips the kernel's per-datagram UDP/IP send path (routing, socket accounting, IP output,
///   netfilter OUTPUT/POSTROUTING), which was most of a worker's CPU; the qdisc, tc and packet
///   taps still see the frames. An output falls back to the UDP path when its interface
///   cannot take it: no IPv4 address, not Ethernet, the packet socket cannot be opened, or a
///   datagram larger than the interface MTU allows (the kernel then fragments it). Unicast
///   outputs always use the UDP path (they need neighbour resolution).
/// - `udp`: every output goes through kernel UDP sockets (sendmmsg, UDP GSO), so the host's
///   firewall (netfilter OUTPUT/POSTROUTING) sees all relayed traffic.
public enum EgressMode: String, Sendable, CaseIterable, CustomStringConvertible {
    case packet
    case udp

    public static let `default`: EgressMode = .packet
    public static let environmentVariable = "MCRELAY_EGRESS"

    public var description: String { rawValue }

    /// The mode named by `MCRELAY_EGRESS` (unset or empty: the default).
    public static func fromEnvironment(_ value: String?) -> Result<EgressMode, EgressModeError> {
        guard let value, !value.isEmpty else { return .success(.default) }
        guard let mode = EgressMode(rawValue: value) else { return .failure(EgressModeError(value: value)) }
        return .success(mode)
    }
}

public struct EgressModeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var value: String
    public var description: String {
        "\(EgressMode.environmentVariable)=\"\(value)\" is not an egress mode (use "
            + EgressMode.allCases.map(\.rawValue).joined(separator: " or ") + "); using \(EgressMode.default)"
    }
}
