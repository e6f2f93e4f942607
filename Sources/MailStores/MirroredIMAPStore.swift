import Foundation
import Logging
import Maildir
import SyncEngine
import SyncState

/// The far (IMAP) store of a backup, reading message bodies from the synced
/// Maildir mirror where it is current, so a backup right after a sync
/// downloads nothing again.
///
/// Everything but `select` and `fetch` is forwarded (`MailStoreDecorator`).
/// Listings, flags and UIDs still come from the server — the archive records
/// what the server holds now. Only `fetch` is redirected: a UID is served from
/// the Maildir when the sync state pairs it with a file, the mailbox's
/// UIDVALIDITY is the one the state knows, and the file still has the size
/// recorded at sync time (Ferrymail stores exactly the bytes the server sent,
/// so equal pairing + size means equal bytes; a file a user edited fails the
/// size check and is downloaded). Everything else goes to the server.
public actor MirroredIMAPStore: MailStoreDecorator {
    public nonisolated let inner: any MailStore
    private let state: StateStore
    private let accountName: String
    private let maildir: MaildirStore
    private let logger: Logger
    private var uidValidity: [String: UInt32] = [:]
    private let counter: MirrorCounter

    public init(inner: any MailStore, state: StateStore, account: String, maildir: MaildirStore,
                counter: MirrorCounter, logger: Logger) {
        self.inner = inner
        self.counter = counter
        self.state = state
        self.accountName = account
        self.maildir = maildir
        self.logger = logger
    }


    public func select(_ mailbox: String) async throws -> MailboxStatus {
        let status = try await inner.select(mailbox)
        uidValidity[mailbox] = status.uidValidity
        return status
    }


    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        if uidValidity[mailbox] == nil {
            // This handle may not be the one that selected the mailbox; the
            // mirror is only trusted against the server's current UIDVALIDITY.
            uidValidity[mailbox] = try await inner.select(mailbox).uidValidity
        }
        let mirror = mirrorPairs(for: mailbox)
        var remaining: [MessageKey] = []
        for key in keys {
            guard case .uid(let uid) = key, let mirror, let pair = mirror.pairs[uid], let name = pair.nearName else {
                remaining.append(key)
                continue
            }
            let opened: OpenedMessage
            do {
                opened = try mirror.folder.openMessage(baseName: name)
            } catch {
                logger.debug("mirror file unreadable; downloading", metadata: ["ferrymail.mailbox": "\(mailbox)", "ferrymail.cause": "\(error)"])
                remaining.append(key)
                continue
            }
            guard Int64(opened.size) == pair.size else {
                logger.debug("mirror file changed size; downloading", metadata: ["ferrymail.mailbox": "\(mailbox)", "ferrymail.file": "\(name)"])
                remaining.append(key)
                continue
            }
            try await sink.begin(key, size: Int64(opened.size))
            while true {
                let chunk = try opened.fileHandle.read(upToCount: 64 * 1024) ?? Data()
                if chunk.isEmpty { break }
                try await sink.write([UInt8](chunk))
            }
            try await sink.end()
            await counter.add(mirror: 1)
        }
        await counter.add(server: remaining.count)
        if !remaining.isEmpty { try await inner.fetch(remaining, in: mailbox, into: sink) }
    }

    /// The mirror folder and its pairs for one server mailbox, or nil when the
    /// mirror cannot vouch for it (never synced, or UIDVALIDITY changed since).
    private func mirrorPairs(for mailbox: String) -> (folder: MaildirFolder, pairs: [UInt32: MessagePairRecord])? {
        do {
            guard let account = try state.accounts().first(where: { $0.name == accountName }), let accountId = account.id,
                  let box = try state.mailboxPairs(account: accountId).first(where: { $0.farName == mailbox }), let boxId = box.id,
                  let validity = uidValidity[mailbox], box.farUidValidity == validity else {
                logger.debug("no current mirror for this mailbox", metadata: [
                    "ferrymail.mailbox": "\(mailbox)", "ferrymail.selected": "\(uidValidity[mailbox].map(String.init) ?? "no")"])
                return nil
            }
            let folder = try maildir.folder(named: box.nearName)
            var pairs: [UInt32: MessagePairRecord] = [:]
            for pair in try state.pairs(in: boxId) where pair.status == .paired {
                if let uid = pair.farUid { pairs[uid] = pair }
            }
            return (folder, pairs)
        } catch {
            logger.debug("Maildir mirror not usable; downloading from the server", metadata: [
                "ferrymail.mailbox": "\(mailbox)", "ferrymail.cause": "\(error)"])
            return nil
        }
    }

}

/// Where a backup's message bodies came from, summed over all connections.
public actor MirrorCounter {
    public private(set) var fromMirror = 0
    public private(set) var fromServer = 0
    public init() {}
    func add(mirror: Int = 0, server: Int = 0) {
        fromMirror += mirror
        fromServer += server
    }
}
