#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet

/// `mcrelay daemon --user NAME`: the supervisor opens what needs root as root (the control
/// socket, the rtnetlink socket with a forced buffer, the AF_PACKET probe), then becomes
/// NAME before the loop starts and before any worker exists, keeping only
/// `CapabilitySet.daemonNeeds` (effective, permitted, inheritable and ambient, so the workers
/// it execs get exactly those too; everything else leaves the bounding set).
extension Supervisor {
    public func dropPrivileges(to identity: ServiceIdentity) throws(SupervisorStartError) {
        // The control socket (mode 0660) belongs to the user and the group, so members of
        // the group can use `mcrelay rule`/`stats`; a directory the daemon created for it
        // too, so the unprivileged daemon can remove the socket when it stops. A --record
        // directory too, so the workers can create their files in it.
        for path in [listener.createdDirectory, listener.path].compactMap({ $0 }) + (flightRecorder?.ownedPaths ?? []) {
            guard chown(path, identity.uid, identity.gid) == 0 else {
                let error = SystemError.last("chown \(identity.user):\(identity.group) \(path)")
                listener.close()
                throw SupervisorStartError("--user: \(error)")
            }
        }
        let keep = CapabilitySet.daemonNeeds
        var step: UnsafePointer<CChar>?
        let result = cln_switch_identity(identity.uid, identity.gid, keep.rawValue, &step)
        guard result == 0 else {
            listener.close()
            throw SupervisorStartError("--user \(identity.user): \(SystemError(step.map { String(cString: $0) } ?? "switch", errno: -result))")
        }
        let effective = CapabilitySet.effective
        guard getuid() == identity.uid, geteuid() == identity.uid, getgid() == identity.gid, getegid() == identity.gid,
              effective == keep
        else {
            listener.close()
            throw SupervisorStartError("--user \(identity.user): after the switch the daemon runs as uid \(geteuid()) gid \(getegid()) with \(effective), not as asked")
        }
        // Capabilities and ids are per thread: check every thread of the process, not only this one.
        if let problem = Self.threadsNotSwitched(to: identity, keeping: keep) {
            listener.close()
            throw SupervisorStartError("--user \(identity.user): \(problem)")
        }
        logger.notice("dropped privileges: running as \(identity) with only \(keep) (effective, permitted, inheritable and ambient, passed to the workers); all other capabilities dropped from the bounding set")
    }

    /// A thread that still has another uid/gid or a capability beyond `keep`, described; nil if none.
    static func threadsNotSwitched(to identity: ServiceIdentity, keeping keep: CapabilitySet) -> String? {
        guard let directory = opendir("/proc/self/task") else { return "cannot list /proc/self/task to check the threads" }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard let tid = Int32(name) else { continue }
            guard let status = Descriptors.readSmallFile("/proc/self/task/\(tid)/status") else { continue }  // exited meanwhile
            var fields: [String: [Substring]] = [:]
            for line in status.split(separator: "\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[String(line[..<colon])] = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" })
            }
            let uids = fields["Uid"]?.prefix(3).compactMap { uid_t($0) } ?? []
            let gids = fields["Gid"]?.prefix(3).compactMap { gid_t($0) } ?? []
            guard uids == [identity.uid, identity.uid, identity.uid], gids == [identity.gid, identity.gid, identity.gid] else {
                return "thread \(tid) still runs as uid \(uids) gid \(gids)"
            }
            for set in ["CapPrm", "CapEff", "CapAmb"] {
                guard let text = fields[set]?.first, let mask = UInt64(text, radix: 16) else { return "thread \(tid): no \(set) in its status" }
                let extra = CapabilitySet(rawValue: mask).subtracting(keep)
                if !extra.isEmpty { return "thread \(tid) still holds \(extra) (\(set))" }
            }
        }
        return nil
    }

    /// Without `--user`: say what the daemon runs with, and warn about what is too much or too little.
    public func reportPrivileges() {
        let effective = CapabilitySet.effective
        if geteuid() == 0 {
            logger.warning("running as root with every capability; use --user NAME (or the systemd unit's User=) to keep only \(CapabilitySet.daemonNeeds)")
            return
        }
        let missing = CapabilitySet.daemonNeeds.subtracting(effective)
        let extra = effective.subtracting(CapabilitySet.daemonNeeds)
        var line = "running as uid \(geteuid()) gid \(getegid()) with \(effective)"
        let ambient = CapabilitySet(rawValue: cln_ambient_capabilities())
        if !ambient.isSuperset(of: effective) { line += " (ambient: \(ambient); workers get only those)" }
        if missing.isEmpty && extra.isEmpty {
            logger.notice("\(line)")
        } else {
            if !missing.isEmpty { line += "; missing \(missing): \(missing.contains(.netRaw) ? "workers cannot open AF_PACKET sockets" : "socket buffers are capped by net.core.rmem_max/wmem_max")" }
            if !extra.isEmpty { line += "; more than needed: \(extra)" }
            logger.warning("\(line)")
        }
    }
}
