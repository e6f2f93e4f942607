import IMAPClient
import Synchronization

/// Keeps one `IMAPConnection` open beyond a single closure.
///
/// `IMAPConnection.withConnection` scopes a session to its body, which is
/// right for one-shot commands but not for a store the engine holds for a
/// whole run. This runs `withConnection` in a task whose body parks until
/// `close()`, and hands the connection out; the session's reader and
/// watchdog tasks stay structured under that task, and `close()` logs out
/// and waits for them to end. No change to the client was needed.
final class IMAPSession: Sendable {
    /// Holds the task that runs `withConnection`, so `close()` can await it.
    private final class Runner: Sendable {
        let task = Mutex<Task<Void, Never>?>(nil)
        /// The connection reached the opener; later failures are not its.
        let handedOut = Mutex(false)
    }

    let connection: IMAPConnection
    private let release: AsyncStream<Never>.Continuation
    private let runner: Runner

    private init(connection: IMAPConnection, release: AsyncStream<Never>.Continuation, runner: Runner) {
        self.connection = connection
        self.release = release
        self.runner = runner
    }

    /// Connects, authenticates and configures; throws what `withConnection` throws.
    static func open(_ configuration: IMAPConfiguration) async throws -> IMAPSession {
        let (parked, release) = AsyncStream<Never>.makeStream()
        let runner = Runner()
        return try await withCheckedThrowingContinuation { continuation in
            let task = Task<Void, Never> {
                do {
                    try await IMAPConnection.withConnection(configuration: configuration) { connection in
                        runner.handedOut.withLock { $0 = true }
                        continuation.resume(returning: IMAPSession(connection: connection, release: release, runner: runner))
                        for await _ in parked {}
                    }
                } catch {
                    // Only a failure before the connection was handed out is
                    // the opener's; a later one surfaces on the next command.
                    if !runner.handedOut.withLock({ $0 }) { continuation.resume(throwing: error) }
                }
            }
            runner.task.withLock { $0 = task }
        }
    }

    /// Logs out and waits until the session's tasks have ended.
    func close() async {
        release.finish()
        await runner.task.withLock { $0 }?.value
    }
}
