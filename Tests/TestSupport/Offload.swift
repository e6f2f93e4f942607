import Foundation

/// Runs blocking work (helper processes, bulk file I/O, `waitpid`) on a dedicated thread and
/// awaits its result.
///
/// Swift's cooperative pool has one thread per core – two on CI – so a test that blocks inside
/// an `async` function (e.g. `seedMaildir` of 20,000 messages, or `restart`) stalls every other
/// test running in parallel. Wrap such calls: `try await offloadBlocking { try server.restart() }`.
public func offloadBlocking<Result: Sendable>(
    _ body: @escaping @Sendable () throws -> Result
) async throws -> Result {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Swift.Result { try body() })
        }
        thread.name = "TestSupport.offloadBlocking"
        thread.start()
    }
}
