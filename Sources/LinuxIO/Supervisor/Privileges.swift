#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// A set of Linux capabilities as the kernel's bit mask (bit n is capability n).
public struct CapabilitySet: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let netAdmin = CapabilitySet(rawValue: 1 << 12)
    public static let netRaw = CapabilitySet(rawValue: 1 << 13)

    /// What the daemon keeps after `--user`, measured (see README "Run under systemd"):
    /// - CAP_NET_RAW: workers open AF_PACKET sockets whenever a rule names a new input
    ///   interface, and a restarted worker opens all of them again.
    /// - CAP_NET_ADMIN: SO_RCVBUFFORCE/SO_SNDBUFFORCE for the ingress and egress buffers (8 MiB
    ///   asked); without it they are capped by net.core.rmem_max/wmem_max, which cannot be
    ///   raised inside a network namespace (~208 KiB by default): bursts get dropped.
    /// Nothing else: IGMP joins, PACKET_FANOUT, PACKET_IGNORE_OUTGOING, SO_BINDTODEVICE on a
    /// fresh socket, io_uring and the control socket need no capability.
    public static let daemonNeeds: CapabilitySet = [.netRaw, .netAdmin]

    /// "CAP_NET_RAW CAP_NET_ADMIN", "none"; unnamed ones as "cap_N".
    public var description: String {
        let named: [(Int, String)] = [(13, "CAP_NET_RAW"), (12, "CAP_NET_ADMIN"), (0, "CAP_CHOWN"), (1, "CAP_DAC_OVERRIDE"),
                                      (2, "CAP_DAC_READ_SEARCH"), (5, "CAP_KILL"), (6, "CAP_SETGID"), (7, "CAP_SETUID"),
                                      (8, "CAP_SETPCAP"), (10, "CAP_NET_BIND_SERVICE"), (21, "CAP_SYS_ADMIN")]
        var words: [String] = []
        for (bit, name) in named where rawValue & (1 << UInt64(bit)) != 0 { words.append(name) }
        for bit in 0..<64 where rawValue & (1 << UInt64(bit)) != 0 && !named.contains(where: { $0.0 == bit }) {
            words.append("cap_\(bit)")
        }
        return words.isEmpty ? "none" : words.joined(separator: " ")
    }

    /// The calling thread's effective set (empty if it cannot be read).
    public static var effective: CapabilitySet {
        var effective: UInt64 = 0
        _ = cln_capabilities(&effective, nil, nil)
        return CapabilitySet(rawValue: effective)
    }
}

/// Who the daemon becomes with `--user NAME [--group NAME]`, resolved before anything is opened.
public struct ServiceIdentity: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var uid: uid_t
    public var group: String
    public var gid: gid_t

    public var description: String { "user \(user) (uid \(uid)), group \(group) (gid \(gid))" }

    /// The user and group must exist and not be root, and the daemon must run as root to
    /// switch to them. Without `group`, the user's primary group. Numeric ids are accepted if
    /// they exist in the user/group database.
    public static func resolve(user: String, group: String?) throws(PrivilegeError) -> ServiceIdentity {
        guard geteuid() == 0 else {
            throw PrivilegeError("--user \(user): the daemon runs as uid \(geteuid()), not root, so it cannot switch users; start it as root, or leave --user out (the systemd unit's User= already does the switch)")
        }
        guard let account = lookUpUser(user) else {
            throw PrivilegeError("--user \(user): no such user (create it first, e.g. with packaging/mcrelay.sysusers and systemd-sysusers)")
        }
        guard account.uid != 0 else { throw PrivilegeError("--user \(user): that is root (uid 0); name an unprivileged user") }
        var gid = account.gid
        var groupName = groupName(of: gid) ?? String(gid)
        if let group {
            guard let found = lookUpGroup(group) else { throw PrivilegeError("--group \(group): no such group") }
            (gid, groupName) = found
        }
        guard gid != 0 else { throw PrivilegeError("--group \(groupName): that is root's group (gid 0); name an unprivileged group") }
        return ServiceIdentity(user: account.name, uid: account.uid, group: groupName, gid: gid)
    }

    private static func lookUpUser(_ name: String) -> (name: String, uid: uid_t, gid: gid_t)? {
        var entry: UnsafeMutablePointer<passwd>? = getpwnam(name)
        if entry == nil, let number = uid_t(name) { entry = getpwuid(number) }
        guard let entry else { return nil }
        return (String(cString: entry.pointee.pw_name), entry.pointee.pw_uid, entry.pointee.pw_gid)
    }

    private static func lookUpGroup(_ name: String) -> (gid_t, String)? {
        var entry: UnsafeMutablePointer<group>? = getgrnam(name)
        if entry == nil, let number = gid_t(name) { entry = getgrgid(number) }
        guard let entry else { return nil }
        return (entry.pointee.gr_gid, String(cString: entry.pointee.gr_name))
    }

    private static func groupName(of gid: gid_t) -> String? {
        guard let entry = getgrgid(gid) else { return nil }
        return String(cString: entry.pointee.gr_name)
    }
}

/// A `--user`/`--group` problem: one line naming the option and what to do.
public struct PrivilegeError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
