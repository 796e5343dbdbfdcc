import Glibc
import CLinuxNet
import RelayControl
import RelayCore

/// Ingress sockets of a worker: opening (with retries every 500 ms while an interface is
/// missing or down), arming io_uring receives, closing, and reacting to receive errors.
extension DataPlaneWorker {
    func armInputs() {
        guard let uring else { return }
        for index in inputs.indices {
            guard !inputs[index].armed, let socket = inputs[index].socket else { continue }
            uring.arm(socket: socket.fd, token: inputs[index].token)
            inputs[index].armed = true
            needsSubmit = true
        }
    }

    func open(input index: Int, now: Int64) {
        let assignment = inputs[index].assignment
        do {
            let socket = try IngressSocket.open(interface: assignment.interface, fanoutGroup: assignment.fanoutGroup,
                                                receiveBufferBytes: receiveBufferBytes)
            inputs[index].socket = socket
            inputs[index].token = nextToken
            nextToken &+= 1
            inputs[index].armed = false
            inputs[index].lastProblem = nil
            pollDirty = true
            armInputs()
        } catch {
            inputs[index].nextRetry = now + Self.retryIntervalMilliseconds
            let text = "\(error) (retrying every \(Self.retryIntervalMilliseconds) ms)"
            if inputs[index].lastProblem != text {
                inputs[index].lastProblem = text
                report(text)
            }
        }
    }

    func retryInputs(now: Int64) {
        for index in inputs.indices where inputs[index].socket == nil && now >= inputs[index].nextRetry {
            open(input: index, now: now)
        }
    }

    /// The supervisor saw `interface` become usable: inputs on it that have no socket, and the
    /// egress sockets of it that are missing or stale, are retried on this loop turn (the loop
    /// runs `retryTimers()` after servicing the channel) rather than when their timers are due.
    func linkUp(_ interface: InterfaceName) {
        let now = DataPlaneClock.milliseconds()
        for index in inputs.indices where inputs[index].socket == nil && inputs[index].assignment.interface == interface {
            inputs[index].nextRetry = now
        }
        pool.linkUp(interface, now: now)
    }

    func closeInput(_ index: Int) {
        guard let socket = inputs[index].socket else { return }
        if let uring, inputs[index].armed {
            uring.cancel(token: inputs[index].token)
            needsSubmit = true
        }
        socket.close()
        inputs[index].socket = nil
        inputs[index].armed = false
        pollDirty = true
    }

    func closeAllInputs() {
        for index in inputs.indices { closeInput(index) }
        if needsSubmit, let uring { _ = uring.submit() }
        needsSubmit = false
    }

    /// A receive failed. ENETDOWN on an interface that still has the same index means it went
    /// down: the socket resumes by itself when it comes back up. Anything else (the interface
    /// was deleted or re-created) closes the socket; the retry timer reopens it by name.
    func inputFailed(_ index: Int, code: Int32) {
        guard let socket = inputs[index].socket else { return }
        let name = "input interface \(socket.interface)"
        if code == ENETDOWN, socket.currentInterfaceIndex() == socket.interfaceIndex {
            let text = "\(name) is down; waiting for it to come back"
            if inputs[index].lastProblem != text {
                inputs[index].lastProblem = text
                report(text)
            }
            return
        }
        closeInput(index)
        inputs[index].nextRetry = 0
        let text = "\(DataPlaneSystemError("recv", name, code: code)); reopening"
        inputs[index].lastProblem = text
        report(text)
    }
}
