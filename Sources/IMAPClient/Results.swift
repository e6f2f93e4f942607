import IMAPCodec
import NIOCore

/// The non-body data of one FETCH response, gathered as its items arrive.
public struct FetchedMessage: Sendable, Hashable {
    public var sequenceNumber: UInt32
    public var uid: UInt32?
    public var flags: [Flag]?
    public var internalDate: InternalDate?
    public var rfc822Size: UInt64?
    public var modSeq: UInt64?
    public init(sequenceNumber: UInt32, uid: UInt32? = nil, flags: [Flag]? = nil, internalDate: InternalDate? = nil,
                rfc822Size: UInt64? = nil, modSeq: UInt64? = nil) {
        self.sequenceNumber = sequenceNumber
        self.uid = uid
        self.flags = flags
        self.internalDate = internalDate
        self.rfc822Size = rfc822Size
        self.modSeq = modSeq
    }

    mutating func apply(_ attribute: FetchAttribute) {
        switch attribute {
        case .uid(let v): uid = v
        case .flags(let v): flags = v
        case .internalDate(let v): internalDate = v
        case .rfc822Size(let v): rfc822Size = v
        case .modSeq(let v): modSeq = v
        case .unknown: break
        }
    }
}

/// Receives a UID FETCH as it streams in. The connection awaits each call before
/// reading further from the socket, so a slow sink slows the download instead of
/// buffering it: bodies are never accumulated by the client.
///
/// Calls for one message: `body(begin:)`, `bodyBytes` …, `bodyEnd` for each body
/// section, then `messageFinished` with all metadata. Metadata the server sent
/// before the body (normally UID, FLAGS, sizes) is already in `begin`'s message.
public protocol FetchSink: Sendable {
    func bodyBegin(message: FetchedMessage, section: BodySection, size: UInt64) async throws
    func bodyBytes(_ bytes: ByteBuffer) async throws
    func bodyEnd() async throws
    func messageFinished(_ message: FetchedMessage) async throws
}

extension FetchSink {
    public func bodyBegin(message: FetchedMessage, section: BodySection, size: UInt64) async throws {}
    public func bodyBytes(_ bytes: ByteBuffer) async throws {}
    public func bodyEnd() async throws {}
    public func messageFinished(_ message: FetchedMessage) async throws {}
}

/// What a UID FETCH returned besides what went to the sink.
public struct FetchResult: Sendable, Hashable {
    /// Metadata of every message, in arrival order (bodies went to the sink).
    public var messages: [FetchedMessage]
    /// `VANISHED (EARLIER)` UIDs when `vanished: true` was requested (RFC 7162 §3.2.6).
    public var vanished: UIDSet
}

/// What SELECT/EXAMINE reported.
public struct SelectedMailboxInfo: Sendable, Hashable {
    public var exists: UInt32 = 0
    public var recent: UInt32 = 0
    public var uidValidity: UInt32?
    public var uidNext: UInt32?
    public var unseen: UInt32?
    public var flags: [Flag] = []
    public var permanentFlags: [Flag] = []
    /// Nil when the server sent NOMODSEQ or no CONDSTORE data.
    public var highestModSeq: UInt64?
    public var noModSeq = false
    public var readOnly = false
    /// QRESYNC: UIDs expunged since the given modseq.
    public var vanished = UIDSet()
    /// QRESYNC: messages changed since the given modseq (flags, modseq).
    public var changed: [FetchedMessage] = []
    public init() {}
}

/// A LIST entry with its decoded name and, with LIST-STATUS, its status.
public struct ListedMailbox: Sendable, Hashable {
    public var entry: MailboxListEntry
    /// Decoded display name (modified UTF-7 or UTF-8, depending on the connection).
    public var name: String
    public var status: MailboxStatus?
    public var attributes: Set<MailboxAttribute> { entry.attributes }
    /// The RFC 6154 role, if any.
    public var specialUse: MailboxAttribute? { entry.attributes.first { MailboxAttribute.specialUseRoles.contains($0) } }
}

public struct SearchResult: Sendable, Hashable {
    public var uids: UIDSet
    public var min: UInt32?
    public var max: UInt32?
    public var count: UInt32?
    public var modSeq: UInt64?
}

public struct StoreResult: Sendable, Hashable {
    /// Per-message data the server returned (new flags and MODSEQ) unless `.SILENT`.
    public var messages: [FetchedMessage]
    /// RFC 7162 `[MODIFIED]`: UIDs whose UNCHANGEDSINCE test failed (not stored).
    public var modified: UIDSet
}

public struct AppendResult: Sendable, Hashable {
    /// From APPENDUID (UIDPLUS); nil when the server does not report it.
    public var uidValidity: UInt32?
    public var uids: UIDSet?
}

public struct CopyResult: Sendable, Hashable {
    /// From COPYUID (UIDPLUS); nil when the server does not report it.
    public var uidValidity: UInt32?
    public var source: UIDSet?
    public var destination: UIDSet?
}

/// Server data nobody asked for: the mailbox changed under us, or NOTIFY news.
public enum UnsolicitedEvent: Sendable, Hashable {
    case exists(UInt32)
    case recent(UInt32)
    case expunge(sequenceNumber: UInt32)
    case vanished(UIDSet)
    case flags([Flag])
    /// A FETCH nobody requested (flag change from another client; bodies are dropped).
    case fetch(FetchedMessage)
    case status(MailboxName, MailboxStatus)
    case list(MailboxListEntry)
    case condition(UntaggedCondition)
    case bye(String)
    /// Anything else untagged that arrived outside a command that asked for it.
    case other(UntaggedResponse)
}

/// Body bytes for APPEND: pulled in chunks as the socket can take them, so a
/// message is never loaded whole. Return nil only after exactly `size` bytes.
public protocol AppendBodySource: Sendable {
    func nextChunk() async throws -> ByteBuffer?
}
