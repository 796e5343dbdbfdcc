import RelayControl
import RelayCore

/// Fuzz target `control`: the input is one line of the control protocol, decoded both as a
/// request (what the daemon reads from clients) and as a reply (what the client reads).
///
/// Properties: decoding never traps and a refusal has a message; a decoded message encodes
/// to exactly one line (no raw newline inside: the protocol is line-framed) that decodes back
/// to an equal message and re-encodes to the same bytes; a request's rule text either becomes
/// a `RuleSpec` whose own text form parses back to it, or is refused with a message.
/// Returns whether the line was a valid request (for tests of the seeds).
@discardableResult
public func checkControl(_ input: UnsafeRawBufferPointer) -> Bool {
    let line = Array(input)
    let newline = UInt8(ascii: "\n")

    var validRequest = false
    switch ControlProtocol.decodeRequest(line) {
    case let .failure(error):
        require(!error.message.isEmpty, "request refusal has a message")
    case let .success(request):
        validRequest = true
        let encoded = ControlProtocol.encodeLine(request)
        require(encoded.last == newline && !encoded.dropLast().contains(newline), "a request encodes to one line")
        require(ControlProtocol.decodeRequest(encoded.dropLast()) == .success(request), "request round trip")
        require(ControlProtocol.encodeLine(request) == encoded, "request encoding is deterministic")
        if let rule = request.rule {
            do {
                let spec = try rule.spec()
                require((try? RuleText(spec).spec()) == spec, "a rule's text form parses back to the same spec")
            } catch {
                require(!error.message.isEmpty, "rule refusal has a message")
            }
        }
    }

    do {
        let reply = try ControlProtocol.decodeReply(line)
        let encoded = ControlProtocol.encodeLine(reply)
        require(encoded.last == newline && !encoded.dropLast().contains(newline), "a reply encodes to one line")
        do {
            require(try ControlProtocol.decodeReply(encoded.dropLast()) == reply, "reply round trip")
        } catch {
            fuzzFailure("an encoded reply does not decode: \(error)")
        }
    } catch {
        require(!error.message.isEmpty, "reply refusal has a message")
    }
    return validRequest
}
