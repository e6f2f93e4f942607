import SyncState

/// A change to the set of mailboxes.
public enum FolderChange: Sendable, Hashable, CustomStringConvertible {
    /// A mailbox new on one side was created on `side`.
    case created(side: Side, name: String)
    /// A mailbox deleted on one side was deleted on `side` too.
    case deleted(side: Side, name: String)
    /// A mailbox deleted on one side was created again on `side`, because
    /// the other side still held messages that were never synced.
    case recreated(side: Side, name: String)
    /// A mailbox gone from both sides; its state was dropped.
    case forgotten(name: String)

    public var description: String {
        switch self {
        case let .created(side, name): "created \(side.rawValue) mailbox \(name)"
        case let .deleted(side, name): "deleted \(side.rawValue) mailbox \(name)"
        case let .recreated(side, name): "recreated \(side.rawValue) mailbox \(name) (it held unsynced messages on the other side)"
        case let .forgotten(name): "forgot mailbox \(name) (gone on both sides)"
        }
    }
}

/// A message moved between mailboxes by the user on one side and moved the
/// same way on the other.
public struct MoveReport: Sendable, Hashable {
    /// The side where the user moved it.
    public var movedOn: Side
    public var from: String
    public var to: String
    public var key: MessageKey
}

/// What a run did (or, in a dry run, would do) to one mailbox pair.
public struct MailboxReport: Sendable, Equatable {
    public var farName: String
    public var nearName: String
    /// New messages copied, by destination side (`copied.near` = downloaded).
    public var copied = Sides(far: 0, near: 0)
    /// Messages found on both sides and paired without copying.
    public var paired = 0
    /// Messages whose flags were changed, by side.
    public var flagsChanged = Sides(far: 0, near: 0)
    /// Messages expunged or moved to Trash, by side.
    public var deleted = Sides(far: 0, near: 0)
    /// Messages moved into this mailbox from another one.
    public var movedIn = 0
    /// Skipped because its status proved nothing changed.
    public var skipped = false
    /// State rows read whole to plan this mailbox: every row, unless both
    /// sides' changes were known (a store's delta, or a full listing found
    /// to differ from the state in a few messages); then only the rows those
    /// changes mention, and the unfinished ones.
    public var pairsLoaded = 0
    /// The plan, kept for dry runs.
    public var plan: Plan?
    public var error: SyncError?
    /// Messages not copied while the rest of the mailbox was: refused by the
    /// destination, or above `max_message_size`. Never silent: each makes the
    /// run report a failure.
    public var notCopied: [SyncError] = []

    public init(farName: String, nearName: String) {
        self.farName = farName
        self.nearName = nearName
    }
}

/// What a run of one account did.
public struct SyncReport: Sendable, Equatable {
    public var account: String
    public var dryRun: Bool
    public var mailboxes: [MailboxReport] = []
    public var folderChanges: [FolderChange] = []
    public var moves: [MoveReport] = []
    /// Account-wide errors (mailbox errors are in `mailboxes`).
    public var errors: [SyncError] = []

    public init(account: String, dryRun: Bool) {
        self.account = account
        self.dryRun = dryRun
    }

    /// Every error of the run, account-wide and per mailbox.
    public var allErrors: [SyncError] { errors + mailboxes.flatMap { $0.notCopied + ($0.error.map { [$0] } ?? []) } }

    public var succeeded: Bool { allErrors.isEmpty }

    /// The totals, in the run journal's terms.
    public var counts: RunCounts {
        var counts = RunCounts()
        for mailbox in mailboxes {
            counts.fetched += mailbox.copied.near
            counts.appended += mailbox.copied.far
            counts.flagsChanged += mailbox.flagsChanged.far + mailbox.flagsChanged.near
            counts.expungedFar += mailbox.deleted.far
            counts.expungedNear += mailbox.deleted.near
        }
        counts.moved = moves.count
        return counts
    }

    public func mailbox(_ farName: String) -> MailboxReport? {
        mailboxes.first { $0.farName == farName }
    }
}
