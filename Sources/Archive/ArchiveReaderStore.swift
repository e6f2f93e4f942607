import Digest
import SyncEngine
import SyncState

/// A verified archive chain as the FAR side of a `.pull` sync: `ferrymail
/// restore` is the ordinary engine copying far → near from this store into
/// an IMAP account (or any store).
///
/// ```swift
/// let chain = try ArchiveChain.open(paths: paths)   // verifies everything first
/// let engine = SyncEngine(account: name, state: try StateStore.inMemory(),
///                         far: { ArchiveReaderStore(chain: chain) }, near: imapFactory,
///                         options: SyncOptions(direction: .pull))
/// ```
///
/// - Keys are UIDs, not tar paths: the engine's state keeps far keys in its
///   UID column (`StateColumns.farUid`). Message n (0-based, chain order) of
///   a folder is UID n+1; the UIDVALIDITY is derived from the chain's first
///   archive id and the folder name, so the numbering is the same every time
///   the same chain is opened (an interrupted restore resumes with a kept state).
/// - Read-only: every write throws.
/// - One instance per engine handle (the factory above makes a new one each
///   call): each keeps its own read position, so messages read in archive
///   order decompress the archive about once; a jump seeks to the gzip
///   member the manifest names.
/// - Every body's SHA-256 is checked again while it streams; a mismatch
///   (the file changed since it was verified) fails the fetch.
public actor ArchiveReaderStore: MailStore {
    public nonisolated let capabilities = StoreCapabilities(keyKind: .uid, move: false, keysSurviveMove: false, keywords: true)
    public nonisolated let chain: ArchiveChain
    private var readers: [Int: TarReader] = [:]

    public init(chain: ArchiveChain) {
        self.chain = chain
    }

    private var name: String { chain.archives.last?.path ?? "(empty chain)" }

    public func listMailboxes() async throws -> [MailboxInfo] {
        chain.folders.keys.sorted().map { MailboxInfo(name: $0, role: chain.folders[$0]?.role, delimiter: "/") }
    }

    public func createMailbox(_ name: String, role: SpecialUse?) async throws {
        throw readOnly("creating folder \(name)")
    }

    public func deleteMailbox(_ name: String) async throws {
        throw readOnly("deleting folder \(name)")
    }

    public func select(_ mailbox: String) async throws -> MailboxStatus {
        let folder = try self.folder(mailbox)
        return MailboxStatus(uidValidity: folder.uidValidity, uidNext: UInt32(folder.messages.count + 1),
                             messageCount: folder.messages.count)
    }

    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        let folder = try self.folder(mailbox)
        return .full(folder.messages.enumerated().map { index, message in
            MessageInfo(key: .uid(UInt32(index + 1)), flags: message.flags, size: message.size,
                        internalDate: message.internalDate, messageId: message.messageId)
        })
    }

    public func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        let folder = try self.folder(mailbox)
        var result: [MessageKey: String] = [:]
        for key in keys {
            if let message = message(key, in: folder), let id = message.messageId { result[key] = id }
        }
        return result
    }

    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        let folder = try self.folder(mailbox)
        for key in keys {
            guard let message = message(key, in: folder) else { continue }
            let archive = chain.archives[message.archiveIndex].path
            // Taken out while in use: a re-entrant call gets its own reader.
            let reader = try readers.removeValue(forKey: message.archiveIndex) ?? TarReader(path: archive)
            try reader.position(member: message.member, offset: message.memberOffset)
            guard let entry = try reader.nextEntry(), entry.path == message.dataPath, entry.type == .regular,
                  entry.size == message.size else {
                throw ArchiveError.damaged(archive: archive, entry: message.dataPath,
                                           cause: "no such entry at the position the manifest records (gzip member \(message.member) + \(message.memberOffset))")
            }
            try await sink.begin(key, size: message.size)
            var hasher = SHA256Hasher()
            while let chunk = try reader.nextDataChunk() {
                hasher.update(chunk)
                try await sink.write(chunk)
            }
            let digest = hasher.finalize().hexString
            guard digest == message.sha256 else {
                throw ArchiveError.hashMismatch(archive: archive, entry: message.dataPath, expected: message.sha256, actual: digest)
            }
            try await sink.end()
            readers[message.archiveIndex] = reader
        }
    }

    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        throw readOnly("appending to \(mailbox)")
    }

    public func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {
        throw readOnly("changing flags in \(mailbox)")
    }

    public func expunge(_ keys: [MessageKey], in mailbox: String) async throws {
        throw readOnly("expunging from \(mailbox)")
    }

    public func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        throw readOnly("moving from \(source) to \(destination)")
    }

    /// Read-only: nothing to flush.
    public func flush(_ mailbox: String) async throws {}

    public func close() async {
        readers = [:]
    }

    private func folder(_ name: String) throws -> ChainFolder {
        guard let folder = chain.folders[name] else { throw ArchiveError.noSuchFolder(archive: self.name, folder: name) }
        return folder
    }

    private func message(_ key: MessageKey, in folder: ChainFolder) -> ChainMessage? {
        guard case .uid(let uid) = key, uid >= 1, Int(uid) <= folder.messages.count else { return nil }
        return folder.messages[Int(uid) - 1]
    }

    private func readOnly(_ operation: String) -> ArchiveError {
        .unsupported(archive: name, operation: operation, reason: "an archive is read-only when restoring; restore with direction .pull")
    }
}
