import RelayControl
import RelayCore

/// The IGMP/MLD router on the receivers' side: the core's `Listeners` decides, the
/// `ListenerDriver` reads and writes the wire; here the two are connected.
extension Supervisor {
    /// Applies `querierSettings` (at start and after a reload that changed them).
    func configureListeners(now: Instant) {
        for event in listenerDriver.configure(querierSettings, now: now) { core.handle(.listener(event), now: now) }
        refreshListeners(now: now)
        if !querierSettings.isEmpty {
            let where_ = querierSettings.map { "\($0.interface) (\($0.families.map(\.rawValue).joined(separator: ", ")))" }
            logger.info("IGMP/MLD router on \(where_.joined(separator: ", "))")
        }
    }

    /// Re-reads the querier interfaces (taps, addresses) and tells the core what changed.
    func refreshListeners(now: Instant) {
        let (events, problems) = listenerDriver.refresh(now: now)
        for problem in problems { logger.warning("\(problem)") }
        for event in events { core.handle(.listener(event), now: now) }
        if !events.isEmpty { apply(now: now) }
    }

    func listenerFramesReady(_ interface: InterfaceName, now: Instant) {
        let (events, problem) = listenerDriver.read(interface)
        if let problem { logger.warning("\(problem)") }
        for event in events { core.handle(.listener(event), now: now) }
        if !events.isEmpty { apply(now: now) }
    }

    func execute(_ action: ListenerAction) {
        switch action {
        case let .send(transmit):
            if let problem = listenerDriver.send(transmit) { logger.warning("\(problem)") }
        case let .querierChanged(interface, family, querier, isSelf):
            let protocolName = family == .ipv4 ? "IGMP" : "MLD"
            if isSelf {
                logger.notice("\(protocolName) on \(interface): this relay is the querier (\(querier?.description ?? "?"))")
            } else {
                logger.notice("\(protocolName) on \(interface): querier is \(querier?.description ?? "unknown")")
            }
        case let .listenersChanged(interface, group):
            logger.debug("listeners of \(group) on \(interface) changed")
        }
    }

    func listenersView(now: Instant) -> ListenersView {
        let held = Set(core.membership.joined)
        return ListenersView(interfaces: core.listeners.interfaceStatus.map { ListenersView.Interface($0, now: now) },
                             groups: core.listeners.groupStatus.map { ListenersView.Group($0, now: now) },
                             proxy: core.proxies.joins.keys.sorted().map { ListenersView.ProxyJoin($0, core.proxies.joins[$0]!, held: held) })
    }
}
