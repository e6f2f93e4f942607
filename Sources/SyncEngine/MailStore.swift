import SyncState

// The store contract, after isync's `driver.h`: one protocol that an IMAP
// account, a Maildir tree, an archive or an in-memory test store implement,
// so that the engine above it is the same code in every direction.
//
// Every call names its mailbox explicitly instead of relying on a "selected"
// mailbox: a stateful store (IMAP) re-selects when needed, and the engine can
// hand one connection to several mailbox pairs in turn.

/// How a store identifies a message inside one of its mailboxes.
///
/// The far (IMAP) side uses UIDs, which are valid only within one
/// UIDVALIDITY and change when a message is moved to another mailbox. The
/// near (Maildir) side uses the file's base name (the part before `:2,`),
/// which survives flag changes, the `new/`→`cur/` move and moves between
/// folders. The engine treats keys as opaque and maps them to the sync state's
/// `farUid` / `nearName` columns in one place (`StateColumns`).
public enum MessageKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    case uid(UInt32)
    case name(String)

    public var description: String {
        switch self {
        case .uid(let uid): "UID \(uid)"
        case .name(let name): "name \(name)"
        }
    }

    public static func < (lhs: MessageKey, rhs: MessageKey) -> Bool {
        switch (lhs, rhs) {
        case let (.uid(a), .uid(b)): a < b
        case let (.name(a), .name(b)): a.utf8Precedes(b)
        case (.uid, .name): true
        case (.name, .uid): false
        }
    }
}

/// Which kind of `MessageKey` a store hands out.
public enum MessageKeyKind: Sendable, Hashable {
    case uid
    case name
}

/// RFC 6154 special-use attribute of a mailbox.
public struct SpecialUse: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let all = SpecialUse(rawValue: "\\All")
    public static let archive = SpecialUse(rawValue: "\\Archive")
    public static let drafts = SpecialUse(rawValue: "\\Drafts")
    public static let flagged = SpecialUse(rawValue: "\\Flagged")
    public static let junk = SpecialUse(rawValue: "\\Junk")
    public static let sent = SpecialUse(rawValue: "\\Sent")
    public static let trash = SpecialUse(rawValue: "\\Trash")
}

/// What a store can do beyond the required minimum. The engine falls back
/// where a capability is missing instead of failing.
public struct StoreCapabilities: Sendable, Hashable {
    /// The kind of key the store's messages carry.
    public var keyKind: MessageKeyKind
    /// `move(_:from:to:)` is available (IMAP MOVE, RFC 6851; a Maildir
    /// rename). Without it the engine copies within the store, then expunges.
    public var move: Bool
    /// A message keeps its key when moved to another mailbox (Maildir base
    /// names do, IMAP UIDs do not). Moves made by the user on such a side are
    /// recognised by key; on the other side by Message-ID and size.
    public var keysSurviveMove: Bool
    /// The store can hold keywords (IMAP `PERMANENTFLAGS` with `\*`, Maildir
    /// with a keyword table). A side without them never loses keywords
    /// because of it: the engine treats its missing keywords as unchanged.
    public var keywords: Bool
    /// How many appends may wait for the store's confirmation at once while
    /// the next ones are written (see `AppendWriter.endBody()`). 1 keeps
    /// appends strictly one after another.
    public var appendWindow: Int

    public init(keyKind: MessageKeyKind, move: Bool, keysSurviveMove: Bool, keywords: Bool, appendWindow: Int = 1) {
        self.keyKind = keyKind
        self.move = move
        self.keysSurviveMove = keysSurviveMove
        self.keywords = keywords
        self.appendWindow = max(1, appendWindow)
    }
}

/// Cheap status of a mailbox, as STATUS / LIST-STATUS / SELECT report it on
/// IMAP, or a directory scan's summary on Maildir.
public struct MailboxStatus: Sendable, Hashable {
    /// nil for stores whose keys are never invalidated wholesale (Maildir).
    public var uidValidity: UInt32?
    public var uidNext: UInt32?
    /// nil without CONDSTORE; then flag changes cannot be detected cheaply
    /// and the mailbox is never skipped.
    public var highestModSeq: Int64?
    public var messageCount: Int?
    /// Opaque summary (e.g. directory mtimes and inodes) that changes
    /// whenever the mailbox content or flags change.
    public var scanToken: String?
    /// Whether this mailbox keeps keywords (IMAP: `\*` in its PERMANENTFLAGS,
    /// which is per mailbox); nil when the store only knows it store-wide
    /// (`StoreCapabilities.keywords`).
    public var keywords: Bool?

    public init(uidValidity: UInt32? = nil, uidNext: UInt32? = nil, highestModSeq: Int64? = nil,
                messageCount: Int? = nil, scanToken: String? = nil, keywords: Bool? = nil) {
        self.uidValidity = uidValidity
        self.uidNext = uidNext
        self.highestModSeq = highestModSeq
        self.messageCount = messageCount
        self.scanToken = scanToken
        self.keywords = keywords
    }

    /// The watermark that, once committed, lets the next run ask only for
    /// what changed after this status was taken.
    public var watermark: SyncWatermark {
        SyncWatermark(uidValidity: uidValidity, uidNext: uidNext, highestModSeq: highestModSeq, scanToken: scanToken)
    }
}

/// Where the last complete sync of one side of a mailbox left off.
public struct SyncWatermark: Sendable, Hashable {
    public var uidValidity: UInt32?
    public var uidNext: UInt32?
    public var highestModSeq: Int64?
    public var scanToken: String?

    public init(uidValidity: UInt32? = nil, uidNext: UInt32? = nil, highestModSeq: Int64? = nil, scanToken: String? = nil) {
        self.uidValidity = uidValidity
        self.uidNext = uidNext
        self.highestModSeq = highestModSeq
        self.scanToken = scanToken
    }

    /// True when `status` proves nothing changed since this watermark, so the
    /// mailbox can be skipped without SELECT or a scan.
    ///
    /// UIDNEXT alone proves nothing (flags change without it moving), so an
    /// IMAP mailbox qualifies only with CONDSTORE's HIGHESTMODSEQ; a scanned
    /// store qualifies with an equal scan token.
    public func provesUnchanged(_ status: MailboxStatus) -> Bool {
        guard status.uidValidity == uidValidity else { return false }
        if let modSeq = highestModSeq, status.highestModSeq == modSeq, status.uidNext == uidNext {
            return true
        }
        if let token = scanToken, status.scanToken == token {
            return true
        }
        return false
    }
}

/// A mailbox as LIST reports it.
public struct MailboxInfo: Sendable, Hashable {
    public var name: String
    public var role: SpecialUse?
    /// The hierarchy delimiter; nil for a flat namespace.
    public var delimiter: Character?
    /// false for `\Noselect` / `\NonExistent` entries, which hold no messages.
    public var selectable: Bool
    /// Status when the store gets it cheaply with the listing (LIST-STATUS,
    /// a Maildir scan token); enables the unchanged-mailbox fast path.
    public var status: MailboxStatus?

    public init(name: String, role: SpecialUse? = nil, delimiter: Character? = "/", selectable: Bool = true, status: MailboxStatus? = nil) {
        self.name = name
        self.role = role
        self.delimiter = delimiter
        self.selectable = selectable
        self.status = status
    }
}

/// One message's metadata: what the engine compares, never the body.
public struct MessageInfo: Sendable, Hashable {
    public var key: MessageKey
    /// System flags (`\Seen`…) and keywords together. `\Recent` is never
    /// synced: it belongs to one IMAP session.
    public var flags: MessageFlags
    /// RFC822.SIZE, exactly the number of bytes `fetch` delivers.
    public var size: Int64
    /// INTERNALDATE as unix seconds (Maildir: the file's mtime).
    public var internalDate: Int64?
    /// The Message-ID header, when the listing carried it; the engine asks
    /// `messageIds(for:in:)` for the messages it needs to match.
    public var messageId: String?
    /// The engine's transfer id, for stores that keep it with a message the
    /// engine appended (a Maildir puts it in the file name). IMAP stores
    /// report nil: the engine never edits a message to carry it.
    public var transferId: String?

    public init(key: MessageKey, flags: MessageFlags = .none, size: Int64, internalDate: Int64? = nil,
                messageId: String? = nil, transferId: String? = nil) {
        self.key = key
        self.flags = flags
        self.size = size
        self.internalDate = internalDate
        self.messageId = messageId
        self.transferId = transferId
    }
}

/// What `messages(in:changedSince:)` found.
public enum MessageListing: Sendable, Hashable {
    /// Every message of the mailbox.
    case full([MessageInfo])
    /// Only what changed since the watermark (QRESYNC / CONDSTORE
    /// `CHANGEDSINCE`): messages whose flags changed or that are new, and the
    /// keys expunged. A message not mentioned still has the flags the sync
    /// state recorded.
    case delta(changed: [MessageInfo], vanished: [MessageKey])
}

/// What the sync state records for one side of a mailbox, handed to a store
/// that can compare its full listing with it
/// (`messages(in:changedSince:comparedWith:)`).
public struct RecordedMessages: Sendable {
    /// How many rows the state holds for the mailbox.
    public var count: Int
    /// Calls `body` with each recorded key and its agreed flags, in key
    /// order (`MessageKey.<`), until `body` returns false.
    public var forEach: @Sendable (_ body: (MessageKey, MessageFlags) -> Bool) throws -> Void

    public init(count: Int, forEach: @escaping @Sendable (_ body: (MessageKey, MessageFlags) -> Bool) throws -> Void) {
        self.count = count
        self.forEach = forEach
    }

    /// Beyond this many differing keys a listing stays full: the rows would
    /// be read anyway, and one query per 500 keys would be slower. Below
    /// 1024 a delta is always small enough.
    public func deltaLimit(listed: Int) -> Int { Self.deltaLimit(recorded: count, listed: listed) }

    static func deltaLimit(recorded: Int, listed: Int) -> Int { max(1024, max(recorded, listed) / 4) }

    /// One merge of a listing, given as its positions in key order, with
    /// the recorded keys in that order: the positions of the messages that
    /// are new or whose flags differ, and the recorded keys the listing
    /// lacks. Nil once more than `limit` differ, or when the recorded keys
    /// do not come in key order: the merge is only right if both run in one
    /// order; were the index's ever to differ, a present message would read
    /// as gone. `compare` says how the message at a position sorts against a
    /// recorded key (by bytes, as the index orders them), `agrees` whether
    /// its flags are the recorded ones.
    public func difference(of order: [Int32], limit: Int, compare: (Int32, MessageKey) -> Int,
                           agrees: (Int32, MessageFlags) -> Bool) throws -> (changed: [Int32], vanished: [MessageKey])? {
        var changed: [Int32] = [], vanished: [MessageKey] = []
        var next = 0, ordered = true, small = true
        var previous: MessageKey?
        try forEach { key, flags in
            if let previous, !(previous < key) {
                ordered = false
                return false
            }
            previous = key
            while next < order.count, compare(order[next], key) < 0 {
                changed.append(order[next])
                next += 1
            }
            if next < order.count, compare(order[next], key) == 0 {
                if !agrees(order[next], flags) { changed.append(order[next]) }
                next += 1
            } else {
                vanished.append(key)
            }
            small = changed.count + vanished.count <= limit
            return small
        }
        guard ordered, small, changed.count + (order.count - next) + vanished.count <= limit else { return nil }
        changed.append(contentsOf: order[next...])
        return (changed, vanished)
    }

    /// Whether a listed message's flags are the recorded ones, as the
    /// reconciler compares them (`FlagMerge.normalized`).
    public static func agree(_ listed: MessageFlags, _ recorded: MessageFlags) -> Bool {
        FlagMerge.normalized(listed) == FlagMerge.normalized(recorded)
    }
}

/// One `UID STORE`: the same change applied to many messages. The engine
/// groups its flag updates by identical change so a store issues one command
/// per group.
public struct FlagChange: Sendable, Hashable {
    public var keys: [MessageKey]
    public var add: MessageFlags
    public var remove: MessageFlags

    public init(keys: [MessageKey], add: MessageFlags, remove: MessageFlags) {
        self.keys = keys
        self.add = add
        self.remove = remove
    }
}

/// What the destination needs to know before the first byte of a message.
public struct AppendEnvelope: Sendable, Hashable {
    public var flags: MessageFlags
    public var internalDate: Int64?
    /// Exact byte count of the body to come (an IMAP literal announces it).
    public var size: Int64
    public var messageId: String?
    /// The journal's id for this copy. A store may keep it with the message
    /// (Maildir file name) and report it back in `MessageInfo.transferId`; it
    /// must never be written into the message itself.
    public var transferId: String

    public init(flags: MessageFlags, internalDate: Int64?, size: Int64, messageId: String?, transferId: String) {
        self.flags = flags
        self.internalDate = internalDate
        self.size = size
        self.messageId = messageId
        self.transferId = transferId
    }
}

/// Receives message bodies from `fetch`, in chunks, one message at a time:
/// `begin`, any number of `write`s, `end`. A store never buffers a whole
/// message for the sink.
public protocol MessageSink: Sendable {
    func begin(_ key: MessageKey, size: Int64) async throws
    func write(_ chunk: [UInt8]) async throws
    func end() async throws
}

/// One message being appended, fed in chunks.
public protocol AppendWriter: Sendable {
    func write(_ chunk: [UInt8]) async throws
    /// Says the body is complete without waiting for the store to confirm
    /// it. The engine calls it before `finish()` and starts the next message
    /// meanwhile: an IMAP APPEND's answer comes a round trip (and a server
    /// fsync) after its last byte, and the next upload goes out in that time.
    /// Stores that confirm at once keep the default, which does nothing.
    func endBody() async throws
    /// Completes the append. Returns the new message's key when the store
    /// knows it (UIDPLUS APPENDUID, a Maildir name), nil otherwise; the
    /// engine then finds the message again by Message-ID, size and date.
    /// Throws `MessageRejected` when the store refused this message only.
    func finish() async throws -> MessageKey?
    /// Abandons a partial append (the source failed mid-message).
    func cancel() async
}

extension AppendWriter {
    public func endBody() async throws {}
}

/// The destination refused one message (IMAP `NO` to its APPEND: too large,
/// over quota) and is still usable for the next one.
public struct MessageRejected: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The contract between the engine and a concrete mail store.
///
/// Requirements every implementation keeps:
/// - bodies are passed through byte for byte, never rewritten;
/// - `setFlags`, `expunge` and `move` silently ignore keys that no longer
///   exist (another client may have expunged them: that is not an error);
/// - `fetch` silently skips keys that no longer exist;
/// - errors are thrown as they happen; the engine records them per mailbox.
public protocol MailStore: Sendable {
    var capabilities: StoreCapabilities { get }

    /// Every mailbox, with status where it comes cheaply.
    func listMailboxes() async throws -> [MailboxInfo]
    /// Creates a mailbox (with the special-use attribute when the store
    /// supports CREATE-SPECIAL-USE). Creating an existing mailbox succeeds.
    func createMailbox(_ name: String, role: SpecialUse?) async throws
    /// Deletes a mailbox and its messages.
    func deleteMailbox(_ name: String) async throws
    /// Opens (SELECTs) a mailbox and returns its current status; taken
    /// before listing, so a committed watermark never covers a change the
    /// listing did not include.
    func select(_ mailbox: String) async throws -> MailboxStatus
    /// Lists messages: changes since `watermark` when the store can (and the
    /// watermark is still valid), every message otherwise.
    func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing
    /// `messages(in:changedSince:)`, except that where it would list every
    /// message the store may return the delta that listing amounts to
    /// against `recorded`: the messages whose key is not recorded or whose
    /// flags differ, and the recorded keys it lacks. A store that can do so
    /// without building an entry for every message (a Maildir, whose full
    /// listing of 200,000 files otherwise held 40 MB) implements it; the
    /// default lists, and the engine compares the full listing itself.
    func messages(in mailbox: String, changedSince watermark: SyncWatermark?, comparedWith recorded: RecordedMessages) async throws
        -> MessageListing
    /// Part of the mailbox's full listing: some of the messages whose keys
    /// come after `key` (from the first when nil), in key order, each as
    /// `messages(in:changedSince:)` lists it; about `limit` of them, a
    /// bounded few times more at most. Empty only when no message follows
    /// `key` (among those present when the mailbox was selected): pages are
    /// asked for until one is empty, and a message a page skipped would be
    /// skipped for good, since the watermarks committed after the download
    /// cover it. Nil when the store cannot list part of this mailbox (asked
    /// with no `key`); the engine then lists it whole. A first download of a
    /// large mailbox lists it this way, a page at a time, instead of holding
    /// its whole listing (88 bytes a message) until its last copy.
    func messages(in mailbox: String, after key: MessageKey?, limit: Int) async throws -> [MessageInfo]?
    /// Message-IDs for the given keys (IMAP `BODY.PEEK[HEADER.FIELDS
    /// (MESSAGE-ID)]`), fetched lazily: only for messages the engine must
    /// match. Messages without the header are left out.
    func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String]
    /// Streams the bodies of `keys` into `sink`, one message after another.
    func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws
    /// Starts appending one message; bytes follow through the writer.
    func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter
    /// Applies flag changes, one batch per identical change.
    func setFlags(_ changes: [FlagChange], in mailbox: String) async throws
    /// Removes exactly these messages (IMAP: `\Deleted` + UID EXPUNGE; other
    /// messages flagged `\Deleted` are left alone).
    func expunge(_ keys: [MessageKey], in mailbox: String) async throws
    /// Moves messages; returns the new keys it knows (COPYUID), which may be
    /// fewer than moved. Only called when `capabilities.move`.
    func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey]
    /// Makes every append to `mailbox` finished so far durable. The engine
    /// calls it once per copy batch, before it records the batch's copies as
    /// complete, so a store can pay for durability once per batch instead of
    /// once per message. A store may also hold finished appends back from
    /// its listings until then: a Maildir publishes a batch's files only
    /// once all of them are on disk. Deliberately without a default: a
    /// decorator that forgot to forward it would silently give up
    /// durability.
    func flush(_ mailbox: String) async throws
    /// The mailbox's status after this store's own changes, when the store
    /// can prove that nothing else changed the mailbox since it was listed;
    /// nil when it cannot. The engine commits it instead of the status taken
    /// before the run's changes, so the next run can skip a mailbox this run
    /// only changed itself (else it would rescan it once, to find only its
    /// own changes).
    func settledStatus(of mailbox: String) async throws -> MailboxStatus?
    /// Releases the connection or handle; the engine calls it for every
    /// handle it got from a `StoreFactory`.
    func close() async
}

extension MailStore {
    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?, comparedWith recorded: RecordedMessages) async throws
        -> MessageListing {
        try await messages(in: mailbox, changedSince: watermark)
    }

    public func messages(in mailbox: String, after key: MessageKey?, limit: Int) async throws -> [MessageInfo]? { nil }

    /// Proving takes knowing one's own changes; a store that does not track
    /// them proves nothing, and the next run rescans, as it always may.
    public func settledStatus(of mailbox: String) async throws -> MailboxStatus? { nil }
}


/// Hands out store handles: one per concurrently synced mailbox pair, plus
/// one for account-wide work. An IMAP factory opens a connection; a Maildir
/// or memory factory may return the same object every time.
public typealias StoreFactory = @Sendable () async throws -> any MailStore

/// A store that wraps another and changes only some of its behaviour
/// (filtering, counting, reading bodies elsewhere). Every requirement it does
/// not implement itself is forwarded to `inner` — `flush` included, which is
/// why forwarding lives here, once, rather than in each decorator.
public protocol MailStoreDecorator: MailStore {
    var inner: any MailStore { get }
}

extension MailStoreDecorator {
    public var capabilities: StoreCapabilities { inner.capabilities }
    public func listMailboxes() async throws -> [MailboxInfo] { try await inner.listMailboxes() }
    public func createMailbox(_ name: String, role: SpecialUse?) async throws { try await inner.createMailbox(name, role: role) }
    public func deleteMailbox(_ name: String) async throws { try await inner.deleteMailbox(name) }
    public func select(_ mailbox: String) async throws -> MailboxStatus { try await inner.select(mailbox) }
    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        try await inner.messages(in: mailbox, changedSince: watermark)
    }
    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?, comparedWith recorded: RecordedMessages) async throws
        -> MessageListing {
        try await inner.messages(in: mailbox, changedSince: watermark, comparedWith: recorded)
    }
    public func messages(in mailbox: String, after key: MessageKey?, limit: Int) async throws -> [MessageInfo]? {
        try await inner.messages(in: mailbox, after: key, limit: limit)
    }
    public func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        try await inner.messageIds(for: keys, in: mailbox)
    }
    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        try await inner.fetch(keys, in: mailbox, into: sink)
    }
    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        try await inner.beginAppend(to: mailbox, envelope)
    }
    public func setFlags(_ changes: [FlagChange], in mailbox: String) async throws { try await inner.setFlags(changes, in: mailbox) }
    public func expunge(_ keys: [MessageKey], in mailbox: String) async throws { try await inner.expunge(keys, in: mailbox) }
    public func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        try await inner.move(keys, from: source, to: destination)
    }
    public func flush(_ mailbox: String) async throws { try await inner.flush(mailbox) }
    public func settledStatus(of mailbox: String) async throws -> MailboxStatus? { try await inner.settledStatus(of: mailbox) }
    public func close() async { await inner.close() }
}
