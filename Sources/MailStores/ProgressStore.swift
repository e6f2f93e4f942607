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
    }

    private var snapshot = Snapshot()
    private let start = ContinuousClock.now

    public init() {}

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
public struct ProgressStore: MailStore {
    public let inner: any MailStore
    let progress: TransferProgress
    /// True when this store is the near (local) side: its appends are downloads.
    let isNear: Bool

    public init(_ inner: any MailStore, progress: TransferProgress, isNear: Bool) {
        self.inner = inner
        self.progress = progress
        self.isNear = isNear
    }

    public var capabilities: StoreCapabilities { inner.capabilities }
    public func listMailboxes() async throws -> [MailboxInfo] { try await inner.listMailboxes() }
    public func createMailbox(_ name: String, role: SpecialUse?) async throws { try await inner.createMailbox(name, role: role) }
    public func deleteMailbox(_ name: String) async throws { try await inner.deleteMailbox(name) }
    public func select(_ mailbox: String) async throws -> MailboxStatus { try await inner.select(mailbox) }
    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        try await inner.messages(in: mailbox, changedSince: watermark)
    }
    public func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        try await inner.messageIds(for: keys, in: mailbox)
    }
    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        try await inner.fetch(keys, in: mailbox, into: sink)
    }
    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        CountingAppendWriter(inner: try await inner.beginAppend(to: mailbox, envelope), size: envelope.size,
                             progress: progress, toNear: isNear)
    }
    public func setFlags(_ changes: [FlagChange], in mailbox: String) async throws { try await inner.setFlags(changes, in: mailbox) }
    public func expunge(_ keys: [MessageKey], in mailbox: String) async throws { try await inner.expunge(keys, in: mailbox) }
    public func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        try await inner.move(keys, from: source, to: destination)
    }
    public func flush(_ mailbox: String) async throws { try await inner.flush(mailbox) }
    public func close() async { await inner.close() }
}

struct CountingAppendWriter: AppendWriter {
    let inner: any AppendWriter
    let size: Int64
    let progress: TransferProgress
    let toNear: Bool

    func write(_ chunk: [UInt8]) async throws { try await inner.write(chunk) }
    func finish() async throws -> MessageKey? {
        let key = try await inner.finish()
        await progress.finished(bytes: size, toNear: toNear)
        return key
    }
    func cancel() async { await inner.cancel() }
}
