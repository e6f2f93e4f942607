import Foundation
import GRDB

// One record type per table. They are plain values (Codable + Sendable) so the
// engine can hold thousands of them and pass them between tasks; the
// `Columns` enums keep query code free of string literals.
//
// Tables with an auto-incremented id use `MutablePersistableRecord`, GRDB's
// idiom for learning the id on insert; `id` is nil only before insertion and
// every record returned by `StateStore` has it set.

/// A configured account. Everything else hangs off it, so deleting an account
/// deletes its whole sync state (foreign keys cascade).
public struct AccountRecord: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord, Identifiable {
    public static let databaseTableName = "account"
    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let name = Column(CodingKeys.name)
        public static let created = Column(CodingKeys.created)
    }

    public var id: Int64?
    /// The account name from the configuration file.
    public var name: String
    public var created: Date

    public init(id: Int64? = nil, name: String, created: Date = Date()) {
        self.id = id
        self.name = name
        self.created = created
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

/// Whether a mailbox pair is still synced. Deleted pairs keep their row so a
/// mailbox that reappears under the same name is not mistaken for a fresh one
/// with stale watermarks: `upsertMailboxPair` reactivates and the engine
/// decides from the validity values.
public enum MailboxPairStatus: String, Codable, Sendable, DatabaseValueConvertible, CaseIterable {
    case active
    case deleted
}

/// One IMAP mailbox paired with one Maildir folder, plus the watermarks that
/// let the next run ask only for what changed.
public struct MailboxPairRecord: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord, Identifiable {
    public static let databaseTableName = "mailboxPair"
    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let accountId = Column(CodingKeys.accountId)
        public static let farName = Column(CodingKeys.farName)
        public static let nearName = Column(CodingKeys.nearName)
        public static let farUidValidity = Column(CodingKeys.farUidValidity)
        public static let farUidNext = Column(CodingKeys.farUidNext)
        public static let farHighestModSeq = Column(CodingKeys.farHighestModSeq)
        public static let nearUidValidity = Column(CodingKeys.nearUidValidity)
        public static let nearScanToken = Column(CodingKeys.nearScanToken)
        public static let specialUse = Column(CodingKeys.specialUse)
        public static let status = Column(CodingKeys.status)
        public static let lastSyncAt = Column(CodingKeys.lastSyncAt)
    }

    public var id: Int64?
    public var accountId: Int64
    /// The IMAP mailbox name as the server spells it (decoded, not mUTF-7).
    public var farName: String
    /// The Maildir folder name relative to the Maildir root.
    public var nearName: String
    /// nil until the mailbox was first selected. When the server reports a
    /// different value every stored far UID is meaningless.
    public var farUidValidity: UInt32?
    /// UIDNEXT at the end of the last complete sync: UIDs below it were seen.
    public var farUidNext: UInt32?
    /// HIGHESTMODSEQ at the end of the last complete sync (CONDSTORE/QRESYNC);
    /// RFC 7162 caps mod-sequences at 2^63-1, so they fit SQLite's integer.
    public var farHighestModSeq: Int64?
    /// Maildir has no UIDVALIDITY, so we assign a random one when we start
    /// tracking the folder; a folder recreated from scratch gets a new value,
    /// which tells the engine its near names must not be trusted.
    public var nearUidValidity: UInt32
    /// Opaque token from the Maildir scanner (directory mtimes and inodes) that
    /// lets it skip rescanning unchanged folders.
    public var nearScanToken: String?
    /// RFC 6154 special-use attribute, e.g. `\Sent`, so the near folder can be
    /// matched to the far one even when the names differ.
    public var specialUse: String?
    public var status: MailboxPairStatus
    public var lastSyncAt: Date?

    public init(
        id: Int64? = nil, accountId: Int64, farName: String, nearName: String,
        farUidValidity: UInt32? = nil, farUidNext: UInt32? = nil, farHighestModSeq: Int64? = nil,
        nearUidValidity: UInt32, nearScanToken: String? = nil, specialUse: String? = nil,
        status: MailboxPairStatus = .active, lastSyncAt: Date? = nil
    ) {
        self.id = id
        self.accountId = accountId
        self.farName = farName
        self.nearName = nearName
        self.farUidValidity = farUidValidity
        self.farUidNext = farUidNext
        self.farHighestModSeq = farHighestModSeq
        self.nearUidValidity = nearUidValidity
        self.nearScanToken = nearScanToken
        self.specialUse = specialUse
        self.status = status
        self.lastSyncAt = lastSyncAt
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

/// Where a message pair stands. Anything but `paired` is an unfinished
/// intention written before the side effect, so a run that died half-way can
/// finish or undo it instead of repeating it.
public enum MessagePairStatus: String, Codable, Sendable, DatabaseValueConvertible, CaseIterable {
    /// Both sides exist (or, right after a UIDVALIDITY reset, the far UID is
    /// being looked up again).
    case paired
    /// A near message is being appended to the far mailbox; `farUid` is nil
    /// until the server answers with APPENDUID or the transfer id is found.
    case pendingToFar
    /// A far message is being written into the Maildir; `nearName` is nil
    /// until the file is delivered.
    case pendingToNear
    /// The near message is gone; the far one still has to be expunged.
    case pendingExpungeFar
    /// The far message is gone; the near file still has to be deleted.
    case pendingExpungeNear

    /// True for the statuses whose rows carry a transfer id.
    public var isPendingCopy: Bool { self == .pendingToFar || self == .pendingToNear }
}

/// One message known on at least one side, and what we last agreed on for it.
public struct MessagePairRecord: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord, Identifiable {
    public static let databaseTableName = "messagePair"
    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let mailboxPairId = Column(CodingKeys.mailboxPairId)
        public static let farUid = Column(CodingKeys.farUid)
        public static let nearName = Column(CodingKeys.nearName)
        public static let flags = Column(CodingKeys.flags)
        public static let size = Column(CodingKeys.size)
        public static let internalDate = Column(CodingKeys.internalDate)
        public static let messageId = Column(CodingKeys.messageId)
        public static let contentHash = Column(CodingKeys.contentHash)
        public static let status = Column(CodingKeys.status)
        public static let transferId = Column(CodingKeys.transferId)
        public static let updatedAt = Column(CodingKeys.updatedAt)
    }

    public var id: Int64?
    public var mailboxPairId: Int64
    public var farUid: UInt32?
    /// Maildir base name: the file name up to (not including) ":2,", which
    /// stays stable while flags change the suffix and the file moves new→cur.
    public var nearName: String?
    /// Flags both sides agreed on at the last sync.
    public var flags: MessageFlags
    /// RFC822.SIZE in bytes; with `messageId` it re-pairs messages after a
    /// UIDVALIDITY reset.
    public var size: Int64
    /// INTERNALDATE as unix seconds, preserved across copies.
    public var internalDate: Int64?
    public var messageId: String?
    /// Optional digest of the message, for callers that want certainty when
    /// re-pairing messages with equal Message-ID and size.
    public var contentHash: Data?
    public var status: MessagePairStatus
    /// Random id carried by an in-flight copy (in the Maildir file name or an
    /// X-TUID header) so it can be recognised after a crash. nil once paired.
    public var transferId: String?
    public var updatedAt: Date

    public init(
        id: Int64? = nil, mailboxPairId: Int64, farUid: UInt32?, nearName: String?,
        flags: MessageFlags = .none, size: Int64, internalDate: Int64? = nil, messageId: String? = nil,
        contentHash: Data? = nil, status: MessagePairStatus = .paired, transferId: String? = nil,
        updatedAt: Date = Date()
    ) {
        self.id = id
        self.mailboxPairId = mailboxPairId
        self.farUid = farUid
        self.nearName = nearName
        self.flags = flags
        self.size = size
        self.internalDate = internalDate
        self.messageId = messageId
        self.contentHash = contentHash
        self.status = status
        self.transferId = transferId
        self.updatedAt = updatedAt
    }

    /// Read by column, not through `Decodable`: a mailbox's rows are read
    /// whole on every full listing, and keyed decoding was a fifth of such a
    /// run at 60,000 rows.
    public init(row: Row) throws {
        id = row[Columns.id]
        mailboxPairId = row[Columns.mailboxPairId]
        farUid = row[Columns.farUid]
        nearName = row[Columns.nearName]
        flags = row[Columns.flags] ?? .none
        size = row[Columns.size]
        internalDate = row[Columns.internalDate]
        messageId = row[Columns.messageId]
        contentHash = row[Columns.contentHash]
        let statusText: String = row[Columns.status]
        guard let status = MessagePairStatus(rawValue: statusText) else {
            throw DatabaseError(resultCode: .SQLITE_MISMATCH, message: "unknown message pair status \(statusText)")
        }
        self.status = status
        transferId = row[Columns.transferId]
        updatedAt = row[Columns.updatedAt]
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

/// One sync run, begun before any change and finished after the watermarks:
/// an entry without `finishedAt` is a run that was interrupted.
public struct RunRecord: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord, Identifiable {
    public static let databaseTableName = "runJournal"
    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let accountId = Column(CodingKeys.accountId)
        public static let mailboxPairId = Column(CodingKeys.mailboxPairId)
        public static let startedAt = Column(CodingKeys.startedAt)
        public static let finishedAt = Column(CodingKeys.finishedAt)
        public static let fetched = Column(CodingKeys.fetched)
        public static let appended = Column(CodingKeys.appended)
        public static let flagsChanged = Column(CodingKeys.flagsChanged)
        public static let expungedFar = Column(CodingKeys.expungedFar)
        public static let expungedNear = Column(CodingKeys.expungedNear)
        public static let moved = Column(CodingKeys.moved)
        public static let lastError = Column(CodingKeys.lastError)
    }

    public var id: Int64?
    public var accountId: Int64
    /// nil for a run over the whole account.
    public var mailboxPairId: Int64?
    public var startedAt: Date
    public var finishedAt: Date?
    public var fetched: Int
    public var appended: Int
    public var flagsChanged: Int
    public var expungedFar: Int
    public var expungedNear: Int
    public var moved: Int
    public var lastError: String?

    public init(
        id: Int64? = nil, accountId: Int64, mailboxPairId: Int64? = nil, startedAt: Date = Date(),
        finishedAt: Date? = nil, counts: RunCounts = RunCounts(), lastError: String? = nil
    ) {
        self.id = id
        self.accountId = accountId
        self.mailboxPairId = mailboxPairId
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.fetched = counts.fetched
        self.appended = counts.appended
        self.flagsChanged = counts.flagsChanged
        self.expungedFar = counts.expungedFar
        self.expungedNear = counts.expungedNear
        self.moved = counts.moved
        self.lastError = lastError
    }

    public var counts: RunCounts {
        RunCounts(fetched: fetched, appended: appended, flagsChanged: flagsChanged,
                  expungedFar: expungedFar, expungedNear: expungedNear, moved: moved)
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

/// What a run did, for the journal and `ferrymail status`.
public struct RunCounts: Sendable, Hashable, Codable {
    public var fetched = 0
    public var appended = 0
    public var flagsChanged = 0
    public var expungedFar = 0
    public var expungedNear = 0
    public var moved = 0

    public init(fetched: Int = 0, appended: Int = 0, flagsChanged: Int = 0,
                expungedFar: Int = 0, expungedNear: Int = 0, moved: Int = 0) {
        self.fetched = fetched
        self.appended = appended
        self.flagsChanged = flagsChanged
        self.expungedFar = expungedFar
        self.expungedNear = expungedNear
        self.moved = moved
    }
}

/// What the daemon is doing for one account, so `ferrymail status` (another
/// process) can answer without talking to the daemon.
public enum DaemonState: String, Codable, Sendable, DatabaseValueConvertible, CaseIterable {
    case starting
    case syncing
    case idle
    case backingOff
    case error
    case stopped
}

/// The daemon's last reported state for one account (one row per account).
public struct DaemonStatusRecord: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "daemonStatus"
    public enum Columns {
        public static let accountId = Column(CodingKeys.accountId)
        public static let state = Column(CodingKeys.state)
        public static let since = Column(CodingKeys.since)
        public static let detail = Column(CodingKeys.detail)
        public static let lastSuccessAt = Column(CodingKeys.lastSuccessAt)
        public static let lastError = Column(CodingKeys.lastError)
        public static let lastErrorAt = Column(CodingKeys.lastErrorAt)
    }

    public var accountId: Int64
    public var state: DaemonState
    /// When `state` last changed (not when it was last written), so status
    /// can say "idle for 3 hours".
    public var since: Date
    public var detail: String?
    public var lastSuccessAt: Date?
    /// Kept after recovery so the user can still see what went wrong last.
    public var lastError: String?
    public var lastErrorAt: Date?

    public init(accountId: Int64, state: DaemonState, since: Date, detail: String? = nil,
                lastSuccessAt: Date? = nil, lastError: String? = nil, lastErrorAt: Date? = nil) {
        self.accountId = accountId
        self.state = state
        self.since = since
        self.detail = detail
        self.lastSuccessAt = lastSuccessAt
        self.lastError = lastError
        self.lastErrorAt = lastErrorAt
    }
}
