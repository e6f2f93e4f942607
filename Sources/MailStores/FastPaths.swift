import IMAPClient
import IMAPCodec

/// Which protocol strategy a sync uses against one server, decided once from its
/// capabilities. `ferrymail check` prints it and the IMAP store follows it, so
/// what the user is told is what actually happens.
public struct FastPaths: Sendable, Hashable {
    /// How a folder that may be unchanged is recognised without SELECT.
    public enum FolderStatus: String, Sendable, Hashable {
        case listStatus = "LIST-STATUS (all folders in one round trip)"
        case statusPerFolder = "STATUS per folder (pipelined)"
        /// Dovecot: see `IMAPConnection.list(…, inboxStatusFirst:)`.
        case inboxStatusFirst = "STATUS per folder (pipelined), INBOX's before LIST (Dovecot answers it from its index)"
    }
    /// How a changed folder's flag changes and expunges are loaded.
    public enum ChangeLoading: String, Sendable, Hashable {
        case qresync = "QRESYNC: UID FETCH … (CHANGEDSINCE modseq VANISHED) after SELECT: changed flags and expunges in one round trip"
        case condStore = "CONDSTORE: UID FETCH … (CHANGEDSINCE modseq) plus a UID SEARCH for expunges"
        case fullFlags = "full UID FETCH 1:* (FLAGS) (server has no CONDSTORE)"
    }
    /// MULTIAPPEND is not used where offered: it succeeds or fails as a whole,
    /// so one message the server refuses (too large, over quota) would hold
    /// back the others, while pipelined APPENDs are answered one by one and
    /// cost no round trip each either.
    public enum Upload: String, Sendable, Hashable {
        case literalPlus = "APPEND with LITERAL+, pipelined (up to 16 in flight, no round trip per message)"
        case synchronizing = "APPEND with synchronizing literals (one round trip per message)"
    }
    public enum Expunge: String, Sendable, Hashable {
        case uidExpunge = "UID EXPUNGE (UIDPLUS): only the messages Ferrymail removes"
        case flaggedOnly = "EXPUNGE, only when no other message in the folder carries \\Deleted (no UIDPLUS)"
    }
    public enum Move: String, Sendable, Hashable {
        case move = "UID MOVE"
        case copyStoreExpunge = "UID COPY + \\Deleted + expunge (no MOVE)"
    }
    public enum Notification: String, Sendable, Hashable {
        case notify = "NOTIFY: one connection watches every folder"
        case idle = "IDLE on the configured folders, STATUS polling for the rest"
        case poll = "STATUS polling only (no IDLE)"
    }

    public var folderStatus: FolderStatus
    public var changeLoading: ChangeLoading
    public var upload: Upload
    public var expunge: Expunge
    public var move: Move
    public var notification: Notification
    public var compression: Bool
    /// APPEND reports the new UID (APPENDUID), so an upload is paired without searching.
    public var appendUID: Bool

    /// `serverName`: the `name` field of the server's ID response.
    public init(capabilities: Set<Capability>, enabled: Set<Capability> = [], compressionActive: Bool = false,
                serverName: String? = nil) {
        if serverName?.lowercased() == "dovecot" {
            folderStatus = .inboxStatusFirst
        } else {
            folderStatus = capabilities.contains(.listStatus) ? .listStatus : .statusPerFolder
        }
        if capabilities.contains(.qresync) && (enabled.isEmpty || enabled.contains(.qresync)) {
            changeLoading = .qresync
        } else if capabilities.contains(.condStore) {
            changeLoading = .condStore
        } else {
            changeLoading = .fullFlags
        }
        upload = capabilities.contains(.literalPlus) ? .literalPlus : .synchronizing
        expunge = capabilities.contains(.uidPlus) ? .uidExpunge : .flaggedOnly
        appendUID = capabilities.contains(.uidPlus)
        move = capabilities.contains(.move) ? .move : .copyStoreExpunge
        if capabilities.contains(.notify) {
            notification = .notify
        } else if capabilities.contains(.idle) {
            notification = .idle
        } else {
            notification = .poll
        }
        compression = compressionActive
    }

    /// Lines for `ferrymail check`.
    public var summary: [(String, String)] {
        [
            ("unchanged folders", folderStatus.rawValue),
            ("changed folders", changeLoading.rawValue),
            ("uploads", upload.rawValue + (appendUID ? ", APPENDUID" : ", new UIDs found by Message-ID")),
            ("deletions", expunge.rawValue),
            ("moves", move.rawValue),
            ("daemon notifications", notification.rawValue),
            ("compression", compression ? "COMPRESS=DEFLATE active" : "off"),
        ]
    }
}
