import RelayCore

/// Fuzz target `linkcounters`: the input is what the kernel answers a daemon asking for an input
/// device's receive counters (rtnetlink RTM_GETLINK; `LinkCounters`), shown in `mcrelay stats`.
///
/// The first 4 bytes choose the asked interface index; the rest is the datagram. Properties:
/// reading never traps and a refusal or problem has a message; a refusal's errno is 1...4095
/// (the daemon turns it into text); counters read back, rebuilt alone into a record of the asked
/// device, as the same counters.
public func checkLinkCounters(_ input: UnsafeRawBufferPointer) {
    let bytes = Array(input)
    guard bytes.count >= 4 else { return }
    let ifindex = Int32(bitPattern: UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
    switch LinkCounters.parse(bytes.dropFirst(4), ifindex: ifindex) {
    case let .failure(problem):
        require(!problem.message.isEmpty, "a problem has a message")
    case let .success(.refused(errno: code)):
        require((1 ... 4095).contains(code), "a refusal's errno is 1...4095")
    case let .success(.counters(counters)):
        let alone = LinkCounters.record(ifindex: ifindex, name: "x", counters, sequence: 1)
        require(LinkCounters.parse(alone, ifindex: ifindex) == .success(.counters(counters)), "rebuilt counters read back the same")
    }
}
