import NIOCore

// Commands a sync client sends. The encoder (`CommandEncoder`) turns one into
// wire chunks; literals are chosen from the server's capabilities (LITERAL+,
// LITERAL-, or synchronizing literals that wait for a continuation).

/// Which messages a FETCH/STORE/COPY addresses.
public enum FetchItem: Sendable, Hashable {
    case uid, flags, internalDate, rfc822Size, modSeq
    /// `BODY.PEEK[specifier]<partial>` when peek, else `BODY[...]`.
    case body(specifier: String = "", peek: Bool = true, partial: ClosedRange<UInt64>? = nil)
    /// `BODY.PEEK[HEADER.FIELDS (A B)]`
    case headerFields([String], peek: Bool = true)
    case binary(specifier: String = "", peek: Bool = true)
}

public enum StoreOperation: Sendable, Hashable {
    case add, remove, replace
}

public struct SelectParameters: Sendable, Hashable {
    /// `(CONDSTORE)` — ask for MODSEQ data (RFC 7162 §3.1.8).
    public var condStore: Bool
    /// `(QRESYNC (uidvalidity modseq [known-uids]))` (RFC 7162 §3.2.5).
    public var qresync: QResyncParameters?
    public init(condStore: Bool = false, qresync: QResyncParameters? = nil) {
        self.condStore = condStore
        self.qresync = qresync
    }
}

public struct QResyncParameters: Sendable, Hashable {
    public var uidValidity: UInt32
    public var modSeq: UInt64
    public var knownUIDs: UIDSet?
    public init(uidValidity: UInt32, modSeq: UInt64, knownUIDs: UIDSet? = nil) {
        self.uidValidity = uidValidity
        self.modSeq = modSeq
        self.knownUIDs = knownUIDs
    }
}

/// LIST selection and return options (RFC 5258, 5819, 6154).
public struct ListOptions: Sendable, Hashable {
    public var selectSubscribed: Bool
    public var selectSpecialUse: Bool
    public var returnSpecialUse: Bool
    public var returnChildren: Bool
    public var returnSubscribed: Bool
    public var returnStatus: [StatusAttribute]
    public init(selectSubscribed: Bool = false, selectSpecialUse: Bool = false, returnSpecialUse: Bool = false,
                returnChildren: Bool = false, returnSubscribed: Bool = false, returnStatus: [StatusAttribute] = []) {
        self.selectSubscribed = selectSubscribed
        self.selectSpecialUse = selectSpecialUse
        self.returnSpecialUse = returnSpecialUse
        self.returnChildren = returnChildren
        self.returnSubscribed = returnSubscribed
        self.returnStatus = returnStatus
    }
    public var isEmpty: Bool { self == ListOptions() }
}

/// Search criteria a sync engine needs; `raw` for anything else (sent verbatim, ASCII only).
public indirect enum SearchKey: Sendable, Hashable {
    case all
    case uid(UIDSet)
    case modSeq(UInt64)
    case header(field: String, value: String)
    case larger(UInt64)
    case smaller(UInt64)
    case since(year: Int, month: Int, day: Int)
    case before(year: Int, month: Int, day: Int)
    case deleted, undeleted, seen, unseen
    case and([SearchKey])
    case or(SearchKey, SearchKey)
    case not(SearchKey)
}

/// ESEARCH return options (RFC 4731).
public enum SearchReturnOption: String, Sendable, Hashable {
    case min = "MIN", max = "MAX", all = "ALL", count = "COUNT"
}

/// One message of an APPEND (or each message of a MULTIAPPEND). The body is not
/// part of the command value: the encoder emits the command up to the literal
/// header, and the client streams `size` bytes from its source after it.
public struct AppendMessage: Sendable, Hashable {
    public var flags: [Flag]
    public var internalDate: InternalDate?
    public var size: UInt64
    public init(flags: [Flag], internalDate: InternalDate?, size: UInt64) {
        self.flags = flags
        self.internalDate = internalDate
        self.size = size
    }
}

/// NOTIFY (RFC 5465) event groups a sync daemon uses.
public enum NotifyMailboxFilter: Sendable, Hashable {
    case selected
    case selectedDelayed
    case inboxes
    case personal
    case subscribed
    case subtree([MailboxName])
    case mailboxes([MailboxName])
}

public enum NotifyEvent: String, Sendable, Hashable {
    case messageNew = "MessageNew", messageExpunge = "MessageExpunge", flagChange = "FlagChange"
    case annotationChange = "AnnotationChange", mailboxName = "MailboxName"
    case subscriptionChange = "SubscriptionChange", mailboxMetadataChange = "MailboxMetadataChange"
}

public struct NotifyEventGroup: Sendable, Hashable {
    public var filter: NotifyMailboxFilter
    /// Empty means `NONE`.
    public var events: [NotifyEvent]
    /// For MessageNew on the selected mailbox: the FETCH attributes to send along.
    public var messageNewFetch: [FetchItem]
    public init(filter: NotifyMailboxFilter, events: [NotifyEvent], messageNewFetch: [FetchItem] = []) {
        self.filter = filter
        self.events = events
        self.messageNewFetch = messageNewFetch
    }
}

public enum Command: Sendable {
    case capability
    case noop
    case logout
    case startTLS
    case login(username: String, password: String)
    /// `AUTHENTICATE mech [initial-response]`; the initial response is already base64.
    case authenticate(mechanism: String, initialResponse: String?)
    case enable([Capability])
    /// RFC 2971; nil sends `ID NIL`.
    case id([(String, String)]?)
    case namespace
    case compress
    case list(reference: MailboxName, pattern: MailboxName, options: ListOptions)
    case lsub(reference: MailboxName, pattern: MailboxName)
    case status(MailboxName, [StatusAttribute])
    case select(MailboxName, SelectParameters)
    case examine(MailboxName, SelectParameters)
    case create(MailboxName, specialUse: [MailboxAttribute])
    case delete(MailboxName)
    case rename(from: MailboxName, to: MailboxName)
    case subscribe(MailboxName)
    case unsubscribe(MailboxName)
    case close
    case unselect
    case expunge
    case uidExpunge(UIDSet)
    /// `UID FETCH set (items) [(CHANGEDSINCE m [VANISHED])]`.
    case uidFetch(UIDSet, [FetchItem], changedSince: UInt64?, vanished: Bool)
    /// `UID SEARCH [RETURN (...)] key`; `returnOptions` nil means plain SEARCH.
    case uidSearch(SearchKey, returnOptions: [SearchReturnOption]?)
    /// `UID STORE set [(UNCHANGEDSINCE m)] +FLAGS.SILENT (...)`
    case uidStore(UIDSet, StoreOperation, [Flag], silent: Bool, unchangedSince: UInt64?)
    case uidCopy(UIDSet, MailboxName)
    case uidMove(UIDSet, MailboxName)
    /// APPEND or MULTIAPPEND (several messages) — bodies streamed by the client.
    case append(MailboxName, [AppendMessage])
    case idle
    /// `DONE` ends IDLE (untagged, no tag).
    case done
    /// `NOTIFY SET [STATUS] (group)...` or `NOTIFY NONE` when groups is empty.
    case notify(status: Bool, groups: [NotifyEventGroup])
}
