import CLinuxNet
import Glibc

/// Network namespaces per thread: `setns(CLONE_NEWNET)` moves only the calling thread, so a
/// worker can run on a dedicated thread inside a lab namespace while the rest of the process
/// (a test runner) stays where it is. Never call this on a shared (cooperative pool) thread.
public enum NetworkNamespaceThread {
    /// Moves the calling thread into the namespace `ip netns add NAME` created.
    public static func enter(named name: String) throws(DataPlaneSystemError) {
        let path = "/var/run/netns/\(name)"
        let result = ldp_enter_network_namespace(path)
        guard result == 0 else { throw DataPlaneSystemError("setns(CLONE_NEWNET)", path, code: -result) }
    }
}
