@testable import LinuxIO
import RelayControl
import Testing

/// `mcrelay doctor`'s finding on an input's receive ring and the frames its device lost (the
/// decision only; DoctorTests reads a real veth's).
@Suite struct DoctorRingTests {
    func finding(ring: (pending: UInt32, maximum: UInt32)?, driver: String = "ixgbe", _ device: InputDeviceView?) -> HostDoctor.Finding {
        HostDoctor.ringFinding(subject: "input eth0", name: "eth0", ring: ring, driver: driver, device: device)
    }

    @Test func aRingBelowItsMaximumIsSaidWithTheFixAndLossMakesItAWarning() {
        let quiet = finding(ring: (512, 4096), InputDeviceView(interface: "eth0", received: 10))
        #expect(quiet.severity == .info && quiet.fix == "ethtool -G eth0 rx 4096")
        #expect(quiet.message.contains("receive ring of 512 frames, at most 4096") && quiet.message.contains("no frames lost at the device"))
        let losing = finding(ring: (512, 4096), InputDeviceView(interface: "eth0", received: 10, dropped: 2, missed: 40))
        #expect(losing.severity == .warning && losing.fix == "ethtool -G eth0 rx 4096")
        #expect(losing.message.contains("lost 42 frames") && losing.message.contains("dropped=2 missed=40"), "\(losing.message)")
    }

    @Test func aRingAtItsMaximumIsFineUnlessTheDeviceLoses() {
        #expect(finding(ring: (4096, 4096), InputDeviceView(interface: "eth0")).severity == .ok)
        let losing = finding(ring: (4096, 4096), InputDeviceView(interface: "eth0", fifo: 3))
        #expect(losing.severity == .warning && losing.fix?.contains("a CPU the workers do not use") == true && losing.message.contains("fifo=3"))
        // rx_errors (bad frames) are not frames lost for want of room
        #expect(finding(ring: (4096, 4096), InputDeviceView(interface: "eth0", errors: 9)).severity == .ok)
    }

    @Test func aDriverWithoutRingParametersAndUnreadCounters() {
        let veth = finding(ring: nil, driver: "veth", InputDeviceView(interface: "eth0"))
        #expect(veth.severity == .info && veth.message.hasPrefix("a veth's receive ring is fixed: 256 frames") && veth.fix == nil)
        let other = finding(ring: nil, InputDeviceView(interface: "eth0", problem: "no such interface"))
        #expect(other.severity == .info && other.message.contains("does not report its receive ring")
                && other.message.contains("its own counters not read (no such interface)"))
        #expect(finding(ring: nil, nil).message.contains("its own counters not read"))
    }
}
