import Synchronization
import SyncEngine

/// Set once when the daemon stops; consulted before every store operation.
final class StopGate: Sendable {
    private let closed = Atomic<Bool>(false)

    var isClosed: Bool { closed.load(ordering: .acquiring) }

    func close() { closed.store(true, ordering: .releasing) }

    func check(account: String) throws(ServiceError) {
        if isClosed { throw .stopping(account: account) }
    }
}

/// The daemon's decorator around each store handle the engine gets.
///
/// **Graceful stop.** Once the gate closes, every *new* operation throws
/// `ServiceError.stopping`, while operations already running finish: a message
/// being downloaded is written to the end (the sink refuses only the *next*
/// `begin`), an append in flight completes. The engine then records the
/// failure per mailbox, commits what completed (its journal makes that safe),
/// skips the watermarks of unfinished mailboxes (so the next start redoes
/// them instead of skipping), and closes the handles, which logs out. No
/// engine change was needed to stop between messages.
///
/// **Full reconcile.** With `fullReconcile`, listing drops the cheap status
/// (so the engine cannot skip a mailbox as unchanged) and message listings
/// ignore the watermark (so QRESYNC/CONDSTORE deltas are replaced by a full
/// listing). That catches what notifications and mod-sequences can miss, such
/// as a server restored from backup with the same HIGHESTMODSEQ.
struct SupervisedStore: MailStore {
    let inner: any MailStore
    let gate: StopGate
    let account: String
    let fullReconcile: Bool

    var capabilities: StoreCapabilities { inner.capabilities }

    func listMailboxes() async throws -> [MailboxInfo] {
        try gate.check(account: account)
        let boxes = try await inner.listMailboxes()
        guard fullReconcile else { return boxes }
        return boxes.map { box in
            var box = box
            box.status = nil
            return box
        }
    }

    func createMailbox(_ name: String, role: SpecialUse?) async throws {
        try gate.check(account: account)
        try await inner.createMailbox(name, role: role)
    }

    func deleteMailbox(_ name: String) async throws {
        try gate.check(account: account)
        try await inner.deleteMailbox(name)
    }

    func select(_ mailbox: String) async throws -> MailboxStatus {
        try gate.check(account: account)
        return try await inner.select(mailbox)
    }

    func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        try gate.check(account: account)
        return try await inner.messages(in: mailbox, changedSince: fullReconcile ? nil : watermark)
    }

    func messages(in mailbox: String, changedSince watermark: SyncWatermark?, comparedWith recorded: RecordedMessages) async throws
        -> MessageListing {
        try gate.check(account: account)
        return try await inner.messages(in: mailbox, changedSince: fullReconcile ? nil : watermark, comparedWith: recorded)
    }

    func messages(in mailbox: String, after key: MessageKey?, limit: Int) async throws -> [MessageInfo]? {
        try gate.check(account: account)
        return try await inner.messages(in: mailbox, after: key, limit: limit)
    }

    func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        try gate.check(account: account)
        return try await inner.messageIds(for: keys, in: mailbox)
    }

    func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        try gate.check(account: account)
        try await inner.fetch(keys, in: mailbox, into: GatedSink(inner: sink, gate: gate, account: account))
    }

    func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        try gate.check(account: account)
        return try await inner.beginAppend(to: mailbox, envelope)
    }

    func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {
        try gate.check(account: account)
        try await inner.setFlags(changes, in: mailbox)
    }

    func expunge(_ keys: [MessageKey], in mailbox: String) async throws {
        try gate.check(account: account)
        try await inner.expunge(keys, in: mailbox)
    }

    func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        try gate.check(account: account)
        return try await inner.move(keys, from: source, to: destination)
    }

    /// Never gated: making the appends that did finish durable is exactly
    /// what a graceful stop must still do.
    func flush(_ mailbox: String) async throws { try await inner.flush(mailbox) }
    func settledStatus(of mailbox: String) async throws -> MailboxStatus? { try await inner.settledStatus(of: mailbox) }

    func close() async { await inner.close() }
}

/// Lets the message being received finish; refuses to start the next one
/// once the gate is closed.
struct GatedSink: MessageSink {
    let inner: any MessageSink
    let gate: StopGate
    let account: String

    func begin(_ key: MessageKey, size: Int64) async throws {
        try gate.check(account: account)
        try await inner.begin(key, size: size)
    }

    func write(_ chunk: [UInt8]) async throws { try await inner.write(chunk) }

    func end() async throws { try await inner.end() }
}
