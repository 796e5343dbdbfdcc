import RelayCore

/// Fuzz target `napidump`: the input is what the kernel answers a daemon asking which threads do
/// an input's receive work (generic netlink: the netdev family's id, then a napi-get dump;
/// `NAPIThreadDump`). The daemon renices every pid it gets, so a pid must come only from a
/// well-formed record of the asked device.
///
/// The first 6 bytes choose the asked family id (2 bytes) and interface index (4); the rest is
/// the datagram. Properties: reading never traps and a refusal has a message; every pid read is
/// positive, at most `maximumThreads` of them, and each comes from a record that, rebuilt alone,
/// reads back as that pid; a refusal's code is a negative errno (the daemon negates it); the
/// family-id reader never traps and never returns 0.
public func checkNAPIDump(_ input: UnsafeRawBufferPointer) {
    let bytes = Array(input)
    guard bytes.count >= 6 else { return }
    let family = UInt16(bytes[0]) | UInt16(bytes[1]) << 8
    let ifindex = UInt32(bytes[2]) | UInt32(bytes[3]) << 8 | UInt32(bytes[4]) << 16 | UInt32(bytes[5]) << 24
    let datagram = bytes.dropFirst(6)
    switch NAPIThreadDump.parseDump(datagram, family: family, ifindex: ifindex) {
    case let .failure(problem):
        require(!problem.message.isEmpty, "a refusal has a message")
    case let .success(part):
        require(part.pids.count <= NAPIThreadDump.maximumThreads, "at most maximumThreads pids")
        for pid in part.pids {
            require(pid > 0, "pids are positive")
            let alone = NAPIThreadDump.record(family: family, ifindex: ifindex, napiID: 1, pid: UInt32(pid), sequence: 1)
            require(NAPIThreadDump.parseDump(alone, family: family, ifindex: ifindex) == .success(.init(pids: [pid])),
                    "a rebuilt record reads back as its pid")
        }
        require(!(part.done && part.error != nil), "a dump ends or fails, not both")
        if let code = part.error { require((-4095 ... -1).contains(code), "a refusal's code is a negative errno") }
    }
    switch NAPIThreadDump.familyID(datagram) {
    case let .failure(problem): require(!problem.message.isEmpty, "a refusal has a message")
    case let .success(id): require(id != 0, "family id 0 is never accepted")
    }
}
