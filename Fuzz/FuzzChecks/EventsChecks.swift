import RelayCore
import Sim

/// Fuzz target `events`: the input is a simulator events file (`mcrelay sim --events`).
///
/// Properties: `EventScript.parse` either returns events or throws a `SimError` with a message
/// (never traps); events come back ordered by time; `serialize` writes text that parses back
/// to the same events and serializes to the same text again.
/// Returns the number of events (nil: refused), for tests of the seeds.
@discardableResult
public func checkEvents(_ input: UnsafeRawBufferPointer) -> Int? {
    let text = String(decoding: input, as: UTF8.self)
    let events: [ScriptedEvent]
    do {
        events = try EventScript.parse(text, origin: "fuzz.events")
    } catch {
        require(!error.description.isEmpty, "events refusal has a message")
        return nil
    }
    require(zip(events, events.dropFirst()).allSatisfy { $0.at <= $1.at }, "events are ordered by time")
    let serialized = EventScript.serialize(events)
    do {
        let again = try EventScript.parse(serialized, origin: "serialized")
        require(again == events, "serialize/parse round trip changed the events:\n\(serialized)")
        require(EventScript.serialize(again) == serialized, "serialize is stable")
    } catch {
        fuzzFailure("serialize() output does not parse: \(error)\n\(serialized)")
    }
    return events.count
}
