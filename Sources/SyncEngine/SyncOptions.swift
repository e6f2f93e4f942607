import SyncState

/// Which way changes flow.
public enum SyncDirection: String, Sendable, Hashable, CaseIterable {
    /// Both ways (`ferrymail sync`).
    case both
    /// Far → near only (`ferrymail pull`): nothing on the far side changes.
    case pull
    /// Near → far only (`ferrymail push`): nothing on the near side changes.
    case push

    /// The sides a run in this direction may change.
    public var writable: Sides<Bool> {
        switch self {
        case .both: Sides(far: true, near: true)
        case .pull: Sides(far: false, near: true)
        case .push: Sides(far: true, near: false)
        }
    }
}

/// What happens to a message on one side when it was expunged on the other.
public enum ExpungePolicy: String, Sendable, Hashable, CaseIterable {
    /// Expunge it on the other side too.
    case propagate
    /// Never delete locally (near): a message expunged on the server stays in
    /// the Maildir, and is not uploaded again. Near-side deletions still
    /// propagate to the server.
    case keepLocal
    /// Move it to the Trash mailbox of the side it is removed from, instead
    /// of expunging it.
    case trash
}

/// How mailbox names and special-use roles map between the sides.
public struct MailboxMapping: Sendable, Hashable {
    /// Near folder names for far mailboxes with a special-use role, e.g.
    /// `[.sent: "Sent"]` pairs Gmail's `[Gmail]/Sent Mail` with `Sent`. A near
    /// folder of that name is created on the far side with the role.
    public var nearNamesByRole: [SpecialUse: String]
    /// The near side's hierarchy delimiter.
    public var nearDelimiter: Character
    /// Explicit renames, far name → near name (`[account.folder_map]`,
    /// `restore --folder-map OLD=NEW`). They win over roles: the user said so.
    public var nearNamesByFarName: [String: String]

    public init(nearNamesByRole: [SpecialUse: String] = [:], nearDelimiter: Character = "/",
                nearNamesByFarName: [String: String] = [:]) {
        self.nearNamesByRole = nearNamesByRole
        self.nearDelimiter = nearDelimiter
        self.nearNamesByFarName = nearNamesByFarName
    }

    /// For a restore into an existing account (the near side): a folder with
    /// a special-use role lands in the target's folder of that role (its
    /// `\Sent` may be called "Sent Items"), under the target's hierarchy
    /// delimiter, unless `renames` says otherwise.
    public static func onto(target mailboxes: [MailboxInfo], renames: [String: String] = [:]) -> MailboxMapping {
        var byRole: [SpecialUse: String] = [:]
        var delimiter: Character = "/"
        for mailbox in mailboxes {
            if let role = mailbox.role, byRole[role] == nil { byRole[role] = mailbox.name }
            if let d = mailbox.delimiter { delimiter = d }
        }
        return MailboxMapping(nearNamesByRole: byRole, nearDelimiter: delimiter, nearNamesByFarName: renames)
    }

    /// The near name for a far mailbox: an explicit rename, the role's
    /// configured name, or the same path with the near delimiter.
    public func nearName(for far: MailboxInfo) -> String {
        if let name = nearNamesByFarName[far.name] { return name }
        if let role = far.role, let name = nearNamesByRole[role] { return name }
        return Self.translate(far.name, from: far.delimiter, to: nearDelimiter)
    }

    /// The far name and role for a near folder: the far mailbox holding the
    /// same role if there is one, else the same path with the far delimiter.
    public func farName(for near: MailboxInfo, farDelimiter: Character?, farNamesByRole: [SpecialUse: String]) -> (name: String, role: SpecialUse?) {
        if let far = nearNamesByFarName.first(where: { $0.value == near.name })?.key {
            return (far, near.role)
        }
        let role = near.role ?? nearNamesByRole.first { $0.value == near.name }?.key
        if let role, let existing = farNamesByRole[role] { return (existing, role) }
        return (Self.translate(near.name, from: near.delimiter ?? nearDelimiter, to: farDelimiter ?? "/"), role)
    }

    static func translate(_ name: String, from source: Character?, to destination: Character) -> String {
        guard let source, source != destination else { return name }
        return String(name.map { $0 == source ? destination : $0 })
    }
}

/// Everything a run of one account can be told.
public struct SyncOptions: Sendable, Hashable {
    public var direction: SyncDirection
    /// `--dry-run`: plan and report, change nothing (stores nor state).
    public var dryRun: Bool
    public var expungePolicy: ExpungePolicy
    public var massDeletion: MassDeletionGuard
    /// How many mailbox pairs are synced at once, each on its own pair of
    /// store handles.
    public var maxConcurrentMailboxes: Int
    public var mapping: MailboxMapping
    /// Copies are journaled and confirmed in batches of at most this many
    /// messages and `copyBatchBytes` bytes (a batch holds at least one):
    /// each batch costs a FETCH, two state transactions and a directory
    /// fsync, so small messages go in large batches; large ones in small
    /// batches, so an interruption has little to redo.
    public var copyBatchSize: Int
    public var copyBatchBytes: Int64
    /// Messages larger than this many bytes are not copied either way (and
    /// reported as such on every run); nil copies everything.
    public var maxMessageSize: Int64?
    /// `--folder`: only the mailbox pairs whose far or near name is one of
    /// these are created, deleted or synced; empty means all. Either name
    /// is accepted because users know a folder by the name their webmail or
    /// their mail reader shows, and the two differ for mapped folders
    /// (`[Gmail]/Sent Mail` is the local `Sent`).
    public var onlyFolders: [String]
    /// How many listed messages and state rows the loaded mailboxes of one
    /// run may hold at once (see `ListingBudget`). Memory then grows with
    /// the largest mailbox, not with the account: beyond it, mailboxes are
    /// loaded one after another and listed again when their turn to
    /// propagate comes.
    public var heldMessages: Int = ListingBudget.defaultLimit

    public init(direction: SyncDirection = .both, dryRun: Bool = false, expungePolicy: ExpungePolicy = .propagate,
                massDeletion: MassDeletionGuard = MassDeletionGuard(), maxConcurrentMailboxes: Int = 4,
                mapping: MailboxMapping = MailboxMapping(), copyBatchSize: Int = 500, copyBatchBytes: Int64 = 16 << 20,
                maxMessageSize: Int64? = nil, onlyFolders: [String] = []) {
        self.onlyFolders = onlyFolders
        self.copyBatchBytes = max(1, copyBatchBytes)
        self.maxMessageSize = maxMessageSize
        self.direction = direction
        self.dryRun = dryRun
        self.expungePolicy = expungePolicy
        self.massDeletion = massDeletion
        self.maxConcurrentMailboxes = max(1, maxConcurrentMailboxes)
        self.mapping = mapping
        self.copyBatchSize = max(1, copyBatchSize)
    }

    /// Whether a message of this size may be copied (`maxMessageSize`).
    public func admits(size: Int64) -> Bool {
        maxMessageSize.map { size <= $0 } ?? true
    }

    /// Whether the mailbox pair with these names is part of this run (`onlyFolders`).
    public func selects(_ names: Sides<String>) -> Bool {
        onlyFolders.isEmpty || onlyFolders.contains { Self.folder($0, names: names) }
    }

    /// Whether `folder`, as the user typed it, is either name of the pair:
    /// exactly, except that `INBOX` is case-insensitive, as in IMAP.
    static func folder(_ folder: String, names pair: Sides<String>) -> Bool {
        [pair.far, pair.near].contains { $0 == folder || ($0.uppercased() == "INBOX" && folder.uppercased() == "INBOX") }
    }
}

extension SyncOptions {
    /// How many set-aside messages are planned and copied at once, and the
    /// page size of a paged first download (`MailboxSync.copySlice`).
    var copySlice: Int { max(1, min(heldMessages / 4, 10_000)) }
}
