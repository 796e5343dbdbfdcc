import Foundation
#if canImport(Glibc)
import Glibc
#endif
import LinuxIO

/// Runs `body` on a new thread that first enters network namespace `namespace`; `join` waits for
/// it. The namespace is the thread's own, so the test runner is unaffected.
final class NamespaceThread<Result>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Swift.Result<Result, any Error>?

    init(namespace: String, _ body: @escaping @Sendable () throws -> Result) {
        let thread = Thread { [self] in
            do {
                try NetworkNamespaceThread.enter(named: namespace)
                result = .success(try body())
            } catch {
                result = .failure(error)
            }
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    func join(timeout: Double = 30) throws -> Result {
        guard done.wait(timeout: .now() + timeout) == .success else {
            throw HarnessError("namespace thread did not finish within \(timeout) s")
        }
        return try result!.get()
    }
}

/// Runs `body` on a thread inside `namespace` and waits for it (30 s at most).
func inNamespace<T>(_ namespace: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
    try NamespaceThread(namespace: namespace, body).join()
}
