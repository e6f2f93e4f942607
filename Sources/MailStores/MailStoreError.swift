import SyncEngine

/// The engine's mailbox status, named apart from IMAPCodec's `MailboxStatus`
/// (STATUS response values) for files that import both modules: this file
/// imports only the engine, so the name resolves unambiguously here.
public typealias EngineMailboxStatus = MailboxStatus

/// The one error type of the concrete stores. Every case names the account,
/// the mailbox (where there is one) and the cause, because the engine and the
/// CLI print it as one line without further context.
public enum MailStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// An IMAP command failed; `cause` is the client's description (which
    /// names the host and the redacted command).
    case imap(account: String, mailbox: String?, operation: String, cause: String)
    /// A Maildir operation failed; `cause` names the path and errno.
    case maildir(account: String, mailbox: String?, operation: String, cause: String)
    /// A key of the wrong kind reached the store (a UID for the Maildir store,
    /// a name for the IMAP store): a bug in the caller.
    case wrongKeyKind(account: String, mailbox: String, key: MessageKey)
    /// An append received a different number of bytes than its envelope announced.
    case appendSizeMismatch(account: String, mailbox: String, announced: Int64, received: Int64)
    /// A write or finish on an append that was already finished or cancelled.
    case appendFinished(account: String, mailbox: String)

    public var description: String {
        func place(_ account: String, _ mailbox: String?) -> String {
            "account \(account)" + (mailbox.map { ", mailbox \($0)" } ?? "")
        }
        switch self {
        case let .imap(account, mailbox, operation, cause):
            return "\(place(account, mailbox)): IMAP \(operation) failed: \(cause)"
        case let .maildir(account, mailbox, operation, cause):
            return "\(place(account, mailbox)): Maildir \(operation) failed: \(cause)"
        case let .wrongKeyKind(account, mailbox, key):
            return "\(place(account, mailbox)): the store was given \(key), which is not one of its keys (please report this bug)"
        case let .appendSizeMismatch(account, mailbox, announced, received):
            return "\(place(account, mailbox)): append announced \(announced) bytes but received \(received); "
                + "the message was not stored (the source changed while it was copied; the next sync retries)"
        case let .appendFinished(account, mailbox):
            return "\(place(account, mailbox)): append used after it was finished or cancelled (please report this bug)"
        }
    }
}
