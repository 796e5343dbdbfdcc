#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import RelayControl
import RelayCore

/// Reads the input devices' own receive counters for `mcrelay stats` and the metrics endpoint
/// (`LinkCounters` builds and reads the bytes): one RTM_GETLINK per input on a short-lived
/// rtnetlink socket (`NetlinkSocket`), in the daemon's network namespace. A frame a device
/// dropped never reached a worker or the XDP program, so these are the only place such a loss
/// shows.
enum InputDeviceCounters {
    static func read(_ interfaces: [String]) -> [InputDeviceView] {
        guard !interfaces.isEmpty else { return [] }
        let netlink: NetlinkSocket
        do { netlink = try NetlinkSocket(family: 0 /* NETLINK_ROUTE */, name: "NETLINK_ROUTE") }
        catch { return interfaces.map { InputDeviceView(interface: $0, problem: error.why) } }
        var sequence: UInt32 = 0
        return interfaces.map { name in
            let index = Int32(bitPattern: if_nametoindex(name))
            guard index > 0 else { return InputDeviceView(interface: name, problem: "no such interface") }
            sequence &+= 1
            let request = LinkCounters.request(ifindex: index, sequence: sequence)
            if let why = netlink.send(request) { return InputDeviceView(interface: name, problem: why) }
            let answer: ArraySlice<UInt8>
            switch netlink.receive() {
            case let .success(bytes): answer = bytes
            case let .failure(failure): return InputDeviceView(interface: name, problem: failure.why)
            }
            switch LinkCounters.parse(answer, ifindex: index) {
            case let .success(.counters(counters)):
                return InputDeviceView(interface: name, received: counters.packets, dropped: counters.dropped, missed: counters.missed,
                                       overruns: counters.overruns, fifo: counters.fifo, errors: counters.errors)
            case let .success(.refused(errno: code)):
                return InputDeviceView(interface: name, problem: "the kernel refused: \(SystemError.message(for: code))")
            case let .failure(problem):
                return InputDeviceView(interface: name, problem: "the kernel's answer: \(problem.message)")
            }
        }
    }
}
