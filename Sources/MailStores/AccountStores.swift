import Configuration
import IMAPClient
import Logging
import Maildir
import SyncEngine

/// The stores and engine options for one configured account: the glue
/// between `AccountConfiguration` and `SyncEngine`.
public struct AccountStores: Sendable {
    /// Opens one IMAP connection per call.
    public let far: StoreFactory
    /// A Maildir handle per call (cheap: one open root directory).
    public let near: StoreFactory
    public let options: SyncOptions

    /// - Parameters:
    ///   - secret: the password or token, already resolved by the caller.
    ///   - connectionsPerAccount: `[general] connections_per_account`; the
    ///     engine syncs that many mailbox pairs at once, each on its own
    ///     connection.
    ///   - onlyFolders: `sync --folder`. Applied by the engine, not by a
    ///     `FilteredStore`: a mailbox hidden from the listings would look
    ///     deleted on both sides, and its sync state would be forgotten.
    public init(account: AccountConfiguration, secret: String, connectionsPerAccount: Int = 1,
                direction: SyncDirection = .both, dryRun: Bool = false, allowMassDelete: Bool = false,
                onlyFolders: [String] = [], wireTrace: Bool = false, logger: Logger = Logger(label: "ferrymail")) {
        let imap = IMAPConfiguration(account: account, secret: secret, wireTrace: wireTrace, logger: logger)
        let name = account.name
        let filter = account.folders
        let names = account.folderNames
        let layout: MaildirLayout = account.layout == .nested ? .nested : .maildirPlusPlus
        let encoding: FolderNameEncoding = account.folderNameEncoding == .modifiedUTF7 ? .modifiedUTF7 : .utf8
        let root = account.maildir
        let toNew = account.newMailDelivery == .new

        far = {
            let store = try await IMAPStore.open(configuration: imap, account: name, logger: logger)
            return FilteredStore(store) { filter.includes($0.name, delimiter: $0.delimiter) }
        }
        // One Maildir store for all of the account's workers: it remembers
        // each folder's files and its own changes to them, which lets a run
        // prove it was the only writer (see `MaildirMailStore`), and a worker
        // may list a folder on one handle and change it on another.
        let maildir = SharedMaildirStore {
            try MaildirMailStore(root: root, layout: layout, folderNameEncoding: encoding,
                                 deliversUnseenToNew: toNew, account: name, logger: logger)
        }
        near = {
            let store = try await maildir.store()
            // Local folders are filtered by the server name they would get,
            // so an excluded mailbox is not created on the server either.
            return FilteredStore(store) { filter.includes(names.serverName(forLocalName: $0.name), delimiter: "/") }
        }

        var byRole: [SpecialUse: String] = [:]
        for (role, local) in names.specialUse { byRole[SpecialUse(rawValue: role.attribute)] = local }
        let policy: ExpungePolicy = switch account.policy.deletions {
        case .propagate: .propagate
        case .keepLocal: .keepLocal
        case .trash: .trash
        }
        options = SyncOptions(
            direction: direction, dryRun: dryRun, expungePolicy: policy,
            massDeletion: MassDeletionGuard(share: account.policy.massDeleteThreshold,
                                            minimumMessages: SyncPolicy.massDeleteGuardMinimumMessages, allow: allowMassDelete),
            maxConcurrentMailboxes: connectionsPerAccount,
            mapping: MailboxMapping(nearNamesByRole: byRole, nearDelimiter: "/", nearNamesByFarName: names.serverToLocal),
            maxMessageSize: account.policy.maxMessageSize, onlyFolders: onlyFolders)
    }
}

/// Hides the mailboxes an account's `folders` filter excludes; everything
/// else passes through unchanged.
public struct FilteredStore: MailStoreDecorator {
    public let inner: any MailStore
    private let includes: @Sendable (MailboxInfo) -> Bool

    public init(_ inner: any MailStore, includes: @escaping @Sendable (MailboxInfo) -> Bool) {
        self.inner = inner
        self.includes = includes
    }

    public func listMailboxes() async throws -> [MailboxInfo] {
        try await inner.listMailboxes().filter(includes)
    }
}

/// Opens the account's Maildir store on first use and hands out that one.
actor SharedMaildirStore {
    private let open: @Sendable () throws -> MaildirMailStore
    private var opened: MaildirMailStore?

    init(_ open: @escaping @Sendable () throws -> MaildirMailStore) {
        self.open = open
    }

    func store() throws -> MaildirMailStore {
        if let opened { return opened }
        let store = try open()
        opened = store
        return store
    }
}
