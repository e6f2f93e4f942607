import Logging
import SyncState

/// Pairs the two sides' mailboxes and propagates creations and deletions.
///
/// Rules (copied into the README):
/// - A mailbox on one side with no partner is created on the other side,
///   under the mapped name: a special-use role maps to the name configured
///   for it (or to the mailbox holding that role on the far side), other
///   names keep their path with the other side's hierarchy delimiter.
/// - A synced mailbox deleted on one side is deleted on the other side only
///   if the surviving copy holds nothing unsynced: every message paired and
///   with the agreed flags, and no copy or expunge pending. Otherwise the
///   deleted mailbox is created again (warning) and refilled, since deleting
///   would lose mail the deleting side never saw.
/// - A synced mailbox gone from both sides is forgotten.
/// - `pull`/`push` create and delete only on the side they may write.
/// - With `onlyFolders` (`--folder`), the rules apply to the named pairs
///   only; every other mailbox is left as it is, even one deleted on one
///   side, so a run limited to one folder never acts on the others.
struct FolderSync {
    struct Entry: Sendable {
        var record: MailboxPairRecord
        var infos: Sides<MailboxInfo>
        /// In a dry run, the side where the mailbox would have been created.
        var absent: Side? = nil
    }

    struct Result: Sendable {
        var pairs: [Entry] = []
        var changes: [FolderChange] = []
        var errors: [SyncError] = []
        var trash = Sides<String?>(far: nil, near: nil)
        var policy: ExpungePolicy = .propagate

        /// The deletion rule of each side for one mailbox pair.
        func deletion(for record: MailboxPairRecord) -> Sides<DeletionRule> {
            switch policy {
            case .propagate:
                return Sides(far: .propagate, near: .propagate)
            case .keepLocal:
                return Sides(far: .propagate, near: .keep)
            case .trash:
                let names = Sides(far: record.farName, near: record.nearName)
                return Sides { side in
                    guard let trash = trash[side] else { return .keep }
                    // Messages deleted from the Trash itself are expunged.
                    return trash == names[side] ? .propagate : .moveToTrash(mailbox: trash)
                }
            }
        }
    }

    let account: String
    let accountId: Int64
    let state: StateStore
    let stores: Sides<any MailStore>
    let options: SyncOptions
    let logger: Logger

    func run() async throws -> Result {
        var result = Result()
        result.policy = options.expungePolicy
        let lists = Sides(
            far: try await io(.far, "LIST") { try await stores.far.listMailboxes() }.filter(\.selectable),
            near: try await io(.near, "LIST") { try await stores.near.listMailboxes() }.filter(\.selectable))
        var byName = lists.map { Dictionary($0.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }) }
        let writable = options.direction.writable
        let farDelimiter = lists.far.first?.delimiter
        let farNamesByRole = Dictionary(lists.far.compactMap { box in box.role.map { ($0, box.name) } }, uniquingKeysWith: { first, _ in first })
        var taken = Sides<Set<String>>(far: [], near: [])
        var syntheticId: Int64 = -1

        func pair(_ names: Sides<String>, role: SpecialUse?, existing: MailboxPairRecord? = nil) throws -> MailboxPairRecord {
            if options.dryRun {
                // Nothing is recorded in a dry run; a stand-in row lets the
                // mailbox be planned (it has no message pairs).
                if let existing { return existing }
                defer { syntheticId -= 1 }
                return MailboxPairRecord(id: syntheticId, accountId: accountId, farName: names.far, nearName: names.near,
                                         nearUidValidity: 0, specialUse: role?.rawValue)
            }
            return try st { try state.upsertMailboxPair(account: accountId, farName: names.far, nearName: names.near, specialUse: role?.rawValue) }
        }

        func create(_ side: Side, _ name: String, role: SpecialUse?) async throws {
            if !options.dryRun {
                try await io(side, "CREATE \(name)") { try await stores[side].createMailbox(name, role: role) }
            }
            byName[side][name] = MailboxInfo(name: name, role: role, delimiter: side == .near ? options.mapping.nearDelimiter : farDelimiter)
        }

        // Mailboxes synced before.
        let known = try st { try state.mailboxPairs(account: accountId) }
        try checkOnlyFolders(known: known, lists: lists, farDelimiter: farDelimiter, farNamesByRole: farNamesByRole)
        for record in known {
            let names = Sides(far: record.farName, near: record.nearName)
            taken.far.insert(names.far)
            taken.near.insert(names.near)
            guard options.selects(names) else { continue }
            let present = Sides(far: byName.far[names.far], near: byName.near[names.near])
            do {
                switch (present.far, present.near) {
                case let (far?, near?):
                    result.pairs.append(Entry(record: record, infos: Sides(far: far, near: near)))
                case (nil, nil):
                    if !options.dryRun { try st { try state.forgetMailboxPair(record.id!) } }
                    result.changes.append(.forgotten(name: names.far))
                case let (far, near):
                    let gone: Side = far == nil ? .far : .near
                    let survivor = gone.opposite
                    let role = record.specialUse.map(SpecialUse.init(rawValue:))
                    if try await holdsUnsynced(record, on: survivor) {
                        guard writable[gone] else { continue }
                        logger.warning("mailbox was deleted on one side but the other still holds unsynced messages; creating it again", metadata: [
                            "ferrymail.mailbox": "\(names[gone])", "ferrymail.side": "\(gone.rawValue)"])
                        try await create(gone, names[gone], role: role)
                        var fresh = record
                        if !options.dryRun {
                            // Its message pairs describe the deleted mailbox:
                            // drop them so everything is copied afresh.
                            try st { try state.markMailboxPairDeleted(record.id!) }
                            fresh = try pair(names, role: role)
                        }
                        result.changes.append(.recreated(side: gone, name: names[gone]))
                        let infos = Sides(far: far ?? byName.far[names.far]!, near: near ?? byName.near[names.near]!)
                        result.pairs.append(Entry(record: fresh, infos: infos, absent: options.dryRun ? gone : nil))
                    } else {
                        guard writable[survivor] else { continue }
                        if !options.dryRun {
                            try await io(survivor, "DELETE \(names[survivor])") { try await stores[survivor].deleteMailbox(names[survivor]) }
                            try st { try state.forgetMailboxPair(record.id!) }
                        }
                        byName[survivor][names[survivor]] = nil
                        result.changes.append(.deleted(side: survivor, name: names[survivor]))
                    }
                }
            } catch let error as SyncError {
                result.errors.append(error)
            }
        }

        // Mailboxes new on the far side.
        for far in lists.far where !taken.far.contains(far.name) {
            let nearName = options.mapping.nearName(for: far)
            guard options.selects(Sides(far: far.name, near: nearName)) else { continue }
            guard !taken.near.contains(nearName) else {
                logger.warning("far mailbox maps to a near folder already paired with another mailbox; skipped", metadata: [
                    "ferrymail.mailbox": "\(far.name)", "ferrymail.near": "\(nearName)"])
                continue
            }
            do {
                if byName.near[nearName] == nil {
                    guard writable.near else { continue }
                    try await create(.near, nearName, role: far.role)
                    result.changes.append(.created(side: .near, name: nearName))
                }
                let absent: Side? = options.dryRun && lists.near.allSatisfy({ $0.name != nearName }) ? .near : nil
                let record = try pair(Sides(far: far.name, near: nearName), role: far.role)
                result.pairs.append(Entry(record: record, infos: Sides(far: far, near: byName.near[nearName]!), absent: absent))
                taken.far.insert(far.name)
                taken.near.insert(nearName)
            } catch let error as SyncError {
                result.errors.append(error)
            }
        }

        // Mailboxes new on the near side.
        for near in lists.near where !taken.near.contains(near.name) {
            let (farName, role) = options.mapping.farName(for: near, farDelimiter: farDelimiter, farNamesByRole: farNamesByRole)
            guard options.selects(Sides(far: farName, near: near.name)), !taken.far.contains(farName) else { continue }
            do {
                if byName.far[farName] == nil {
                    guard writable.far else { continue }
                    try await create(.far, farName, role: role)
                    result.changes.append(.created(side: .far, name: farName))
                }
                let absent: Side? = options.dryRun && lists.far.allSatisfy({ $0.name != farName }) ? .far : nil
                let record = try pair(Sides(far: farName, near: near.name), role: role)
                result.pairs.append(Entry(record: record, infos: Sides(far: byName.far[farName]!, near: near), absent: absent))
                taken.far.insert(farName)
                taken.near.insert(near.name)
            } catch let error as SyncError {
                result.errors.append(error)
            }
        }

        // Trash mailboxes, for the `trash` expunge policy.
        let farTrash = byName.far.values.first { $0.role == .trash }?.name
        result.trash = Sides(
            far: farTrash,
            near: options.mapping.nearNamesByRole[.trash]
                ?? byName.near.values.first { $0.role == .trash }?.name
                ?? result.pairs.first { $0.record.farName == farTrash }?.record.nearName)
        if options.expungePolicy == .trash {
            for side in Side.allCases where result.trash[side] == nil {
                result.errors.append(.noTrashMailbox(account: account, side: side))
            }
        }
        result.pairs.sort { $0.record.farName < $1.record.farName }
        return result
    }

    /// Refuses the run, before anything is created or deleted, when an
    /// `onlyFolders` name selects no pair: neither side's name of a listed
    /// mailbox (a new one's partner name included, so the local `Sent`
    /// finds `[Gmail]/Sent Mail` before it was ever synced) nor of a known
    /// pair still present on one side.
    private func checkOnlyFolders(known: [MailboxPairRecord], lists: Sides<[MailboxInfo]>, farDelimiter: Character?,
                                  farNamesByRole: [SpecialUse: String]) throws {
        guard !options.onlyFolders.isEmpty else { return }
        let listed = lists.map { Set($0.map(\.name)) }
        var candidates = known.filter { listed.far.contains($0.farName) || listed.near.contains($0.nearName) }
            .map { Sides(far: $0.farName, near: $0.nearName) }
        candidates += lists.far.map { Sides(far: $0.name, near: options.mapping.nearName(for: $0)) }
        candidates += lists.near.map { near in
            Sides(far: options.mapping.farName(for: near, farDelimiter: farDelimiter, farNamesByRole: farNamesByRole).name, near: near.name)
        }
        let unknown = options.onlyFolders.filter { folder in
            !candidates.contains { SyncOptions.folder(folder, names: $0) }
        }
        guard unknown.isEmpty else {
            throw SyncError.noSuchFolder(account: account, folders: unknown,
                                         existing: listed.far.union(listed.near).sorted())
        }
    }

    /// True when the mailbox on `side` holds something the other side never
    /// got: a message the state does not pair, flags other than the agreed
    /// ones, or an unfinished copy or expunge.
    private func holdsUnsynced(_ record: MailboxPairRecord, on side: Side) async throws -> Bool {
        let id = record.id!
        if try st({ try !state.pendingCopies(in: id).isEmpty || !state.pendingExpunges(in: id).isEmpty }) { return true }
        let name = side == .far ? record.farName : record.nearName
        let store = stores[side]
        let status = try await io(side, "SELECT \(name)") { try await store.select(name) }
        let listing = try await io(side, "listing \(name)") { try await store.messages(in: name, changedSince: nil) }
        let columns = StateColumns(account: account, mailbox: record.farName, kinds: stores.map(\.capabilities.keyKind))
        let pairs = try st { try state.pairs(in: id) }.map(columns.statePair)
        var agreed: [MessageKey: MessageFlags] = [:]
        for pair in pairs { if let key = pair.keys[side] { agreed[key] = pair.flags } }
        for message in listing.messages {
            guard let flags = agreed[message.key] else { return true }
            let current = FlagMerge.normalized(message.flags)
            let expected = (status.keywords ?? store.capabilities.keywords) ? flags : FlagMerge.systemFlags(flags)
            if current != expected { return true }
        }
        return false
    }

    private func st<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as SyncError {
            throw error
        } catch {
            throw SyncError.state(account: account, mailbox: nil, cause: "\(error)")
        }
    }

    private func io<T>(_ side: Side, _ operation: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SyncError {
            throw error
        } catch {
            throw SyncError.store(account: account, mailbox: nil, side: side, operation: operation, cause: "\(error)")
        }
    }
}
