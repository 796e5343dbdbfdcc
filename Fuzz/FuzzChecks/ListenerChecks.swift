import RelayCore

/// Fuzz target `listener`: IGMP and MLD from the wire, and the router state they drive.
///
/// The first byte chooses. Even: the rest is one Ethernet frame. `ListenerFrame.extract`
/// returns a message or a refusal reason (never traps); a message rebuilt with
/// `ListenerFrame.build` from the same addresses extracts to the same message, with Router
/// Alert and hop limit 1; the bare IGMP and MLD decoders never trap on the frame's tail and
/// what they decode encodes back to a message that decodes equal. Odd: the rest is a run of
/// frames (a length byte, a delay byte in 100 ms, the frame) fed to `Listeners` running IGMP
/// and MLD on one interface; after every step nothing is due in the past, at most one querier
/// is known per family, and the operator's view of each group agrees with `wants`.
/// Returns what the input came to, for tests of the seeds (nil: the frame was refused).
@discardableResult
public func checkListener(_ input: UnsafeRawBufferPointer) -> String? {
    guard let selector = input.first else { return nil }
    let rest = [UInt8](UnsafeRawBufferPointer(rebasing: input[1...]))
    return selector & 1 == 0 ? checkListenerFrame(rest) : checkListenerRun(rest)
}

func checkListenerFrame(_ frame: [UInt8]) -> String? {
    checkBareDecoders(frame)
    switch ListenerFrame.extract(frame) {
    case let .failure(reason):
        require(!reason.description.isEmpty, "a refusal names its reason")
        return nil
    case let .success(received):
        require(received.source.family == received.destination.family, "one family: \(received)")
        let rebuilt = ListenerFrame.build(received.message, sourceMAC: received.sourceMAC, source: received.source,
                                          destination: received.destination)
        guard case let .success(again) = ListenerFrame.extract(rebuilt) else {
            fuzzFailure("a rebuilt frame is refused: \(received.message) -> \(ListenerFrame.extract(rebuilt))")
        }
        require(again.message == received.message && again.source == received.source
                && again.destination == received.destination, "rebuilt frame differs: \(received) -> \(again)")
        require(again.routerAlert && again.hopLimit == 1, "built frames carry Router Alert and hop limit 1")
        return "\(received.family) \(kind(received.message))"
    }
}

/// The codecs alone, on the bytes after an Ethernet + IPv4 header (or the whole input).
func checkBareDecoders(_ bytes: [UInt8]) {
    let igmp = Array(bytes.dropFirst(min(bytes.count, 38)))
    if case let .success(message) = IGMPCodec.decode(igmp) {
        require(IGMPCodec.decode(IGMPCodec.encode(message)) == .success(message), "IGMP re-encoding decodes equal: \(message)")
    }
    let source = IPv6Address(0xFE80, 0, 0, 0, 0, 0, 0, 1), destination = IPv6Address(0xFF02, 0, 0, 0, 0, 0, 0, 1)
    if case let .success(message) = MLDCodec.decode(bytes, source: source, destination: destination) {
        let encoded = MLDCodec.encode(message, source: source, destination: destination)
        require(MLDCodec.decode(encoded, source: source, destination: destination) == .success(message),
                "MLD re-encoding decodes equal: \(message)")
    }
}

func kind(_ message: ListenerMessage) -> String {
    switch message {
    case let .query(query): "query \(query.version)\(query.group == nil ? "" : " specific")\(query.sources.isEmpty ? "" : " sources")"
    case let .report(version, _): "report \(version)"
    case .leave: "leave"
    case .v3Report: "report v3"
    }
}

func checkListenerRun(_ bytes: [UInt8]) -> String? {
    let interface = InterfaceName("fz0")!
    var listeners = Listeners()
    var now = Instant.zero
    let quick = ListenerConfiguration(queryInterval: .seconds(4), queryResponseInterval: .seconds(1))
    listeners.handle(.start(interface, .ipv4, address: .v4(IPv4Address(10, 0, 0, 5)), configuration: quick), now: now)
    listeners.handle(.start(interface, .ipv6, address: .v6(IPv6Address(0xFE80, 0, 0, 0, 0, 0, 0, 5)), configuration: quick), now: now)
    var index = 0
    var frames = 0
    while index + 2 <= bytes.count {
        let length = Int(bytes[index]) + 14, delay = bytes[index + 1]
        index += 2
        let frame = Array(bytes[index..<min(index + length, bytes.count)])
        index += length
        let target = now + .milliseconds(100 * Int(delay))
        // As a driver does: fire every deadline on the way, then deliver the frame.
        while let deadline = listeners.nextDeadline, deadline <= target {
            now = max(now, deadline)
            listeners.handle(.timerFired, now: now)
        }
        now = target
        listeners.handle(.frame(interface, frame), now: now)
        frames += 1
        checkListenerInvariants(listeners, now: now)
        while listeners.poll() != nil {}
    }
    return "\(frames) frames, \(listeners.groupStatus.count) groups"
}

func checkListenerInvariants(_ listeners: Listeners, now: Instant) {
    if let deadline = listeners.nextDeadline { require(deadline > now, "deadline \(deadline) not after \(now)") }
    for status in listeners.interfaceStatus {
        require(!status.isQuerier || status.querier == status.address, "a querier names itself: \(status)")
        require(status.isQuerier == (status.otherQuerierExpiry == nil), "querier iff no other querier timer: \(status)")
    }
    for group in listeners.groupStatus {
        require(group.mode == .include || group.expiry != nil, "EXCLUDE runs a group timer: \(group)")
        require(group.mode == .exclude || !group.sources.isEmpty, "an INCLUDE record has sources: \(group)")
        for source in group.sources {
            require(listeners.wants(interface: group.interface, source: source.address, group: group.group) == source.forwarded,
                    "the operator's view agrees with wants: \(group)")
            if let expiry = source.expiry { require(expiry > now, "a running source timer is in the future: \(group)") }
        }
    }
}
