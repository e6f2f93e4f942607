import NIOCore

// The grammar types shared by the response parser, the command encoder and the
// client. This file is the contract between IMAPCodec and IMAPClient: names follow
// RFC 3501/9051 and the extension RFCs (7162 CONDSTORE/QRESYNC, 4315 UIDPLUS,
// 6851 MOVE, 5465 NOTIFY, 4978 COMPRESS, 2177 IDLE, 5258 LIST-EXTENDED, 5819
// LIST-STATUS, 6154 SPECIAL-USE, 4731 ESEARCH, 2971 ID, 2342 NAMESPACE).

/// A command tag. The client allocates them; the server echoes them in tagged responses.
public typealias Tag = String

/// A message flag or keyword (`\Seen`, `$Forwarded`). System flags compare
/// case-insensitively (RFC 3501 §2.3.2), so they are normalised to their canonical
/// spelling on creation; keywords keep their case.
public struct Flag: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let rawValue: String

    public init(_ raw: String) {
        if raw.hasPrefix("\\") {
            let lower = raw.lowercased()
            self.rawValue = Flag.systemSpellings[lower] ?? raw
        } else {
            self.rawValue = raw
        }
    }

    public static let seen = Flag("\\Seen")
    public static let answered = Flag("\\Answered")
    public static let flagged = Flag("\\Flagged")
    public static let deleted = Flag("\\Deleted")
    public static let draft = Flag("\\Draft")
    public static let recent = Flag("\\Recent")
    /// `\*` in PERMANENTFLAGS: the server accepts new keywords.
    public static let wildcard = Flag("\\*")

    private static let systemSpellings: [String: String] = [
        "\\seen": "\\Seen", "\\answered": "\\Answered", "\\flagged": "\\Flagged",
        "\\deleted": "\\Deleted", "\\draft": "\\Draft", "\\recent": "\\Recent", "\\*": "\\*",
    ]

    /// True for user-defined keywords such as `$Forwarded` or `NonJunk`.
    public var isKeyword: Bool { !rawValue.hasPrefix("\\") }
    public var description: String { rawValue }
    public static func < (a: Flag, b: Flag) -> Bool { a.rawValue < b.rawValue }
}

/// A mailbox name as it travels on the wire (modified UTF-7, or UTF-8 once
/// UTF8=ACCEPT is enabled), kept as bytes so a name the server sends is never
/// altered by a lossy round trip; `displayName` is the decoded Unicode form.
public struct MailboxName: Hashable, Sendable, CustomStringConvertible {
    /// Bytes exactly as the server sent them / as they will be sent.
    public let wireBytes: [UInt8]

    public init(wireBytes: [UInt8]) { self.wireBytes = wireBytes }

    public static let inbox = MailboxName(wireBytes: Array("INBOX".utf8))

    /// INBOX is case-insensitive (RFC 3501 §5.1).
    public var isInbox: Bool { String(decoding: wireBytes, as: UTF8.self).uppercased() == "INBOX" }

    public var description: String { String(decoding: wireBytes, as: UTF8.self) }
}

/// Which text encoding mailbox names use on this connection.
public enum MailboxNameEncoding: Sendable, Hashable {
    /// RFC 3501 §5.1.3 modified UTF-7 (the default).
    case modifiedUTF7
    /// RFC 6855 UTF8=ACCEPT has been ENABLEd.
    case utf8
}

/// A server capability such as `IMAP4rev1`, `AUTH=PLAIN` or `COMPRESS=DEFLATE`,
/// upper-cased because capability names are case-insensitive.
public struct Capability: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name.uppercased() }
    public var description: String { name }

    public static let imap4rev1 = Capability("IMAP4rev1")
    public static let imap4rev2 = Capability("IMAP4rev2")
    public static let startTLS = Capability("STARTTLS")
    public static let loginDisabled = Capability("LOGINDISABLED")
    public static let saslIR = Capability("SASL-IR")
    public static let literalPlus = Capability("LITERAL+")
    public static let literalMinus = Capability("LITERAL-")
    public static let idle = Capability("IDLE")
    public static let uidPlus = Capability("UIDPLUS")
    public static let move = Capability("MOVE")
    public static let condStore = Capability("CONDSTORE")
    public static let qresync = Capability("QRESYNC")
    public static let enable = Capability("ENABLE")
    public static let id = Capability("ID")
    public static let namespace = Capability("NAMESPACE")
    public static let notify = Capability("NOTIFY")
    public static let multiAppend = Capability("MULTIAPPEND")
    public static let listExtended = Capability("LIST-EXTENDED")
    public static let listStatus = Capability("LIST-STATUS")
    public static let specialUse = Capability("SPECIAL-USE")
    public static let esearch = Capability("ESEARCH")
    public static let unselect = Capability("UNSELECT")
    public static let binary = Capability("BINARY")
    public static let compressDeflate = Capability("COMPRESS=DEFLATE")
    public static let utf8Accept = Capability("UTF8=ACCEPT")
    public static func auth(_ mechanism: String) -> Capability { Capability("AUTH=\(mechanism)") }
}

/// `OK` / `NO` / `BAD` (and `PREAUTH` / `BYE` for greetings and untagged conditions).
public enum ResponseStatus: String, Sendable, Hashable {
    case ok = "OK", no = "NO", bad = "BAD", preauth = "PREAUTH", bye = "BYE"
}

/// Response codes in `[...]` (RFC 3501 §7.1 and extensions). Unknown codes are kept
/// as text so nothing a server says is lost.
public enum ResponseCode: Sendable, Hashable {
    case alert
    case badCharset([String])
    case capability([Capability])
    case parse
    case permanentFlags([Flag])
    case readOnly
    case readWrite
    case tryCreate
    case uidNext(UInt32)
    case uidValidity(UInt32)
    case unseen(UInt32)
    case highestModSeq(UInt64)
    case noModSeq
    /// RFC 7162 §3.1.3: the UIDs (or sequence numbers) whose UNCHANGEDSINCE test failed.
    case modified(UIDSet)
    case appendUID(uidValidity: UInt32, uids: UIDSet)
    case copyUID(uidValidity: UInt32, source: UIDSet, destination: UIDSet)
    case uidNotSticky
    case closed
    case compressionActive
    case overQuota
    case alreadyExists
    case nonExistent
    case other(name: String, text: String?)
}

/// The text after a status: optional code, then human-readable text.
public struct ResponseText: Sendable, Hashable {
    public var code: ResponseCode?
    public var text: String
    public init(code: ResponseCode? = nil, text: String) {
        self.code = code
        self.text = text
    }
}

public struct TaggedResponse: Sendable, Hashable {
    public var tag: Tag
    public var status: ResponseStatus
    public var text: ResponseText
    public init(tag: Tag, status: ResponseStatus, text: ResponseText) {
        self.tag = tag
        self.status = status
        self.text = text
    }
}

/// `* OK/NO/BAD/BYE/PREAUTH [code] text` outside of the greeting.
public struct UntaggedCondition: Sendable, Hashable {
    public var status: ResponseStatus
    public var text: ResponseText
    public init(status: ResponseStatus, text: ResponseText) {
        self.status = status
        self.text = text
    }
}

/// Mailbox attributes from LIST (`\Noselect`, `\HasChildren`, `\Sent`, …),
/// canonicalised like flags.
public struct MailboxAttribute: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ raw: String) { self.rawValue = MailboxAttribute.canonical[raw.lowercased()] ?? raw }
    public var description: String { rawValue }

    public static let noSelect = MailboxAttribute("\\Noselect")
    public static let noInferiors = MailboxAttribute("\\Noinferiors")
    public static let nonExistent = MailboxAttribute("\\NonExistent")
    public static let hasChildren = MailboxAttribute("\\HasChildren")
    public static let hasNoChildren = MailboxAttribute("\\HasNoChildren")
    public static let subscribed = MailboxAttribute("\\Subscribed")
    public static let marked = MailboxAttribute("\\Marked")
    public static let unmarked = MailboxAttribute("\\Unmarked")
    public static let remote = MailboxAttribute("\\Remote")
    // RFC 6154 special-use roles
    public static let all = MailboxAttribute("\\All")
    public static let archive = MailboxAttribute("\\Archive")
    public static let drafts = MailboxAttribute("\\Drafts")
    public static let flagged = MailboxAttribute("\\Flagged")
    public static let junk = MailboxAttribute("\\Junk")
    public static let sent = MailboxAttribute("\\Sent")
    public static let trash = MailboxAttribute("\\Trash")

    public static let specialUseRoles: Set<MailboxAttribute> = [.all, .archive, .drafts, .flagged, .junk, .sent, .trash]

    private static let canonical: [String: String] = [
        "\\noselect": "\\Noselect", "\\noinferiors": "\\Noinferiors", "\\nonexistent": "\\NonExistent",
        "\\haschildren": "\\HasChildren", "\\hasnochildren": "\\HasNoChildren", "\\subscribed": "\\Subscribed",
        "\\marked": "\\Marked", "\\unmarked": "\\Unmarked", "\\remote": "\\Remote", "\\all": "\\All",
        "\\archive": "\\Archive", "\\drafts": "\\Drafts", "\\flagged": "\\Flagged", "\\junk": "\\Junk",
        "\\sent": "\\Sent", "\\trash": "\\Trash",
    ]
}

/// One LIST or LSUB line.
public struct MailboxListEntry: Sendable, Hashable {
    public var attributes: Set<MailboxAttribute>
    /// The hierarchy delimiter, nil when the server uses a flat namespace (`NIL`).
    public var delimiter: Character?
    public var name: MailboxName
    /// RFC 5258 extended data, e.g. `CHILDINFO ("SUBSCRIBED")`, `OLDNAME ("x")`, kept as text.
    public var extendedData: [String: String]
    public init(attributes: Set<MailboxAttribute>, delimiter: Character?, name: MailboxName, extendedData: [String: String] = [:]) {
        self.attributes = attributes
        self.delimiter = delimiter
        self.name = name
        self.extendedData = extendedData
    }
}

/// STATUS data items (requests and values).
public enum StatusAttribute: String, Sendable, Hashable, CaseIterable {
    case messages = "MESSAGES", recent = "RECENT", uidNext = "UIDNEXT", uidValidity = "UIDVALIDITY"
    case unseen = "UNSEEN", highestModSeq = "HIGHESTMODSEQ", size = "SIZE", deleted = "DELETED"
}

/// The values of one `* STATUS` response; absent items are nil.
public struct MailboxStatus: Sendable, Hashable {
    public var messages: UInt32?
    public var recent: UInt32?
    public var uidNext: UInt32?
    public var uidValidity: UInt32?
    public var unseen: UInt32?
    public var highestModSeq: UInt64?
    public var size: UInt64?
    public var deleted: UInt32?
    public init(messages: UInt32? = nil, recent: UInt32? = nil, uidNext: UInt32? = nil, uidValidity: UInt32? = nil,
                unseen: UInt32? = nil, highestModSeq: UInt64? = nil, size: UInt64? = nil, deleted: UInt32? = nil) {
        self.messages = messages
        self.recent = recent
        self.uidNext = uidNext
        self.uidValidity = uidValidity
        self.unseen = unseen
        self.highestModSeq = highestModSeq
        self.size = size
        self.deleted = deleted
    }
}

/// RFC 4731 ESEARCH result.
public struct ESearchResponse: Sendable, Hashable {
    public var correlator: Tag?
    public var uid: Bool
    public var min: UInt32?
    public var max: UInt32?
    public var count: UInt32?
    public var all: UIDSet?
    public var modSeq: UInt64?
    public init(correlator: Tag? = nil, uid: Bool = false, min: UInt32? = nil, max: UInt32? = nil,
                count: UInt32? = nil, all: UIDSet? = nil, modSeq: UInt64? = nil) {
        self.correlator = correlator
        self.uid = uid
        self.min = min
        self.max = max
        self.count = count
        self.all = all
        self.modSeq = modSeq
    }
}

/// One namespace of NAMESPACE (RFC 2342): prefix and delimiter.
public struct NamespaceDescription: Sendable, Hashable {
    public var prefix: String
    public var delimiter: Character?
    public init(prefix: String, delimiter: Character?) {
        self.prefix = prefix
        self.delimiter = delimiter
    }
}

public struct NamespaceResponse: Sendable, Hashable {
    public var personal: [NamespaceDescription]
    public var otherUsers: [NamespaceDescription]
    public var shared: [NamespaceDescription]
    public init(personal: [NamespaceDescription], otherUsers: [NamespaceDescription], shared: [NamespaceDescription]) {
        self.personal = personal
        self.otherUsers = otherUsers
        self.shared = shared
    }
}

/// Untagged data other than FETCH (FETCH is streamed, see `FetchEvent`).
public enum UntaggedResponse: Sendable, Hashable {
    case condition(UntaggedCondition)
    case capability([Capability])
    case enabled([Capability])
    case list(MailboxListEntry)
    case lsub(MailboxListEntry)
    case status(MailboxName, MailboxStatus)
    case flags([Flag])
    case exists(UInt32)
    case recent(UInt32)
    case expunge(sequenceNumber: UInt32)
    /// RFC 7162 §3.2.10. `earlier` is true for `VANISHED (EARLIER)` (a reply to a
    /// QRESYNC SELECT or FETCH … VANISHED), false for an unsolicited expunge notice.
    case vanished(UIDSet, earlier: Bool)
    /// `* SEARCH 1 2 3 (MODSEQ 42)`.
    case search([UInt32], modSeq: UInt64?)
    case esearch(ESearchResponse)
    /// RFC 2971: nil when the server sent `ID NIL`.
    case id([String: String]?)
    case namespace(NamespaceResponse)
    /// Untagged data this codec does not interpret (QUOTA, METADATA, SORT…):
    /// the upper-cased keyword; the rest of the line is dropped.
    case unknown(name: String)
}

/// A date-time as IMAP sends it: `"17-Jul-1996 02:44:25 -0700"`.
public struct InternalDate: Sendable, Hashable, Comparable {
    /// Seconds since 1970-01-01T00:00:00Z.
    public var secondsSinceEpoch: Int64
    /// The zone offset the server wrote, in minutes east of UTC.
    public var zoneMinutes: Int
    public init(secondsSinceEpoch: Int64, zoneMinutes: Int) {
        self.secondsSinceEpoch = secondsSinceEpoch
        self.zoneMinutes = zoneMinutes
    }
    public static func < (a: InternalDate, b: InternalDate) -> Bool { a.secondsSinceEpoch < b.secondsSinceEpoch }
}

/// A body section specifier: `BODY[]`, `BODY[HEADER.FIELDS (MESSAGE-ID)]`, `BINARY[1]`.
public struct BodySection: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable { case body, binary, rfc822, rfc822Header, rfc822Text }
    public var kind: Kind
    /// The text between `[` and `]` exactly as sent, upper-cased (empty for the whole message).
    public var specifier: String
    /// `<origin>` of a partial fetch response.
    public var origin: UInt32?
    public init(kind: Kind, specifier: String = "", origin: UInt32? = nil) {
        self.kind = kind
        self.specifier = specifier
        self.origin = origin
    }
    public var description: String {
        switch kind {
        case .body: return "BODY[\(specifier)]" + (origin.map { "<\($0)>" } ?? "")
        case .binary: return "BINARY[\(specifier)]" + (origin.map { "<\($0)>" } ?? "")
        case .rfc822: return "RFC822"
        case .rfc822Header: return "RFC822.HEADER"
        case .rfc822Text: return "RFC822.TEXT"
        }
    }
}

/// Non-streamed FETCH data items.
public enum FetchAttribute: Sendable, Hashable {
    case uid(UInt32)
    case flags([Flag])
    case internalDate(InternalDate)
    case rfc822Size(UInt64)
    case modSeq(UInt64)
    /// X-GM-MSGID and other items we do not interpret: name and the raw bytes of the value.
    case unknown(name: String)
}

/// FETCH responses are delivered as a stream of events so bodies are never
/// accumulated: `start`, any number of `attribute` and body triples
/// (`bodyBegin`, `bodyBytes`…, `bodyEnd`), then `finish`.
public enum FetchEvent: Sendable, Hashable {
    case start(sequenceNumber: UInt32)
    case attribute(FetchAttribute)
    /// `size` is the literal's length; a NIL body is `bodyBegin(size: 0)` + `bodyEnd`.
    case bodyBegin(BodySection, size: UInt64)
    case bodyBytes(ByteBuffer)
    case bodyEnd
    case finish
}

/// What the parser yields.
public enum ResponseEvent: Sendable, Hashable {
    /// The first line of the connection.
    case greeting(UntaggedCondition)
    /// `+ text` (or base64 data during AUTHENTICATE).
    case continuation(String)
    case tagged(TaggedResponse)
    case untagged(UntaggedResponse)
    case fetch(FetchEvent)
}
