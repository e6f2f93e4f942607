import Foundation
import SyncEngine

/// Counts what a run moves, for the progress line `ferrymail sync` and
/// `restore` show on a terminal: messages and bytes per direction. Shared by
/// every store handle of one account.
public actor TransferProgress {
    public struct Snapshot: Sendable {
        public var downloaded = 0
        public var uploaded = 0
        public var bytes: Int64 = 0
        public var elapsed: Duration = .zero
        /// Messages and bytes the plans of the mailboxes started so far
        /// hold; 0 until the first plan is known.
        public var plannedMessages = 0
        public var plannedBytes: Int64 = 0

        /// Time left at the average rate so far, or nil while nothing is
        /// known to be left or nothing has moved yet.
        public var remaining: Duration? {
            let left = plannedBytes - bytes
            guard left > 0, bytes > 0, elapsed > .zero else { return nil }
            return elapsed * (Double(left) / Double(bytes))
        }
    }

    private var snapshot = Snapshot()
    private let start = ContinuousClock.now

    public init() {}

    /// For `SyncEngine`'s plan observer.
    public nonisolated func observe(_ planned: PlannedTransfers) {
        Task { await self.add(planned) }
    }

    private func add(_ planned: PlannedTransfers) {
        snapshot.plannedMessages += planned.messages.far + planned.messages.near
        snapshot.plannedBytes += planned.bytes.far + planned.bytes.near
    }

    func finished(bytes: Int64, toNear: Bool) {
        if toNear { snapshot.downloaded += 1 } else { snapshot.uploaded += 1 }
        snapshot.bytes += bytes
    }

    public func current() -> Snapshot {
        var copy = snapshot
        copy.elapsed = start.duration(to: .now)
        return copy
    }
}

/// Wraps a store to count every finished append (a message copied onto this
/// side). Forwards everything else untouched.
public struct ProgressStore: MailStoreDecorator {
    public let inner: any MailStore
    let progress: TransferProgress
    /// True when this store is the near (local) side: its appends are downloads.
    let isNear: Bool

    public init(_ inner: any MailStore, progress: TransferProgress, isNear: Bool) {
        self.inner = inner
        self.progress = progress
        self.isNear = isNear
    }

    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        CountingAppendWriter(inner: try await inner.beginAppend(to: mailbox, envelope), size: envelope.size,
                             progress: progress, toNear: isNear)
    }
}

struct CountingAppendWriter: AppendWriter {
    let inner: any AppendWriter
    let size: Int64
    let progress: TransferProgress
    let toNear: Bool

    func write(_ chunk: [UInt8]) async throws { try await inner.write(chunk) }
    func endBody() async throws { try await inner.endBody() }
    func finish() async throws -> MessageKey? {
        let key = try await inner.finish()
        await progress.finished(bytes: size, toNear: toNear)
        return key
    }
    func cancel() async { await inner.cancel() }
}
