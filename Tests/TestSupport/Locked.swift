import Foundation

/// A value whose every access is serialized by an `NSLock`.
///
/// `Synchronization.Mutex` would be the natural choice, but it is only available from macOS 15
/// while the package declares macOS 14, and this target is linked by the benchmark executable.
/// `@unchecked Sendable` is sound here because `value` is private and only ever touched inside
/// `withLock`, which holds `lock` for the whole closure, and `Value` itself must be `Sendable`
/// so nothing non-thread-safe can escape through the closure's result.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
