import Synchronization

/// A one-way "stop now" flag that tasks can also await: set once by a
/// graceful shutdown or a reload removing the account, observed by every
/// loop of a supervisor.
final class StopSignal: Sendable {
    private struct State {
        var stopped = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())

    var isStopped: Bool { state.withLock { $0.stopped } }

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.stopped else { return [] }
            state.stopped = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when stopped or when the calling task is cancelled.
    func wait() async {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.stopped || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }

    /// Sleeps for `duration` unless stopped first. Returns true when stopped.
    func sleep(for duration: Duration) async -> Bool {
        if isStopped { return true }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.wait() }
            await group.next()
            group.cancelAll()
        }
        return isStopped
    }
}

/// The mailbox of one account supervisor: watchers post, the supervisor's
/// loop drains. Unbounded, but every producer is rate-limited (debounced
/// inotify batches, one event per IMAP notification burst, a 10 s clock tick).
final class EventInbox<Event: Sendable>: Sendable {
    private struct State {
        var buffer: [Event] = []
        var nextID = 0
        var waiter: (id: Int, continuation: CheckedContinuation<Void, Never>)?
    }
    private let state = Mutex(State())

    func post(_ event: Event) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.buffer.append(event)
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume()
    }

    func drain() -> [Event] {
        state.withLock { state in
            defer { state.buffer = [] }
            return state.buffer
        }
    }

    /// Returns when an event is buffered, `deadline` has passed or the task
    /// is cancelled. Single consumer.
    func wait(until deadline: DaemonInstant?) async {
        if state.withLock({ !$0.buffer.isEmpty }) { return }
        if let deadline, deadline <= .now { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForEvent() }
            if let deadline {
                group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForEvent() async {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if !state.buffer.isEmpty || Task.isCancelled { return true }
                    state.waiter = (id, continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard let waiter = state.waiter, waiter.id == id else { return nil }
                state.waiter = nil
                return waiter.continuation
            }
            waiter?.resume()
        }
    }
}
