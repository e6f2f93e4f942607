import SyncEngine
import SyncState

/// The archive being written, as the NEAR side of a `.pull` sync: `ferrymail
/// backup` is the ordinary engine copying far → near into this store.
///
/// ```swift
/// let state = try StateStore.inMemory()           // a fresh state per backup run
/// let archive = try ArchiveWriterStore(output: path, account: name, previous: chain, sourceState: state)
/// let engine = SyncEngine(account: name, state: state, far: imapFactory, near: { archive },
///                         options: SyncOptions(direction: .pull))
/// let report = try await engine.run()
/// if report.succeeded { summary = try await archive.finish() } else { await archive.abandon() }
/// ```
///
/// - Keys are `.name(<tar path>)`; messages of earlier archives of the chain
///   (incremental) are `.name("<archive id>:<tar path>")`.
/// - The engine pairs far messages with earlier archives' messages by
///   Message-ID + size + date (its first-sync rule), so an incremental
///   backup does not even download them. A copied message whose SHA-256
///   equals an earlier archive's message in the same folder (e.g. one
///   without Message-ID) is not stored again either: `finish()` of its
///   append returns the earlier key.
/// - Flag changes the engine makes to earlier archives' messages (additions
///   since the last backup; the engine's first-pairing merge is a union) are
///   recorded as `flags` records, which restore applies.
/// - A fresh state per run is expected: with a state kept across runs the
///   engine would plan expunges for messages deleted on the server, which an
///   append-only archive refuses.
/// - Appends are spooled and committed whole (see `MessageSpool`), so
///   parallel mailboxes never interleave tar entries and an abandoned append
///   leaves no trace.
/// - `close()` does nothing: the engine closes every handle, even after a
///   failed run; only `finish()` publishes the archive.
public actor ArchiveWriterStore: MailStore {
    public nonisolated let capabilities = StoreCapabilities(keyKind: .name, move: false, keysSurviveMove: true, keywords: true)
    /// The final path of the archive.
    public nonisolated let path: String
    public nonisolated let id: String
    public nonisolated let account: String

    private struct Earlier {
        var archive: String
        var path: String
    }

    private struct OpenAppend {
        var spool: MessageSpool
        var mailbox: String
        var envelope: AppendEnvelope
    }

    private let writer: ArchiveWriter
    private var roles: [String: SpecialUse?] = [:]
    private var listing: [String: [MessageKey: MessageInfo]] = [:]
    private var earlier: [MessageKey: Earlier] = [:]
    /// Earlier archives' messages not yet matched, by folder + SHA-256.
    private var earlierByContent: [String: [MessageKey]] = [:]
    private var appends: [Int: OpenAppend] = [:]
    private var nextAppend = 0
    private let sourceState: StateStore?
    private var sourceCache: [String: (uidValidity: UInt32?, uid: UInt32)] = [:]
    /// Messages stored (or matched) by this run.
    public private(set) var archivedCount = 0

    /// - Parameters:
    ///   - output: the final archive path (must not exist).
    ///   - account: the account name, as the engine runs it.
    ///   - previous: the verified chain this archive continues (incremental);
    ///     its ids are recorded as `previous`.
    ///   - sourceState: the state the engine runs with; lets the manifest
    ///     record each message's source UIDVALIDITY/UID from the engine's
    ///     journal. Optional: without it those fields are omitted.
    public init(output: String, account: String, previous: ArchiveChain? = nil, sourceState: StateStore? = nil,
                options: ArchiveWriterOptions = ArchiveWriterOptions()) throws(ArchiveError) {
        if let previous, previous.account != account {
            throw .chainBroken(archive: output, cause: "the previous archives belong to account \(previous.account), not \(account)")
        }
        let writer = try ArchiveWriter(path: output, account: account, previous: previous?.ids ?? [], options: options)
        var roles: [String: SpecialUse?] = [:]
        var listing: [String: [MessageKey: MessageInfo]] = [:]
        var earlier: [MessageKey: Earlier] = [:]
        var earlierByContent: [String: [MessageKey]] = [:]
        if let previous {
            for folder in previous.folders.values.sorted(by: { $0.name < $1.name }) {
                try writer.addFolder(folder.name, role: folder.role)
                roles[folder.name] = folder.role
                var messages: [MessageKey: MessageInfo] = [:]
                for message in folder.messages {
                    let archiveId = previous.archives[message.archiveIndex].header.id
                    let key = MessageKey.name(archiveId + ":" + message.path)
                    messages[key] = MessageInfo(key: key, flags: message.flags, size: message.size,
                                                internalDate: message.internalDate, messageId: message.messageId)
                    earlier[key] = Earlier(archive: archiveId, path: message.path)
                    earlierByContent[folder.name + "\u{0}" + message.sha256, default: []].append(key)
                }
                listing[folder.name] = messages
            }
        }
        self.roles = roles
        self.listing = listing
        self.earlier = earlier
        self.earlierByContent = earlierByContent
        self.writer = writer
        self.path = output
        self.id = writer.id
        self.account = account
        self.sourceState = sourceState
    }

    /// Writes the manifest and publishes the archive under its final name.
    public func finish() throws(ArchiveError) -> ArchiveSummary {
        appends = [:]
        return try writer.finish()
    }

    /// Drops the partial archive (a failed or cancelled backup).
    public func abandon() {
        appends = [:]
        writer.abandon()
    }

    // MARK: - MailStore

    public func listMailboxes() async throws -> [MailboxInfo] {
        roles.keys.sorted().map { MailboxInfo(name: $0, role: roles[$0] ?? nil, delimiter: "/") }
    }

    public func createMailbox(_ name: String, role: SpecialUse?) async throws {
        try writer.addFolder(name, role: role)
        if roles[name] == nil { roles[name] = role }
        if listing[name] == nil { listing[name] = [:] }
    }

    public func deleteMailbox(_ name: String) async throws {
        throw ArchiveError.unsupported(archive: path, operation: "deleting folder \(name)",
                                       reason: "an archive is append-only; back up with direction .pull and a fresh state")
    }

    public func select(_ mailbox: String) async throws -> MailboxStatus {
        let messages = try folder(mailbox)
        return MailboxStatus(messageCount: messages.count)
    }

    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        .full(try folder(mailbox).values.sorted { $0.key < $1.key })
    }

    public func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        let messages = try folder(mailbox)
        var result: [MessageKey: String] = [:]
        for key in keys { if let id = messages[key]?.messageId { result[key] = id } }
        return result
    }

    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        throw ArchiveError.unsupported(archive: path, operation: "reading messages from \(mailbox)",
                                       reason: "the archive being written is write-only; read the finished archive with ArchiveReaderStore")
    }

    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        _ = try folder(mailbox)
        let source = self.source(of: envelope.transferId, mailbox: mailbox)
        let metadata = MessageMetadata(folder: mailbox, flags: envelope.flags, internalDate: envelope.internalDate,
                                       size: envelope.size, messageId: envelope.messageId,
                                       sourceUidValidity: source?.uidValidity, sourceUid: source?.uid)
        let spool = try writer.beginMessage(metadata)
        nextAppend += 1
        appends[nextAppend] = OpenAppend(spool: spool, mailbox: mailbox, envelope: envelope)
        return ArchiveAppendWriter(store: self, id: nextAppend)
    }

    public func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {
        _ = try folder(mailbox)
        for change in changes {
            for key in change.keys {
                guard var info = listing[mailbox]?[key] else { continue }
                let kept = info.flags.names.filter { !change.remove.contains($0) }
                info.flags = MessageFlags(kept + change.add.names)
                let (archive, entryPath) = location(of: key)
                try writer.recordFlags(archive: archive, folder: mailbox, path: entryPath, flags: info.flags)
                listing[mailbox]?[key] = info
            }
        }
    }

    public func expunge(_ keys: [MessageKey], in mailbox: String) async throws {
        throw ArchiveError.unsupported(archive: path, operation: "expunging \(keys.count) messages from \(mailbox)",
                                       reason: "an archive is append-only; back up with direction .pull and a fresh state (a kept state plans deletions)")
    }

    public func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        throw ArchiveError.unsupported(archive: path, operation: "moving messages from \(source) to \(destination)",
                                       reason: "an archive is append-only")
    }

    /// The archive becomes durable as a whole in `finish()` (fsync, rename);
    /// until then nothing in it counts, so there is nothing to flush per batch.
    public func flush(_ mailbox: String) async throws {}

    public func close() async {}

    // MARK: - Appends

    func appendWrite(_ id: Int, _ chunk: [UInt8]) throws {
        guard let append = appends[id] else { throw ArchiveError.closed(archive: path) }
        try append.spool.write(chunk)
    }

    func appendFinish(_ id: Int) throws -> MessageKey? {
        guard let append = appends.removeValue(forKey: id) else { throw ArchiveError.closed(archive: path) }
        let mailbox = append.mailbox
        guard append.spool.received == append.envelope.size else {
            throw ArchiveError.sizeMismatch(archive: path, folder: mailbox, announced: append.envelope.size, received: append.spool.received)
        }
        let contentKey = mailbox + "\u{0}" + append.spool.sha256
        if var candidates = earlierByContent[contentKey], !candidates.isEmpty {
            // Already in an earlier archive of the chain: keep the bytes
            // there, record only a flag change.
            let key = candidates.removeFirst()
            earlierByContent[contentKey] = candidates
            if var info = listing[mailbox]?[key], FlagsComparison.differ(info.flags, append.envelope.flags) {
                let (archive, entryPath) = location(of: key)
                try writer.recordFlags(archive: archive, folder: mailbox, path: entryPath, flags: append.envelope.flags)
                info.flags = append.envelope.flags
                listing[mailbox]?[key] = info
            }
            archivedCount += 1
            return key
        }
        let archived = try writer.commit(append.spool)
        let key = MessageKey.name(archived.path)
        listing[mailbox, default: [:]][key] = MessageInfo(
            key: key, flags: append.envelope.flags, size: archived.size, internalDate: append.envelope.internalDate,
            messageId: append.envelope.messageId, transferId: append.envelope.transferId)
        archivedCount += 1
        return key
    }

    func appendCancel(_ id: Int) {
        appends[id] = nil
    }

    // MARK: - Helpers

    private func folder(_ name: String) throws -> [MessageKey: MessageInfo] {
        guard let messages = listing[name] else { throw ArchiveError.noSuchFolder(archive: path, folder: name) }
        return messages
    }

    private func location(of key: MessageKey) -> (archive: String, path: String) {
        if let earlier = earlier[key] { return (earlier.archive, earlier.path) }
        guard case .name(let entryPath) = key else { return (id, key.description) }
        return (id, entryPath)
    }

    /// The far UID the engine journaled for this copy. Informational only:
    /// a failed lookup never fails the backup.
    private func source(of transferId: String, mailbox: String) -> (uidValidity: UInt32?, uid: UInt32)? {
        guard let state = sourceState else { return nil }
        if let hit = sourceCache.removeValue(forKey: transferId) { return hit }
        guard let accountRecord = try? state.account(named: account), let accountId = accountRecord.id,
              let pairs = try? state.mailboxPairs(account: accountId),
              let pair = pairs.first(where: { $0.nearName == mailbox }), let pairId = pair.id,
              let pending = try? state.pendingCopies(in: pairId) else { return nil }
        for record in pending where record.status == .pendingToNear {
            if let transfer = record.transferId, let uid = record.farUid {
                sourceCache[transfer] = (pair.farUidValidity, uid)
            }
        }
        return sourceCache.removeValue(forKey: transferId)
    }
}

/// Flag sets compared the way IMAP does: system flags case-insensitively,
/// `\Recent` ignored.
enum FlagsComparison {
    static func differ(_ a: MessageFlags, _ b: MessageFlags) -> Bool {
        FlagMerge.normalized(a) != FlagMerge.normalized(b)
    }
}

/// One append into the archive being written; forwards to the store actor,
/// which owns the spool.
struct ArchiveAppendWriter: AppendWriter {
    let store: ArchiveWriterStore
    let id: Int

    func write(_ chunk: [UInt8]) async throws {
        try await store.appendWrite(id, chunk)
    }

    func finish() async throws -> MessageKey? {
        try await store.appendFinish(id)
    }

    func cancel() async {
        await store.appendCancel(id)
    }
}
