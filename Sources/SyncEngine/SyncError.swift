import SyncState

/// Every failure the engine reports.
///
/// Each message names the account, the mailbox and the cause, and says what
/// to do where the user can do something, because the daemon and the CLI
/// print it as one line without further context.
public enum SyncError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Both sides changed UIDVALIDITY since the last sync: no stored key on
    /// either side can be trusted, so there is nothing left to re-pair from.
    case uidValidityChangedOnBothSides(account: String, mailbox: String)
    /// The plan would delete more than the configured share of a mailbox's
    /// messages on one side.
    case massDeletion(account: String, mailbox: String, side: Side, deletions: Int, messages: Int, share: Double)
    /// A store reported keys of the wrong kind for the state column they map to.
    case keyKindMismatch(account: String, mailbox: String, side: Side, key: MessageKey)
    /// Expunge policy `trash` but the side has no Trash mailbox.
    case noTrashMailbox(account: String, side: Side)
    /// A store operation failed.
    case store(account: String, mailbox: String?, side: Side, operation: String, cause: String)
    /// The sync state refused a read or write.
    case state(account: String, mailbox: String?, cause: String)
    /// A dry run reached a store mutation: a bug, reported instead of changing anything.
    case dryRunViolation(account: String, operation: String)
    /// The destination refused one message (too large, over quota, …); the
    /// others were copied, and this one is tried again on the next run.
    case messageRejected(account: String, mailbox: String, side: Side, message: String, size: Int64, reason: String)
    /// The message is larger than the account's `max_message_size`; it is
    /// not copied (on every run, until the limit is raised).
    case messageTooLarge(account: String, mailbox: String, side: Side, message: String, size: Int64, limit: Int64)
    /// `--folder` named folders that exist on neither side (after the
    /// account's include/exclude patterns). The whole run is refused, since
    /// a typo would otherwise look like a successful sync of nothing.
    case noSuchFolder(account: String, folders: [String], existing: [String])

    public var description: String {
        switch self {
        case let .uidValidityChangedOnBothSides(account, mailbox):
            return "account \(account), mailbox \(mailbox): UIDVALIDITY changed on both sides since the last sync, so no message can be matched to its copy; "
                + "nothing was changed. Recovery: run `SyncEngine.resetMailboxState` (ferrymail reset-mailbox) for this mailbox: the next sync pairs messages present "
                + "on both sides by Message-ID, size and date and copies the rest both ways (messages deleted on one side since the last sync come back)"
        case let .massDeletion(account, mailbox, side, deletions, messages, share):
            let percent = Int((share * 100).rounded())
            return "account \(account), mailbox \(mailbox): refusing to delete \(deletions) of \(messages) messages on the \(side.rawValue) side "
                + "(more than \(percent)%); if this is intended, run again with --allow-mass-delete"
        case let .keyKindMismatch(account, mailbox, side, key):
            return "account \(account), mailbox \(mailbox): the \(side.rawValue) store reported \(key), which the sync state cannot record for that side "
                + "(the far store must use UIDs); check the account's store types"
        case let .noTrashMailbox(account, side):
            return "account \(account): expunge policy 'trash' needs a Trash mailbox on the \(side.rawValue) side (special-use \\Trash or configured); create one or change the policy"
        case let .store(account, mailbox, side, operation, cause):
            let place = mailbox.map { ", mailbox \($0)" } ?? ""
            return "account \(account)\(place): \(side.rawValue) store failed \(operation): \(cause)"
        case let .state(account, mailbox, cause):
            let place = mailbox.map { ", mailbox \($0)" } ?? ""
            return "account \(account)\(place): \(cause)"
        case let .dryRunViolation(account, operation):
            return "account \(account): dry run attempted \(operation); nothing was changed (please report this bug)"
        case let .messageRejected(account, mailbox, side, message, size, reason):
            return "account \(account), mailbox \(mailbox): the \(side.rawValue) side refused message \(message) (\(size) bytes): \(reason); "
                + "the other messages were copied and this one is tried again on the next run"
        case let .messageTooLarge(account, mailbox, side, message, size, limit):
            return "account \(account), mailbox \(mailbox): message \(message) (\(size) bytes) was not copied to the \(side.rawValue) side: "
                + "larger than max_message_size (\(limit) bytes); raise the limit to copy it"
        case let .noSuchFolder(account, folders, existing):
            let named = folders.map { "\"\($0)\"" }.joined(separator: ", ")
            let known = existing.isEmpty ? "none" : existing.joined(separator: ", ")
            return "account \(account): no folder \(named) on either side, nothing was synced; "
                + "folders (server and local names, after include/exclude): \(known)"
        }
    }
}
