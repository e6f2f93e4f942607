import Foundation
import GRDB

/// The sync state of one Ferrymail configuration: which far (IMAP) message is
/// which near (Maildir) message, and every change that was started but not yet
/// confirmed.
///
/// Each method is one SQLite transaction, so what the engine does between two
/// calls is either fully recorded or not at all. The protocol the engine
/// follows (after isync):
/// 1. `recordPending(copies:in:)` and let it return — the transfer ids are on
///    disk — *before* copying a message, so a crash mid-copy leaves a row that
///    says what to look for instead of an unknown duplicate;
/// 2. `completeCopies(_:)` once the destination confirmed the copy;
/// 3. `commitWatermarks(...)` *last*, so a run that died early is redone from
///    the old watermarks rather than skipping messages.
///
/// Methods are synchronous and block for the duration of one transaction
/// (milliseconds, or tens of milliseconds for batches of thousands). Writes are
/// serialised by GRDB; reads of a file store run concurrently with writes
/// (WAL). The store is `Sendable` and may be shared by all tasks of a daemon.
public final class StateStore: Sendable {
    /// The database file, or `":memory:"` for `inMemory()`. Named in errors.
    public let path: String
    private let writer: any DatabaseWriter
    private let lock: ProcessLock?

    private init(path: String, writer: any DatabaseWriter, lock: ProcessLock?) {
        self.path = path
        self.writer = writer
        self.lock = lock
    }

    // MARK: - Opening and closing

    /// Opens (creating if needed) the state at `path` for a syncing process,
    /// taking the exclusive process lock and migrating the schema.
    ///
    /// Missing directories are created 0700 and the database (with its -wal
    /// and -shm files) is kept 0600, because it lists mailbox names and
    /// message ids. Fails fast with `.locked` if another store holds the lock,
    /// `.schemaTooNew` if a newer Ferrymail wrote it, `.corrupted` if it is not
    /// a database.
    public static func open(at path: String) throws(StateError) -> StateStore {
        let directory = (path as NSString).deletingLastPathComponent
        try StatePaths.createPrivateDirectory(directory.isEmpty ? "." : directory)
        let lock = try ProcessLock.acquire(path: StatePaths.lockPath(forDatabase: path), databasePath: path)

        // Create the file ourselves so it is born 0600 whatever the umask;
        // SQLite gives the -wal and -shm files the main file's mode.
        try StatePaths.createPrivateFile(path)

        var configuration = Configuration()
        configuration.label = "ferrymail.state"
        // Our lock keeps other writers out; the timeout only covers readers
        // such as `ferrymail status` checkpointing at the same moment.
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            // FULL, not WAL's usual NORMAL: a pending-copy row lost to a power
            // cut is a duplicated message after the next run.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try migrate(pool, path: path)
        } catch {
            throw StateError.wrap(error, path: path)
        }
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            if chmod(path + suffix, 0o600) != 0 {
                throw .io(path: path + suffix, operation: "restricting permissions of", errno: errno)
            }
        }
        return StateStore(path: path, writer: pool, lock: lock)
    }

    /// Opens an existing state for reading only, without the process lock, so
    /// `ferrymail status` can look while the daemon runs. Write methods on
    /// such a store fail with `.database`.
    public static func openForReading(at path: String) throws(StateError) -> StateStore {
        guard FileManager.default.fileExists(atPath: path) else {
            throw .io(path: path, operation: "opening state database", errno: ENOENT)
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.label = "ferrymail.state.readonly"
        configuration.busyMode = .timeout(5)
        do {
            let pool = try DatabasePool(path: path, configuration: configuration)
            try pool.read { db in try checkNotSuperseded(db, path: path) }
            return StateStore(path: path, writer: pool, lock: nil)
        } catch {
            throw StateError.wrap(error, path: path)
        }
    }

    /// Opens an existing, up-to-date state for writing *without* the process
    /// lock, for `ferrymail backup` while the daemon holds it. Only for
    /// appending records no sync reads or writes (the `archive` table): the
    /// lock exists to keep two syncs off the same pairs, and SQLite itself
    /// serialises the two processes' transactions (WAL, busy timeout).
    public static func openShared(at path: String) throws(StateError) -> StateStore {
        guard FileManager.default.fileExists(atPath: path) else {
            throw .io(path: path, operation: "opening state database", errno: ENOENT)
        }
        var configuration = Configuration()
        configuration.label = "ferrymail.state.shared"
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        do {
            let pool = try DatabasePool(path: path, configuration: configuration)
            try pool.read { db in
                try checkNotSuperseded(db, path: path)
                guard try StateSchema.migrator.hasCompletedMigrations(db) else {
                    throw StateError.database(path: path, detail: "the state was written by an older Ferrymail and needs "
                        + "upgrading by the running daemon or sync; restart the daemon with this version first")
                }
            }
            return StateStore(path: path, writer: pool, lock: nil)
        } catch {
            throw StateError.wrap(error, path: path)
        }
    }

    /// A fresh, private, migrated database in memory: for tests and dry runs.
    public static func inMemory() throws(StateError) -> StateStore {
        let path = ":memory:"
        do {
            let queue = try DatabaseQueue()
            try migrate(queue, path: path)
            return StateStore(path: path, writer: queue, lock: nil)
        } catch {
            throw StateError.wrap(error, path: path)
        }
    }

    /// Closes the database and releases the process lock, so another process
    /// may take over without waiting for this object to be deallocated. Later
    /// calls on this store fail.
    public func close() throws(StateError) {
        defer { lock?.release() }
        do {
            try checkpointLargeLog()
            try writer.close()
        } catch {
            throw StateError.wrap(error, path: path)
        }
    }

    /// A write-ahead log left large by a big run is read whole by the next
    /// process to open the state (~25 ms for 4 MB, a quarter of a no-op sync), and
    /// SQLite's automatic checkpoints reuse the file without shrinking it.
    /// Folding it into the database and truncating it at close keeps the
    /// next start cheap; a small log is left for SQLite to reuse.
    private func checkpointLargeLog() throws {
        guard lock != nil, let attributes = try? FileManager.default.attributesOfItem(atPath: path + "-wal"),
              let size = attributes[.size] as? Int, size > Self.largeLogBytes else { return }
        try writer.writeWithoutTransaction { db in _ = try Row.fetchAll(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    public static let largeLogBytes = 512 * 1024

    private static func migrate(_ writer: any DatabaseWriter, path: String) throws {
        try writer.read { db in try checkNotSuperseded(db, path: path) }
        try StateSchema.migrator.migrate(writer)
    }

    private static func checkNotSuperseded(_ db: Database, path: String) throws {
        let migrator = StateSchema.migrator
        if try migrator.hasBeenSuperseded(db) {
            let unknown = try migrator.appliedIdentifiers(db).subtracting(migrator.migrations).sorted()
            throw StateError.schemaTooNew(path: path, unknownMigrations: unknown)
        }
    }

    // MARK: - Accounts

    /// The account with this configuration name, created on first use, so the
    /// engine never has to distinguish "first run" from "later run" here.
    public func account(named name: String) throws(StateError) -> AccountRecord {
        try write { db in
            if let existing = try AccountRecord.filter(AccountRecord.Columns.name == name).fetchOne(db) {
                return existing
            }
            var account = AccountRecord(name: name)
            try account.insert(db)
            return account
        }
    }

    /// All accounts, by name.
    public func accounts() throws(StateError) -> [AccountRecord] {
        try read { db in try AccountRecord.order(AccountRecord.Columns.name).fetchAll(db) }
    }

    // MARK: - Mailbox pairs

    /// The mailbox pairs of an account, by far name. Deleted pairs are left
    /// out unless asked for (deletion propagation needs them).
    public func mailboxPairs(account accountId: Int64, includingDeleted: Bool = false) throws(StateError) -> [MailboxPairRecord] {
        try read { db in
            var request = MailboxPairRecord.filter(MailboxPairRecord.Columns.accountId == accountId)
            if !includingDeleted {
                request = request.filter(MailboxPairRecord.Columns.status == MailboxPairStatus.active.rawValue)
            }
            return try request.order(MailboxPairRecord.Columns.farName).fetchAll(db)
        }
    }

    /// The pair for `farName`, created if new, updated (near name, special
    /// use, reactivated) if known. Called for every mailbox the LIST reports,
    /// so it must be idempotent. A new pair gets a random near UIDVALIDITY.
    /// Throws `.conflict` if `nearName` already belongs to another far mailbox.
    public func upsertMailboxPair(
        account accountId: Int64, farName: String, nearName: String, specialUse: String? = nil
    ) throws(StateError) -> MailboxPairRecord {
        try write { db in
            if var existing = try MailboxPairRecord
                .filter(MailboxPairRecord.Columns.accountId == accountId && MailboxPairRecord.Columns.farName == farName)
                .fetchOne(db)
            {
                existing.nearName = nearName
                existing.specialUse = specialUse
                existing.status = .active
                try existing.update(db)
                return existing
            }
            var pair = MailboxPairRecord(
                accountId: accountId, farName: farName, nearName: nearName,
                nearUidValidity: UInt32.random(in: 1...UInt32.max), specialUse: specialUse)
            try pair.insert(db)
            return pair
        }
    }

    /// One mailbox pair by id.
    public func mailboxPair(id: Int64) throws(StateError) -> MailboxPairRecord {
        try read { db in try Self.requireMailbox(db, id) }
    }

    /// Records that one side of the pair was deleted. The row stays (with
    /// status `deleted`) so the engine can propagate the deletion instead of
    /// recreating the folder; its message pairs and watermarks go, since they
    /// describe a mailbox that no longer exists.
    public func markMailboxPairDeleted(_ id: Int64) throws(StateError) {
        try write { db in
            var pair = try Self.requireMailbox(db, id)
            try MessagePairRecord.filter(MessagePairRecord.Columns.mailboxPairId == id).deleteAll(db)
            pair.status = .deleted
            pair.farUidNext = nil
            pair.farHighestModSeq = nil
            pair.nearScanToken = nil
            try pair.update(db)
        }
    }

    /// Removes a mailbox pair and everything about its messages, once a
    /// deletion was propagated or the user unsubscribed the mailbox.
    public func forgetMailboxPair(_ id: Int64) throws(StateError) {
        try write { db in
            _ = try MailboxPairRecord.deleteOne(db, key: id)
        }
    }

    /// Adopts the far mailbox's UIDVALIDITY: on first select, or when the
    /// server changed it, which invalidates every stored far UID.
    ///
    /// In one transaction: far UIDs of all pairs are cleared (the rows stay,
    /// with Message-ID and size, for `candidatesForRepair` and
    /// `attachFarUids`); rows that knew only a far UID — copies to near that
    /// had not landed — are deleted and their transfer ids returned, so the
    /// engine can remove half-delivered files; far watermarks are cleared.
    /// Repeating the call with the stored value changes nothing.
    @discardableResult
    public func resetFarUidValidity(mailbox id: Int64, newValidity: UInt32) throws(StateError) -> UidValidityReset {
        try write { db in
            var mailbox = try Self.requireMailbox(db, id)
            if mailbox.farUidValidity == newValidity { return UidValidityReset(clearedPairs: 0, abandonedTransfers: []) }
            let farOnly = MessagePairRecord.filter(
                MessagePairRecord.Columns.mailboxPairId == id && MessagePairRecord.Columns.nearName == nil)
            let abandoned = try String.fetchAll(db, farOnly.select(MessagePairRecord.Columns.transferId).filter(MessagePairRecord.Columns.transferId != nil))
            try farOnly.deleteAll(db)
            let cleared = try MessagePairRecord
                .filter(MessagePairRecord.Columns.mailboxPairId == id && MessagePairRecord.Columns.farUid != nil)
                .updateAll(db, MessagePairRecord.Columns.farUid.set(to: nil), MessagePairRecord.Columns.updatedAt.set(to: Date()))
            mailbox.farUidValidity = newValidity
            mailbox.farUidNext = nil
            mailbox.farHighestModSeq = nil
            try mailbox.update(db)
            return UidValidityReset(clearedPairs: cleared, abandonedTransfers: abandoned)
        }
    }

    /// Stores where the next run resumes. Call it last, after every copy,
    /// flag and expunge of the run is recorded: watermarks committed early
    /// would make an interrupted run skip messages for good. nil means the
    /// value is not available (e.g. no CONDSTORE).
    public func commitWatermarks(
        mailbox id: Int64, farUidNext: UInt32?, farHighestModSeq: Int64?, nearScanToken: String?
    ) throws(StateError) {
        try write { db in
            var mailbox = try Self.requireMailbox(db, id)
            mailbox.farUidNext = farUidNext
            mailbox.farHighestModSeq = farHighestModSeq
            mailbox.nearScanToken = nearScanToken
            mailbox.lastSyncAt = Date()
            try mailbox.update(db)
        }
    }

    // MARK: - Message pairs: reading

    /// Every message pair of a mailbox, by far UID then near name: the "last
    /// known state" side of the engine's three-way comparison.
    /// How many rows `pairs(in:)` would return, without reading them.
    public func pairCount(in mailbox: Int64) throws(StateError) -> Int {
        try read { db in
            try MessagePairRecord.filter(MessagePairRecord.Columns.mailboxPairId == mailbox).fetchCount(db)
        }
    }

    public func pairs(in mailbox: Int64) throws(StateError) -> [MessagePairRecord] {
        try read { db in try Self.pairsRequest(in: mailbox).fetchAll(db) }
    }

    /// `pairs(in:)` one row at a time, in the same order, so that a caller
    /// turning rows into its own form never holds all of them twice.
    public func forEachPair(in mailbox: Int64, _ body: (MessagePairRecord) -> Void) throws(StateError) {
        try read { db in
            let cursor = try Self.pairsRequest(in: mailbox).fetchCursor(db)
            while let record = try cursor.next() { body(record) }
        }
    }

    /// One side's key and the agreed flags of every row that has a key on
    /// that side, in the order of the unique index on that key: far UIDs
    /// ascending, near names by their UTF-8 bytes (SQLite's BINARY
    /// collation). Only those two columns are read, so a caller can compare a
    /// full listing with 100,000 rows without building them. The body
    /// returns false to stop.
    public func forEachKeyWithFlags(
        in mailbox: Int64, far: Bool, _ body: (_ farUid: UInt32?, _ nearName: String?, _ flags: MessageFlags) -> Bool
    ) throws(StateError) {
        let key = far ? "farUid" : "nearName"
        let sql = "SELECT \(key), flags FROM \(MessagePairRecord.databaseTableName) "
            + "WHERE mailboxPairId = ? AND \(key) IS NOT NULL ORDER BY \(key)"
        try read { db in
            let rows = try Row.fetchCursor(db, sql: sql, arguments: [mailbox])
            while let row = try rows.next() {
                let flags: MessageFlags = row[1] ?? .none
                let goOn = far ? body(row[0], nil, flags) : body(nil, row[0], flags)
                if !goOn { break }
            }
        }
    }

    private static func pairsRequest(in mailbox: Int64) -> QueryInterfaceRequest<MessagePairRecord> {
        MessagePairRecord
            .filter(MessagePairRecord.Columns.mailboxPairId == mailbox)
            .order(MessagePairRecord.Columns.farUid, MessagePairRecord.Columns.nearName)
    }

    /// The rows a run needs when both sides listed only their changes: those
    /// holding one of these keys, and every row missing a key or unfinished,
    /// which the reconciler must always see. Ordered as `pairs(in:)`. For a
    /// large mailbox with a few changes this reads a few rows, not all.
    public func pairs(in mailbox: Int64, farUids: [UInt32], nearNames: [String]) throws(StateError) -> [MessagePairRecord] {
        typealias Columns = MessagePairRecord.Columns
        return try read { db in
            let rows = MessagePairRecord.filter(Columns.mailboxPairId == mailbox)
            var byId: [Int64: MessagePairRecord] = [:]
            func collect(_ request: QueryInterfaceRequest<MessagePairRecord>) throws {
                for record in try request.fetchAll(db) { byId[record.id!] = record }
            }
            for start in stride(from: 0, to: farUids.count, by: 500) {
                try collect(rows.filter(farUids[start..<min(start + 500, farUids.count)].contains(Columns.farUid)))
            }
            for start in stride(from: 0, to: nearNames.count, by: 500) {
                try collect(rows.filter(nearNames[start..<min(start + 500, nearNames.count)].contains(Columns.nearName)))
            }
            try collect(rows.filter(Columns.farUid == nil))
            try collect(rows.filter(Columns.nearName == nil))
            try collect(rows.filter(Columns.status != MessagePairStatus.paired.rawValue))
            // SQLite's ORDER BY farUid, nearName: NULL first.
            return byId.values.sorted { a, b in
                if a.farUid != b.farUid { return (a.farUid.map(Int64.init) ?? -1) < (b.farUid.map(Int64.init) ?? -1) }
                guard a.nearName != b.nearName, let y = b.nearName else { return false }
                guard let x = a.nearName else { return true }
                return x.utf8Precedes(y)
            }
        }
    }

    /// The pair holding a far UID, e.g. for a FETCH or VANISHED response.
    public func pair(in mailbox: Int64, farUid: UInt32) throws(StateError) -> MessagePairRecord? {
        try read { db in
            try MessagePairRecord
                .filter(MessagePairRecord.Columns.mailboxPairId == mailbox && MessagePairRecord.Columns.farUid == farUid)
                .fetchOne(db)
        }
    }

    /// The pair holding a Maildir base name, e.g. for a file the scanner saw.
    public func pair(in mailbox: Int64, nearName: String) throws(StateError) -> MessagePairRecord? {
        try read { db in
            try MessagePairRecord
                .filter(MessagePairRecord.Columns.mailboxPairId == mailbox && MessagePairRecord.Columns.nearName == nearName)
                .fetchOne(db)
        }
    }

    /// Copies recorded but never completed: what a run must resolve first, by
    /// looking for the transfer id on the destination.
    public func pendingCopies(in mailbox: Int64) throws(StateError) -> [MessagePairRecord] {
        try unfinished(in: mailbox, statuses: [.pendingToFar, .pendingToNear])
    }

    /// Expunges recorded but not yet confirmed on the other side.
    public func pendingExpunges(in mailbox: Int64) throws(StateError) -> [MessagePairRecord] {
        try unfinished(in: mailbox, statuses: [.pendingExpungeFar, .pendingExpungeNear])
    }

    /// Rows without a far UID whose Message-ID and size match a far message:
    /// after a UIDVALIDITY reset these are re-attached instead of downloading
    /// the whole mailbox again. Several candidates mean duplicates; the engine
    /// decides (e.g. with `contentHash`).
    public func candidatesForRepair(in mailbox: Int64, messageId: String, size: Int64) throws(StateError) -> [MessagePairRecord] {
        try read { db in
            try MessagePairRecord
                .filter(MessagePairRecord.Columns.mailboxPairId == mailbox
                    && MessagePairRecord.Columns.messageId == messageId
                    && MessagePairRecord.Columns.size == size
                    && MessagePairRecord.Columns.farUid == nil)
                .order(MessagePairRecord.Columns.id)
                .fetchAll(db)
        }
    }

    // MARK: - Message pairs: writing

    /// Records messages found on both sides at once (first sync of existing
    /// mailboxes, or matched by Message-ID), in one transaction. Throws
    /// `.conflict` naming the constraint if a far UID or near name is already
    /// paired in this mailbox; then nothing of the batch is stored.
    @discardableResult
    public func recordPairs(_ pairs: [NewPair], in mailbox: Int64) throws(StateError) -> [MessagePairRecord] {
        try write { db in
            _ = try Self.requireMailbox(db, mailbox)
            var inserter = try PairInserter(db)
            return try pairs.map { pair in
                try inserter.insert(MessagePairRecord(
                    mailboxPairId: mailbox, farUid: pair.farUid, nearName: pair.nearName, flags: pair.flags,
                    size: pair.size, internalDate: pair.internalDate, messageId: pair.messageId,
                    contentHash: pair.contentHash, status: .paired, updatedAt: inserter.now))
            }
        }
    }

    /// Journals copies about to be made and returns their transfer ids, in
    /// order. Must return before the first byte is copied: the engine embeds
    /// the id in the copy (Maildir file name, X-TUID header) so that after a
    /// crash it can tell whether the copy landed.
    public func recordPending(copies: [PendingCopy], in mailbox: Int64) throws(StateError) -> [String] {
        try write { db in
            _ = try Self.requireMailbox(db, mailbox)
            var inserter = try PairInserter(db)
            return try copies.map { copy in
                let transferId = UUID().uuidString.lowercased()
                var record = MessagePairRecord(
                    mailboxPairId: mailbox, farUid: nil, nearName: nil, flags: copy.flags, size: copy.size,
                    internalDate: copy.internalDate, messageId: copy.messageId, contentHash: copy.contentHash,
                    status: .paired, transferId: transferId, updatedAt: inserter.now)
                switch copy.source {
                case .far(let uid):
                    record.farUid = uid
                    record.status = .pendingToNear
                case .near(let name):
                    record.nearName = name
                    record.status = .pendingToFar
                }
                _ = try inserter.insert(record)
                return transferId
            }
        }
    }

    /// Marks confirmed copies as paired, filling in the side that was being
    /// written. All or nothing: an unknown transfer id, a destination on the
    /// wrong side, or a UID/name already paired fails the whole batch, since
    /// each means the engine's view of the mailbox is wrong.
    public func completeCopies(_ completions: [CopyCompletion]) throws(StateError) {
        try write { db in
            // Two prepared UPDATEs with the timestamp converted once, not a
            // fetch and a `Codable` update per row: every message of a first
            // download passes through here, and GRDB parses and formats each
            // row's `Date` with a `DateFormatter`.
            let now = Date().databaseValue
            let toFar = try db.cachedStatement(sql: """
                UPDATE messagePair SET farUid = ?, status = 'paired', transferId = NULL, updatedAt = ?
                WHERE transferId = ? AND status = 'pendingToFar'
                """)
            let toNear = try db.cachedStatement(sql: """
                UPDATE messagePair SET nearName = ?, status = 'paired', transferId = NULL, updatedAt = ?
                WHERE transferId = ? AND status = 'pendingToNear'
                """)
            for completion in completions {
                switch completion.destination {
                case .far(let uid): try toFar.execute(arguments: [uid, now, completion.transferId])
                case .near(let name): try toNear.execute(arguments: [name, now, completion.transferId])
                }
                if db.changesCount == 1 { continue }
                // Nothing updated: say whether the id is unknown or names a copy the other way.
                guard let statusText = try String.fetchOne(db, sql: "SELECT status FROM messagePair WHERE transferId = ?",
                                                           arguments: [completion.transferId]),
                      let status = MessagePairStatus(rawValue: statusText), status.isPendingCopy
                else {
                    throw StateError.unknownTransfer(completion.transferId)
                }
                throw StateError.conflict(
                    "transfer \(completion.transferId) is \(status.rawValue) but was completed with \(completion.destination)")
            }
        }
    }

    /// Completes one copy to the far side with the UID the server assigned.
    public func completeCopy(transferId: String, farUid: UInt32) throws(StateError) {
        try completeCopies([CopyCompletion(transferId: transferId, destination: .far(uid: farUid))])
    }

    /// Completes one copy to the near side with the delivered base name.
    public func completeCopy(transferId: String, nearName: String) throws(StateError) {
        try completeCopies([CopyCompletion(transferId: transferId, destination: .near(name: nearName))])
    }

    /// Drops pending copies that will not happen (source vanished, copy found
    /// not to have landed and will be retried under a new id). All or nothing;
    /// throws `.unknownTransfer` for an id that is not pending.
    public func cancelCopies(transferIds: [String]) throws(StateError) {
        try write { db in
            for transferId in transferIds {
                let deleted = try MessagePairRecord
                    .filter(MessagePairRecord.Columns.transferId == transferId)
                    .deleteAll(db)
                if deleted == 0 { throw StateError.unknownTransfer(transferId) }
            }
        }
    }

    /// Re-attaches far UIDs found for rows that lost theirs (UIDVALIDITY
    /// reset) or never learned it (an APPEND without APPENDUID, found again by
    /// its transfer id or Message-ID). A pending copy to far that gets its UID
    /// this way is complete. Throws `.conflict` if a row already has a far UID
    /// or the UID is taken.
    public func attachFarUids(_ uidsByPair: [Int64: UInt32]) throws(StateError) {
        try write { db in
            let now = Date()
            for (pairId, uid) in uidsByPair {
                var record = try Self.requirePair(db, pairId)
                if let existing = record.farUid {
                    throw StateError.conflict("message pair \(pairId) already has far UID \(existing)")
                }
                record.farUid = uid
                if record.status == .pendingToFar {
                    record.status = .paired
                    record.transferId = nil
                }
                record.updatedAt = now
                try record.update(db)
            }
        }
    }

    /// Stores the flags both sides agree on after a flag sync, for many pairs
    /// in one transaction. Throws `.unknownMessagePair` for a missing row.
    public func recordFlags(_ flagsByPair: [Int64: MessageFlags]) throws(StateError) {
        try write { db in
            let now = Date()
            for (pairId, flags) in flagsByPair {
                let changed = try MessagePairRecord
                    .filter(key: pairId)
                    .updateAll(db, MessagePairRecord.Columns.flags.set(to: flags), MessagePairRecord.Columns.updatedAt.set(to: now))
                if changed == 0 { throw StateError.unknownMessagePair(pairId) }
            }
        }
    }

    /// Journals that a message disappeared from one side and must now be
    /// removed from `side`, before removing it, so an interrupted run finishes
    /// the deletion instead of copying the message back.
    public func recordPendingExpunge(_ pairIds: [Int64], on side: Side) throws(StateError) {
        let status: MessagePairStatus = side == .far ? .pendingExpungeFar : .pendingExpungeNear
        try write { db in
            let now = Date()
            for pairId in pairIds {
                let changed = try MessagePairRecord
                    .filter(key: pairId)
                    .updateAll(db, MessagePairRecord.Columns.status.set(to: status.rawValue), MessagePairRecord.Columns.updatedAt.set(to: now))
                if changed == 0 { throw StateError.unknownMessagePair(pairId) }
            }
        }
    }

    /// Forgets pairs whose messages are gone from both sides. Idempotent
    /// (expunge reports can repeat); returns how many rows were removed.
    @discardableResult
    public func recordExpunged(_ pairIds: [Int64]) throws(StateError) -> Int {
        try write { db in
            try MessagePairRecord.deleteAll(db, keys: pairIds)
        }
    }

    // MARK: - Run journal

    /// Journals the start of a run, before it changes anything; an entry that
    /// never gets `finishRun` shows an interrupted run in `ferrymail status`.
    public func beginRun(account accountId: Int64, mailbox: Int64? = nil) throws(StateError) -> RunRecord {
        try write { db in
            var run = RunRecord(accountId: accountId, mailboxPairId: mailbox)
            try run.insert(db)
            return run
        }
    }

    /// Closes a run's journal entry with what it did and, if it failed, why.
    /// Keeps the newest `keepLatest` entries per account so a daemon syncing
    /// every few minutes does not grow the file forever.
    public func finishRun(_ runId: Int64, counts: RunCounts, error: String? = nil, keepLatest: Int = 1000) throws(StateError) {
        try write { db in
            guard var run = try RunRecord.fetchOne(db, key: runId) else {
                throw StateError.database(path: path, detail: "no run journal entry \(runId)")
            }
            run.finishedAt = Date()
            run.fetched = counts.fetched
            run.appended = counts.appended
            run.flagsChanged = counts.flagsChanged
            run.expungedFar = counts.expungedFar
            run.expungedNear = counts.expungedNear
            run.moved = counts.moved
            run.lastError = error
            try run.update(db)
            try db.execute(
                sql: """
                    DELETE FROM runJournal WHERE accountId = ? AND id NOT IN
                      (SELECT id FROM runJournal WHERE accountId = ? ORDER BY id DESC LIMIT ?)
                    """,
                arguments: [run.accountId, run.accountId, max(keepLatest, 1)])
        }
    }

    /// The newest journal entries of an account, newest first.
    public func recentRuns(account accountId: Int64, limit: Int = 20) throws(StateError) -> [RunRecord] {
        try read { db in
            try RunRecord
                .filter(RunRecord.Columns.accountId == accountId)
                .order(RunRecord.Columns.id.desc)
                .limit(limit)
                .fetchAll(db)
        }
    }

    // MARK: - Daemon status

    /// Publishes what the daemon is doing for an account. `since` only moves
    /// when the state changes; `succeeded` stamps `lastSuccessAt`; an `error`
    /// is kept (with its time) until replaced, so it stays visible after
    /// recovery.
    public func setDaemonStatus(
        account accountId: Int64, state: DaemonState, detail: String? = nil, error: String? = nil, succeeded: Bool = false
    ) throws(StateError) {
        try write { db in
            let now = Date()
            let previous = try DaemonStatusRecord.fetchOne(db, key: accountId)
            let status = DaemonStatusRecord(
                accountId: accountId, state: state,
                since: previous.flatMap { $0.state == state ? $0.since : nil } ?? now,
                detail: detail,
                lastSuccessAt: succeeded ? now : previous?.lastSuccessAt,
                lastError: error ?? previous?.lastError,
                lastErrorAt: error != nil ? now : previous?.lastErrorAt)
            try status.upsert(db)
        }
    }

    /// Every account with its daemon status and latest run, for `ferrymail
    /// status`. Accounts the daemon never reported on have a nil `daemon`.
    public func daemonStatuses() throws(StateError) -> [AccountStatus] {
        try read { db in
            try AccountRecord.order(AccountRecord.Columns.name).fetchAll(db).map { account in
                let accountId = account.id!
                return AccountStatus(
                    account: account,
                    daemon: try DaemonStatusRecord.fetchOne(db, key: accountId),
                    lastRun: try RunRecord
                        .filter(RunRecord.Columns.accountId == accountId)
                        .order(RunRecord.Columns.id.desc)
                        .fetchOne(db))
            }
        }
    }

    // MARK: - Plumbing

    func write<T>(_ body: (Database) throws -> T) throws(StateError) -> T {
        do {
            return try writer.write(body)
        } catch {
            throw StateError.wrap(error, path: path)
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws(StateError) -> T {
        do {
            return try writer.read(body)
        } catch {
            throw StateError.wrap(error, path: path)
        }
    }

    /// Mailbox pairs with copies or expunges not yet finished, in one query
    /// over the small partial index, so a run proves all its untouched
    /// mailboxes clean at once.
    public func mailboxesWithUnfinishedWork() throws(StateError) -> Set<Int64> {
        try read { db in
            Set(try Int64.fetchAll(db, MessagePairRecord
                .select(MessagePairRecord.Columns.mailboxPairId, as: Int64.self)
                .filter(MessagePairRecord.Columns.status != MessagePairStatus.paired.rawValue)
                .distinct()))
        }
    }

    private func unfinished(in mailbox: Int64, statuses: [MessagePairStatus]) throws(StateError) -> [MessagePairRecord] {
        try read { db in
            // The `!= paired` term is what lets SQLite use the partial index
            // `messagePair_unfinished` (an IN list alone does not imply it), so
            // this stays a few rows read whatever the mailbox's size.
            try MessagePairRecord
                .filter(MessagePairRecord.Columns.mailboxPairId == mailbox
                    && MessagePairRecord.Columns.status != MessagePairStatus.paired.rawValue
                    && statuses.map(\.rawValue).contains(MessagePairRecord.Columns.status))
                .order(MessagePairRecord.Columns.id)
                .fetchAll(db)
        }
    }

    /// Batch insertion of message pairs with one prepared statement and the
    /// timestamp converted once: going through `Codable` per row cost more
    /// than the SQLite work in an initial sync of 100,000 messages.
    private struct PairInserter {
        let now = Date()
        private let nowValue: DatabaseValue
        private let statement: Statement
        private let db: Database

        init(_ db: Database) throws {
            self.db = db
            nowValue = now.databaseValue
            statement = try db.cachedStatement(sql: """
                INSERT INTO messagePair
                  (mailboxPairId, farUid, nearName, flags, size, internalDate, messageId, contentHash, status, transferId, updatedAt)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        }

        mutating func insert(_ record: MessagePairRecord) throws -> MessagePairRecord {
            try statement.execute(arguments: [
                record.mailboxPairId, record.farUid, record.nearName, record.flags, record.size,
                record.internalDate, record.messageId, record.contentHash, record.status.rawValue,
                record.transferId, nowValue,
            ])
            var inserted = record
            inserted.id = db.lastInsertedRowID
            return inserted
        }
    }

    private static func requireMailbox(_ db: Database, _ id: Int64) throws -> MailboxPairRecord {
        guard let mailbox = try MailboxPairRecord.fetchOne(db, key: id) else {
            throw StateError.unknownMailboxPair(id)
        }
        return mailbox
    }

    private static func requirePair(_ db: Database, _ id: Int64) throws -> MessagePairRecord {
        guard let pair = try MessagePairRecord.fetchOne(db, key: id) else {
            throw StateError.unknownMessagePair(id)
        }
        return pair
    }
}

