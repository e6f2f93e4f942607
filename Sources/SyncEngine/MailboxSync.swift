import Logging
import SyncState

/// One mailbox pair as loaded for reconciliation.
struct LoadedMailbox: Sendable {
    var record: MailboxPairRecord
    var statuses: Sides<MailboxStatus>
    var listings: Sides<MessageListing>
    var pairs: [StatePair]
    /// Pairs left out of `pairs` because both listings are deltas that do not
    /// mention them: present and unchanged on both sides.
    var unloadedPairs = 0
    var invalidated: Sides<Bool>
    /// Sides whose unpaired messages were listed without their Message-IDs
    /// (see `MailboxSync.load`): copies read them batch by batch, and the
    /// move detector asks for those whose size matches a vanished pair.
    var deferredMessageIds = Sides(far: false, near: false)
    /// New messages of one side taken out of its listing to be copied a
    /// slice at a time (`MailboxSync.setAsideNewMessages`).
    var setAside: SetAsideMessages?

    var names: Sides<String> { Sides(far: record.farName, near: record.nearName) }

    /// Listing entries and state rows held: what the `ListingBudget` counts.
    var heldEntries: Int {
        listings.far.messageCount + listings.near.messageCount + pairs.count + (setAside?.messages.count ?? 0)
    }
}

/// The unpaired messages of `side` when the other side has none: each can
/// only be copied across, whatever the rest of the mailbox holds, so they
/// are planned and copied a slice at a time instead of all at once. At a
/// first download of a 200,000-message folder, planning them whole held the
/// plan (19 MB) and the reconciler's view of them (17 MB) beside the
/// listing (18 MB).
///
/// A first download whose source lists part of a mailbox
/// (`MailStore.messages(in:after:limit:)`) is not listed whole at all: the
/// set-aside messages are one page, and the next is listed when they are done.
struct SetAsideMessages: Sendable {
    var side: Side
    /// In key order, as the reconciler would copy them.
    var messages: [MessageInfo]
    /// Where the next page starts (after this key); nil once a page came
    /// back empty, or for messages taken from a whole listing.
    var nextPageAfter: MessageKey?

    var isPaged: Bool { nextPageAfter != nil }

    /// Adds the copies these messages make to a plan observer's counts:
    /// none when the destination is read-only, none of a size not admitted.
    func countPlanned(_ options: SyncOptions, messages: inout Sides<Int>, bytes: inout Sides<Int64>) {
        guard options.direction.writable[side.opposite] else { return }
        for message in self.messages where options.admits(size: message.size) {
            messages[side.opposite] += 1
            bytes[side.opposite] += message.size
        }
    }
}

/// The executor for one mailbox pair: isync's phases from open to commit.
///
/// Ordering rules that make every step restartable:
/// - a copy is journaled (`recordPending`) before its first byte moves, and
///   confirmed (`completeCopies`) after the destination confirmed it;
/// - an expunge is journaled (`recordPendingExpunge`) before it is made;
/// - flags are recorded as agreed only after both sides carry them, and a
///   newly paired message is first recorded with the flags both sides
///   already share, so an interruption redoes the merge instead of reading a
///   half-applied change as a removal;
/// - watermarks are committed last: an interrupted run is redone from the
///   old ones, never skips work.
struct MailboxSync: Sendable {
    let account: String
    let state: StateStore
    let record: MailboxPairRecord
    let stores: Sides<any MailStore>
    let options: SyncOptions
    let deletion: Sides<DeletionRule>
    /// Dry run only: the side where the mailbox would have been created; it
    /// is planned as empty.
    var absent: Side? = nil
    let logger: Logger
    /// Told of the copies of pages listed after the plan was made.
    var planObserver: (@Sendable (PlannedTransfers) -> Void)? = nil

    var names: Sides<String> { Sides(far: record.farName, near: record.nearName) }
    var mailboxId: Int64 { record.id! }
    var columns: StateColumns {
        StateColumns(account: account, mailbox: record.farName, kinds: stores.map(\.capabilities.keyKind))
    }

    // MARK: - Open, validate, resolve, load

    func load() async throws -> LoadedMailbox {
        let statuses = Sides(far: try await select(.far), near: try await select(.near))
        var record = self.record
        let storedNear = NearWatermarkText.decode(record.nearScanToken)

        // UIDVALIDITY: a change means every stored key of that side is
        // meaningless. One side → re-pair by identity; both → nothing left to
        // match against, so refuse rather than guess.
        let changed = Sides(
            far: record.farUidValidity != nil && statuses.far.uidValidity != nil && record.farUidValidity != statuses.far.uidValidity,
            near: storedNear.uidValidity != nil && statuses.near.uidValidity != nil && storedNear.uidValidity != statuses.near.uidValidity)
        if changed.far && changed.near {
            throw SyncError.uidValidityChangedOnBothSides(account: account, mailbox: names.far)
        }
        for side in Side.allCases where changed[side] {
            logger.warning("UIDVALIDITY changed; re-pairing messages by Message-ID, size and date", metadata: [
                "ferrymail.side": "\(side.rawValue)", "ferrymail.mailbox": "\(names[side])"])
        }
        if let validity = statuses.far.uidValidity, validity != record.farUidValidity, !options.dryRun {
            // Adopt the far UIDVALIDITY (first sync, or after a change): the
            // state clears far UIDs in the same transaction.
            let reset = try st { try state.resetFarUidValidity(mailbox: mailboxId, newValidity: validity) }
            if !reset.abandonedTransfers.isEmpty {
                logger.info("dropped unfinished downloads after UIDVALIDITY change; delivered copies are re-paired by Message-ID",
                            metadata: ["ferrymail.transfers": "\(reset.abandonedTransfers.count)"])
            }
            record = try st { try state.mailboxPair(id: mailboxId) }
        }

        let pending = try st { try state.pendingCopies(in: mailboxId) }
        // Deltas are relative to stored keys, so they are only asked for when
        // those keys are trustworthy and no copy is unresolved.
        let useDelta = pending.isEmpty && !changed.far && !changed.near
        let farMark: SyncWatermark? = (record.farUidNext != nil || record.farHighestModSeq != nil)
            ? SyncWatermark(uidValidity: record.farUidValidity, uidNext: record.farUidNext, highestModSeq: record.farHighestModSeq)
            : nil
        let nearMark: SyncWatermark? = (storedNear.scanToken != nil || storedNear.highestModSeq != nil) ? storedNear : nil
        // A store that can compare its full listing with the state itself
        // builds entries only for what differs (`deltasAgainstState` below
        // does the same for the others, after listing).
        let recorded = useDelta && absent == nil ? try st { try state.pairCount(in: mailboxId) } : 0
        let marks = Sides(far: useDelta ? farMark : nil, near: useDelta ? nearMark : nil)
        var listings = Sides<MessageListing>(far: .full([]), near: .full([]))
        var paged: SetAsideMessages?
        if useDelta, recorded == 0, let side = pagingSource(statuses) {
            // A first download: when the other side holds nothing, the
            // source is listed a page at a time as its messages are copied.
            listings[side.opposite] = try await list(side.opposite, since: marks[side.opposite])
            if listings[side.opposite].messageCount == 0, let page = try await firstPage(on: side) {
                paged = page
            } else {
                listings[side] = try await list(side, since: marks[side])
            }
        } else {
            listings = Sides(far: try await list(.far, since: marks.far, recorded: recorded),
                             near: try await list(.near, since: marks.near, recorded: recorded))
        }
        if useDelta && absent == nil { try deltasAgainstState(&listings, rows: recorded) }

        if !pending.isEmpty && !options.dryRun {
            try await resolvePending(pending, listings: listings)
        }
        // Two deltas touch a few messages of what may be a large mailbox: only
        // the rows they mention are read (and counted for the mass-deletion
        // guard), not every row.
        var pairs: [StatePair] = []
        var unloaded = 0
        if case .delta = listings.far, case .delta = listings.near {
            let records = try rows(mentioning: listings.map(\.keys))
            unloaded = try (useDelta && absent == nil ? recorded : st { try state.pairCount(in: mailboxId) }) - records.count
            pairs = records.filter { !$0.status.isPendingCopy }.map(columns.statePair)
        } else {
            // Row by row: a large mailbox's rows are not held twice.
            let columns = self.columns
            try st {
                try state.forEachPair(in: mailboxId) { record in
                    if !record.status.isPendingCopy { pairs.append(columns.statePair(record)) }
                }
            }
        }
        var loaded = LoadedMailbox(record: record, statuses: statuses, listings: consume listings, pairs: pairs, unloadedPairs: unloaded,
                                   invalidated: changed)
        loaded.setAside = paged
        // Message-IDs pair unpaired messages of both sides, so they are read
        // when the other side has unpaired messages too, after a UIDVALIDITY
        // change, or when a pair lacks its key on this side (a run stopped
        // right after adopting a new UIDVALIDITY: without them its messages
        // were downloaded a second time). Otherwise they wait: a first
        // download of 60,000 messages would hold 60,000 of them (8 MB) from
        // here to its last copy.
        let known = Sides { side in changed[side] ? [] : Set(pairs.compactMap { $0.keys[side] }) }
        let unpaired = Sides { side in loaded.listings[side].messages.contains { !known[side].contains($0.key) } }
        let keyless = Sides { side in pairs.contains { $0.keys[side] == nil } }
        for side in Side.allCases {
            if changed.far || changed.near || unpaired[side.opposite] || keyless[side] {
                try await withMessageIds(&loaded.listings[side], excluding: known[side], on: side)
            } else {
                loaded.deferredMessageIds[side] = unpaired[side]
            }
        }
        return loaded
    }

    /// Turns each full listing into the delta it amounts to against the
    /// state, when that delta is small: the messages whose key the state does
    /// not hold or whose flags differ from the agreed ones, and the keys the
    /// state holds that the listing lacks. That is what a store's own delta
    /// says (a message not mentioned has the flags the state recorded), so
    /// the reconciler decides the same; but when both sides are deltas only
    /// the rows they mention are loaded. A Maildir changed by a mail reader
    /// is listed in full by a new process (its snapshot died with the last
    /// one): at 60,000 messages, its 100 flag changes would otherwise load
    /// every row and build views over them, about 20 MB of the run's peak.
    ///
    /// Only for sides whose keys sort as the state's index does (UIDs, Maildir
    /// names), and only when the keys are trustworthy (the caller's
    /// `useDelta`). A listing that differs from the state in more than a
    /// quarter of its rows stays full: the rows would be read anyway, and
    /// one query per 500 keys would be slower. `rows` is the state's row
    /// count for the mailbox, counted once by the caller.
    private func deltasAgainstState(_ listings: inout Sides<MessageListing>, rows: Int) throws {
        let full = Side.allCases.filter { side in
            if case .full = listings[side] { return side == .far || columns.kinds.near == .name }
            return false
        }
        guard !full.isEmpty, rows > 0 else { return }
        for side in full {
            guard case .full(let messages) = listings[side] else { continue }
            let limit = RecordedMessages.deltaLimit(recorded: rows, listed: messages.count)
            let delta = try delta(of: messages, on: side, rows: rows, limit: limit)
            if let delta { listings[side] = delta }
            logger.debug(delta == nil ? "full listing differs from the state in too many messages; reconciled whole"
                                      : "full listing compared with the state", metadata: [
                "ferrymail.side": "\(side.rawValue)", "ferrymail.listed": "\(messages.count)",
                "ferrymail.differing": "\(delta.map { "\($0.keys.count)" } ?? "over \(limit)")"])
        }
    }

    /// The listing as the delta it amounts to against the state
    /// (`RecordedMessages.difference`); nil once more than `limit` keys differ.
    private func delta(of messages: [MessageInfo], on side: Side, rows: Int, limit: Int) throws -> MessageListing? {
        let order = messages.positionsInKeyOrder()
        let difference = try st {
            try recordedMessages(on: side, count: rows).difference(of: order, limit: limit, compare: { position, key in
                let listed = messages[Int(position)].key
                return listed < key ? -1 : key < listed ? 1 : 0
            }, agrees: { position, flags in RecordedMessages.agree(messages[Int(position)].flags, flags) })
        }
        guard let difference else { return nil }
        return .delta(changed: difference.changed.map { messages[Int($0)] }, vanished: difference.vanished)
    }

    /// The state's keys and agreed flags for `side`, in the order of its index.
    private func recordedMessages(on side: Side, count: Int) -> RecordedMessages {
        let (state, mailbox) = (self.state, mailboxId)
        return RecordedMessages(count: count) { body in
            try state.forEachKeyWithFlags(in: mailbox, far: side == .far) { uid, name, flags in
                guard let key = uid.map(MessageKey.uid) ?? name.map(MessageKey.name) else { return true }
                return body(key, flags)
            }
        }
    }

    /// Finishes or abandons copies an interrupted run left pending.
    ///
    /// A far→near copy whose file exists is completed; a near→far APPEND
    /// whose UID was never recorded is looked for on the far side — by the
    /// transfer id where the store keeps it, else by Message-ID + size +
    /// internal date — before anything is uploaded again. The message itself
    /// is never edited to carry an id (no X-TUID header), so byte identity
    /// holds. A copy not found is cancelled and planned afresh.
    private func resolvePending(_ pending: [MessagePairRecord], listings: Sides<MessageListing>) async throws {
        let settled = try st { try state.pairs(in: mailboxId) }.filter { !$0.status.isPendingCopy }.map(columns.statePair)
        var completions: [CopyCompletion] = []
        var cancelled: [String] = []
        for side in Side.allCases {
            let rows = pending.filter { ($0.status == .pendingToFar ? Side.far : Side.near) == side }
            guard !rows.isEmpty else { continue }
            let taken = Set(settled.compactMap { $0.keys[side] })
            let probes = rows.map { LocateProbe(transferId: $0.transferId!, messageId: $0.messageId, size: $0.size, internalDate: $0.internalDate) }
            let found = try await locate(probes, among: listings[side].messages, on: side, excluding: taken)
            for probe in probes {
                if let key = found[probe.transferId] {
                    completions.append(CopyCompletion(transferId: probe.transferId, destination: try columns.destination(on: side, key)))
                } else {
                    cancelled.append(probe.transferId)
                }
            }
        }
        logger.info("resolved copies left pending by an interrupted run", metadata: [
            "ferrymail.mailbox": "\(names.far)", "ferrymail.completed": "\(completions.count)", "ferrymail.retried": "\(cancelled.count)"])
        if !completions.isEmpty { try st { try state.completeCopies(completions) } }
        if !cancelled.isEmpty { try st { try state.cancelCopies(transferIds: cancelled) } }
    }

    private func select(_ side: Side) async throws -> MailboxStatus {
        if absent == side { return MailboxStatus() }
        return try await io(side, "SELECT \(names[side])") { try await stores[side].select(names[side]) }
    }

    private func list(_ side: Side, since mark: SyncWatermark?, recorded: Int = 0) async throws -> MessageListing {
        if absent == side { return .full([]) }
        guard recorded > 0, side == .far || columns.kinds.near == .name else {
            return try await io(side, "listing \(names[side])") {
                try await stores[side].messages(in: names[side], changedSince: mark)
            }
        }
        let rows = recordedMessages(on: side, count: recorded)
        return try await io(side, "listing \(names[side])") {
            try await stores[side].messages(in: names[side], changedSince: mark, comparedWith: rows)
        }
    }

    /// How many listing entries one `messageIds` request covers.
    static let messageIdSlice = 4096

    /// Message-IDs are fetched lazily: only for messages the state does not
    /// know, which are the only ones ever matched by identity. Filled in
    /// place: a copy of a large listing would cost megabytes. They are asked
    /// for a slice of the listing at a time, so the store's answer for a
    /// first download of 60,000 messages is not held as one 5 MB dictionary
    /// beside the listing.
    private func withMessageIds(_ listing: inout MessageListing, excluding known: Set<MessageKey>, on side: Side,
                                where wanted: (MessageInfo) -> Bool = { _ in true }) async throws {
        func fill(_ messages: inout [MessageInfo]) async throws {
            var start = messages.startIndex
            while start < messages.endIndex {
                let slice = start..<min(start + Self.messageIdSlice, messages.endIndex)
                start = slice.upperBound
                let ids = try await messageIds(for: messages[slice].filter { $0.messageId == nil && !known.contains($0.key) && wanted($0) }
                    .map(\.key), on: side)
                for index in slice where messages[index].messageId == nil {
                    if let id = ids[messages[index].key] { messages[index].messageId = id }
                }
            }
        }
        switch listing {
        case .full(var messages):
            listing = .full([])
            try await fill(&messages)
            listing = .full(messages)
        case .delta(var changed, let vanished):
            listing = .full([])
            try await fill(&changed)
            listing = .delta(changed: changed, vanished: vanished)
        }
    }

    /// The store's Message-IDs for `keys`, with the error naming the mailbox;
    /// nothing is asked for no keys.
    private func messageIds(for keys: [MessageKey], on side: Side) async throws -> [MessageKey: String] {
        guard !keys.isEmpty else { return [:] }
        return try await io(side, "fetching Message-IDs in \(names[side])") {
            try await stores[side].messageIds(for: keys, in: names[side])
        }
    }

    /// Reads the deferred Message-IDs of unpaired messages of these sizes:
    /// the only ones a pair vanished from another mailbox can match.
    func withDeferredMessageIds(_ loaded: inout LoadedMailbox, on side: Side, sizes: Set<Int64>) async throws {
        guard loaded.deferredMessageIds[side], !sizes.isEmpty else { return }
        let known = loaded.invalidated[side] ? [] : Set(loaded.pairs.compactMap { $0.keys[side] })
        try await withMessageIds(&loaded.listings[side], excluding: known, on: side, where: { sizes.contains($0.size) })
    }

    // MARK: - Reconcile and propagate

    func reconcileInput(_ loaded: LoadedMailbox, ignoredPairs: Set<Int64> = [], ignoredKeys: Sides<Set<MessageKey>> = Sides(far: [], near: [])) -> ReconcileInput {
        ReconcileInput(
            account: account, mailbox: names.far, pairs: loaded.pairs, unloadedPairs: loaded.unloadedPairs, listings: loaded.listings,
            invalidated: loaded.invalidated, deletion: deletion, writable: options.direction.writable,
            keywords: Sides { loaded.statuses[$0].keywords ?? stores[$0].capabilities.keywords }, massDeletion: options.massDeletion,
            ignoredPairs: ignoredPairs, ignoredKeys: ignoredKeys,
            setAside: Sides { side in loaded.setAside?.side == side ? loaded.setAside?.messages.count ?? 0 : 0 })
    }

    /// The side a first download may list a page at a time: one whose
    /// status says it holds more than a slice. Never in a dry run, which
    /// shows the whole plan.
    private func pagingSource(_ statuses: Sides<MailboxStatus>) -> Side? {
        guard !options.dryRun, absent == nil else { return nil }
        return Side.allCases.first { (statuses[$0].messageCount ?? 0) > copySlice && options.direction.writable[$0.opposite] }
    }

    /// The first page of `side`'s listing, set aside; nil when its store
    /// cannot list part of a mailbox.
    private func firstPage(on side: Side) async throws -> SetAsideMessages? {
        guard let page = try await page(on: side, after: nil) else { return nil }
        return SetAsideMessages(side: side, messages: page, nextPageAfter: page.last?.key)
    }

    private func page(on side: Side, after key: MessageKey?) async throws -> [MessageInfo]? {
        try await io(side, "listing \(names[side])") {
            try await stores[side].messages(in: names[side], after: key, limit: copySlice)
        }
    }

    /// The next page of a paged set-aside mailbox, in place of the done one.
    /// Returns false when there was none.
    func nextPage(_ aside: inout SetAsideMessages) async throws -> Bool {
        guard let after = aside.nextPageAfter else { return false }
        aside.messages = []
        // A store that listed the first page lists them all: one that
        // stopped would leave messages the committed watermarks then cover.
        guard let page = try await self.page(on: aside.side, after: after) else {
            throw SyncError.store(account: account, mailbox: names[aside.side], side: aside.side, operation: "listing \(names[aside.side])",
                                  cause: "the store stopped listing the mailbox a page at a time")
        }
        aside.messages = page
        aside.nextPageAfter = page.last?.key
        return !page.isEmpty
    }

    /// How many set-aside messages are planned and copied at once: a few
    /// megabytes of listing entries and plan, and few enough that a small
    /// listing budget (tests) still splits a mailbox into several slices.
    var copySlice: Int { options.copySlice }

    /// Takes the unpaired messages of one side out of its listing when the
    /// other side has none, no key was invalidated and no pair lacks its key
    /// on that side: then no identity match can pair them, and each is a copy to the other side with its
    /// own flags (`execute` plans them a slice at a time). The rest of the
    /// mailbox is reconciled as before; the mass-deletion guard still counts
    /// the set-aside messages among the side's messages.
    func setAsideNewMessages(_ loaded: inout LoadedMailbox) {
        guard loaded.setAside == nil, !loaded.invalidated.far, !loaded.invalidated.near else { return }
        let known = Sides { side in Set(loaded.pairs.compactMap { $0.keys[side] }) }
        let unpaired = Sides { side in loaded.listings[side].messages.count { !known[side].contains($0.key) } }
        // A pair missing its key on that side (a run interrupted after it
        // adopted a new UIDVALIDITY) is re-paired with one of them by identity.
        guard let side = Side.allCases.first(where: { side in
            unpaired[side] > 0 && unpaired[side.opposite] == 0 && loaded.pairs.allSatisfy { $0.keys[side] != nil }
        }) else { return }
        // The unpaired stay in the listing's own array; the paired ones (none
        // at a first download) are the copy.
        var messages: [MessageInfo]
        switch loaded.listings[side] {
        case .full(let listed):
            messages = listed
            loaded.listings[side] = .full(messages.filter { known[side].contains($0.key) })
        case .delta(let changed, let vanished):
            messages = changed
            loaded.listings[side] = .delta(changed: messages.filter { known[side].contains($0.key) }, vanished: vanished)
        }
        messages.removeAll { known[side].contains($0.key) }
        if !zip(messages, messages.dropFirst()).allSatisfy({ $0.key < $1.key }) { messages.sort { $0.key < $1.key } }
        loaded.setAside = SetAsideMessages(side: side, messages: messages)
    }

    /// Carries out a plan, then commits the watermarks.
    ///
    /// Takes the loaded mailbox over and lets go of its listings and state
    /// rows before the first copy: the plan holds what the copies need, and a
    /// large mailbox's listing would otherwise stay in memory through a long
    /// download for nothing.
    func execute(_ plan: consuming Plan, loaded: consuming LoadedMailbox, report: inout MailboxReport) async throws {
        for conflict in plan.conflicts {
            logger.warning("conflicting flag changes on both sides; merged (additions win, removals apply)", metadata: [
                "ferrymail.mailbox": "\(names.far)", "ferrymail.far.key": "\(conflict.keys.far)", "ferrymail.near.key": "\(conflict.keys.near)",
                "ferrymail.far.flags": "\(conflict.flags.far)", "ferrymail.near.flags": "\(conflict.flags.near)",
                "ferrymail.merged": "\(conflict.merged)"])
        }
        // Only messages moved to the Trash need their listing entries.
        var trashed = Sides<[MessageInfo]>(far: [], near: [])
        if !plan.trash.far.isEmpty || !plan.trash.near.isEmpty {
            let views = Reconciler.currentViews(of: reconcileInput(loaded))
            trashed = Sides { side in plan.trash[side].compactMap { views[side][$0.key] } }
        }
        loaded.listings = Sides(far: .full([]), near: .full([]))
        loaded.pairs = []

        // Forget first: a stale pair may hold the key a copy or re-pair needs.
        if !plan.forgotten.isEmpty { try st { try state.recordExpunged(plan.forgotten) } }

        var agreed = plan.agreedFlags
        for repair in plan.repairs {
            switch repair.side {
            case .far:
                let uid = try columns.farUid(repair.key)
                try st { try state.attachFarUids([repair.pair.id: uid]) }
            case .near:
                // The state has no "attach near name"; replace the row. An
                // interruption in between leaves both messages unpaired, and
                // the next run pairs them again by identity.
                let pair = repair.pair
                guard let farKey = pair.keys.far else { continue }
                try st { try state.recordExpunged([pair.id]) }
                let inserted = try st {
                    try state.recordPairs([NewPair(
                        farUid: try columns.farUid(farKey), nearName: columns.nearName(repair.key), flags: pair.flags,
                        size: pair.size, internalDate: pair.internalDate, messageId: pair.messageId)], in: mailboxId)
                }
                if let flags = agreed.removeValue(forKey: pair.id) { agreed[inserted[0].id!] = flags }
            }
        }

        if !plan.pairings.isEmpty {
            let newPairs = try plan.pairings.map { pairing in
                NewPair(farUid: try columns.farUid(pairing.messages.far.key), nearName: columns.nearName(pairing.messages.near.key),
                        flags: pairing.baseFlags, size: pairing.messages.far.size,
                        internalDate: pairing.messages.far.internalDate ?? pairing.messages.near.internalDate,
                        messageId: pairing.messages.far.messageId ?? pairing.messages.near.messageId)
            }
            let inserted = try st { try state.recordPairs(newPairs, in: mailboxId) }
            for (record, pairing) in zip(inserted, plan.pairings) where pairing.agreedFlags != pairing.baseFlags {
                agreed[record.id!] = pairing.agreedFlags
            }
            report.paired += inserted.count
        }

        for destination in Side.allCases where !plan.copies[destination].isEmpty {
            // Handed over, so that copy() can let go of what it has done.
            var planned = plan.copies[destination]
            plan.copies[destination] = []
            report.copied[destination] += try await copy(&planned, to: destination, report: &report)
        }
        if var aside = loaded.setAside {
            loaded.setAside = nil
            report.copied[aside.side.opposite] += try await copy(&aside, keywords: loaded.statuses.map(\.keywords), report: &report)
        }

        for side in Side.allCases where !plan.flagChanges[side].isEmpty {
            try await io(side, "STORE in \(names[side])") {
                try await stores[side].setFlags(plan.flagChanges[side], in: names[side])
            }
            report.flagsChanged[side] += plan.flagUpdateCount(on: side)
        }
        if !agreed.isEmpty { try st { try state.recordFlags(agreed) } }

        for side in Side.allCases where !plan.removals[side].isEmpty {
            let removals = plan.removals[side]
            try st { try state.recordPendingExpunge(removals.map(\.pairId), on: side) }
            try await io(side, "EXPUNGE in \(names[side])") {
                try await stores[side].expunge(removals.map(\.key), in: names[side])
            }
            try st { try state.recordExpunged(removals.map(\.pairId)) }
            report.deleted[side] += removals.count
        }
        for side in Side.allCases where !plan.trash[side].isEmpty {
            guard case .moveToTrash(let trash) = deletion[side] else { continue }
            let removals = plan.trash[side]
            try st { try state.recordPendingExpunge(removals.map(\.pairId), on: side) }
            _ = try await transfer(trashed[side], on: side, from: names[side], to: trash)
            try st { try state.recordExpunged(removals.map(\.pairId)) }
            report.deleted[side] += removals.count
        }

        // A message left uncopied keeps its source side's watermark where it
        // was, so the next run lists it again (and reports it again) instead
        // of skipping the mailbox as unchanged.
        var holdBack: Set<Side> = []
        for failure in report.notCopied {
            switch failure {
            case .messageRejected(_, _, let side, _, _, _), .messageTooLarge(_, _, let side, _, _, _): holdBack.insert(side.opposite)
            default: break
            }
        }
        // A side this run did not write to keeps the status its listing was
        // taken at: proving it again (a second SELECT, 35–330 ms on a large
        // Dovecot mailbox) could only end with that status or fail. Mailboxes
        // that moves touched were loaded again after the moves, so their
        // status already covers them.
        let written = Sides { side in
            report.copied[side] > 0 || !plan.flagChanges[side].isEmpty || !plan.removals[side].isEmpty || !plan.trash[side].isEmpty
        }
        try await commitWatermarks(loaded, holdingBack: holdBack, written: written)
    }

    /// Commits watermarks — the run's last write. A side whose changes this
    /// run did not propagate (the far side in `push`, the near side in `pull`,
    /// a side in `holdingBack`) keeps its old watermark, so a later run still
    /// sees them. A side gets the status its store proves covers only this
    /// run's own changes, when it can (a Maildir also proves a folder it
    /// listed too soon after a change); else the status taken before them,
    /// and the next run looks again. A side not `written` to by this run is
    /// not asked to prove anything beyond what its store settles by itself.
    func commitWatermarks(_ loaded: LoadedMailbox, holdingBack: Set<Side> = [],
                          written: Sides<Bool> = Sides(far: true, near: true)) async throws {
        let current = try st { try state.mailboxPair(id: mailboxId) }
        let advance = Sides(far: options.direction.writable.near && !holdingBack.contains(.far),
                            near: options.direction.writable.far && !holdingBack.contains(.near))
        var statuses = loaded.statuses
        for side in Side.allCases where advance[side] {
            let settled = try await io(side, "reading the status of \(names[side])") { () async throws -> MailboxStatus? in
                if let settled = try await stores[side].settledStatus(of: names[side]) { return settled }
                return written[side] ? try await provenStatus(side, since: loaded.statuses[side]) : nil
            }
            if let settled, settled.uidValidity == statuses[side].uidValidity { statuses[side] = settled }
        }
        var nearMark = advance.near ? statuses.near.watermark : NearWatermarkText.decode(current.nearScanToken)
        nearMark.uidValidity = loaded.statuses.near.uidValidity
        try st {
            try state.commitWatermarks(
                mailbox: mailboxId,
                farUidNext: advance.far ? statuses.far.uidNext : current.farUidNext,
                farHighestModSeq: advance.far ? statuses.far.highestModSeq : current.farHighestModSeq,
                nearScanToken: NearWatermarkText.encode(nearMark))
        }
    }

    /// For a side that lists changes since a MODSEQ (QRESYNC, CONDSTORE):
    /// its status now, when every change since `before` is one the state
    /// already records, i.e. this run's own. The status is read first, so a
    /// change made after it has a higher MODSEQ and is seen by the next run;
    /// a change made before it is in the listing and fails the check. Nil
    /// otherwise, and the next run looks at the changes again.
    private func provenStatus(_ side: Side, since before: MailboxStatus) async throws -> MailboxStatus? {
        guard before.highestModSeq != nil else { return nil }
        let after = try await stores[side].select(names[side])
        guard after.uidValidity == before.uidValidity, !before.watermark.provesUnchanged(after) else { return nil }
        let listing = try await stores[side].messages(in: names[side], changedSince: before.watermark)
        guard case .delta(let changed, let vanished) = listing else { return nil }
        var recorded: [MessageKey: StatePair] = [:]
        for row in try rows(mentioning: Sides { $0 == side ? listing.keys : [] }) where row.status == .paired {
            let pair = columns.statePair(row)
            if let key = pair.keys[side] { recorded[key] = pair }
        }
        let proven = vanished.allSatisfy { recorded[$0] == nil } && changed.allSatisfy { message in
            guard let pair = recorded[message.key] else { return false }
            return FlagMerge.normalized(pair.flags) == FlagMerge.normalized(message.flags)
        }
        return proven ? after : nil
    }

    /// The state rows holding one of these keys, and the keyless and
    /// unfinished ones (`StateStore.pairs(in:farUids:nearNames:)`).
    private func rows(mentioning keys: Sides<[MessageKey]>) throws -> [MessagePairRecord] {
        let farUids = try keys.far.map { key throws(SyncError) in try columns.farUid(key) }
        return try st { try state.pairs(in: mailboxId, farUids: farUids, nearNames: keys.near.map(columns.nearName)) }
    }

    /// Plans and copies set-aside messages a slice at a time, each slice by
    /// the reconciler, so they are copied exactly as a whole plan would copy
    /// them; a paged mailbox's next page is listed when one is done. An
    /// unpaged one lets go of what is done once, at half: the undone half's
    /// copy costs its size for a moment, but holding the whole listing to
    /// the end while the destination's file names grew peaked 7 MB higher
    /// at a 200,000-message first download.
    private func copy(_ aside: inout SetAsideMessages, keywords: Sides<Bool?>, report: inout MailboxReport) async throws -> Int {
        defer { aside.messages = [] }
        let destination = aside.side.opposite
        var copied = 0, start = 0, compacted = false
        while true {
            if start == aside.messages.count {
                guard try await nextPage(&aside) else { break }
                start = 0
                observePlanned(aside)
            } else if !compacted, start >= copySlice, start * 2 >= aside.messages.count {
                aside.messages = Array(aside.messages[start...])
                start = 0
                compacted = true
            }
            let end = min(start + copySlice, aside.messages.count)
            var listings = Sides<MessageListing>(far: .full([]), near: .full([]))
            listings[aside.side] = .full(Array(aside.messages[start..<end]))
            start = end
            var plan = try Reconciler.reconcile(ReconcileInput(
                account: account, mailbox: names.far, pairs: [], listings: listings, deletion: deletion,
                writable: options.direction.writable, keywords: Sides { keywords[$0] ?? stores[$0].capabilities.keywords },
                massDeletion: options.massDeletion))
            var planned = plan.copies[destination]
            plan.copies[destination] = []
            copied += try await copy(&planned, to: destination, report: &report)
        }
        return copied
    }

    /// Tells the plan observer of a page listed after the plan was made.
    private func observePlanned(_ aside: SetAsideMessages) {
        guard let planObserver, options.direction.writable[aside.side.opposite] else { return }
        var messages = Sides(far: 0, near: 0), bytes = Sides<Int64>(far: 0, near: 0)
        aside.countPlanned(options, messages: &messages, bytes: &bytes)
        planObserver(PlannedTransfers(mailbox: names.far, messages: messages, bytes: bytes))
    }

    /// Copies new messages to `destination`, streaming each body from the
    /// source's fetch into the destination's append, journaled per batch.
    ///
    /// `copies` is the caller's only reference to them, and is emptied as
    /// they are done.
    private func copy(_ copies: inout [PlannedCopy], to destination: Side, report: inout MailboxReport) async throws -> Int {
        let source = destination.opposite
        if let limit = options.maxMessageSize {
            let tooLarge = copies.filter { !options.admits(size: $0.source.size) }
            // Named by Message-ID, which the user can search for; a deferred
            // one is read for these few.
            let ids = try await messageIds(for: tooLarge.filter { $0.source.messageId == nil }.map(\.source.key), on: source)
            for copy in tooLarge {
                let name = copy.source.messageId ?? ids[copy.source.key] ?? "\(copy.source.key)"
                report.notCopied.append(.messageTooLarge(account: account, mailbox: names[destination], side: destination,
                                                         message: name, size: copy.source.size, limit: limit))
            }
        }
        // Filtered only when something is too large: a copy of a large
        // mailbox's plan costs megabytes.
        if !copies.allSatisfy({ options.admits(size: $0.source.size) }) {
            copies = copies.filter { options.admits(size: $0.source.size) }
        }
        defer { copies = [] }
        var copied = 0
        var start = 0
        while start < copies.count {
            // What is done is let go of, a half at a time: the plan of a large
            // first download would otherwise stay whole until its last copy.
            if start >= 2_048 && start * 2 >= copies.count {
                copies = Array(copies[start...])
                start = 0
            }
            var end = start + 1, bytes = copies[start].source.size
            while end < copies.count, end - start < options.copyBatchSize, bytes + copies[end].source.size <= options.copyBatchBytes {
                bytes += copies[end].source.size
                end += 1
            }
            var batch = Array(copies[start..<end])
            start = end
            // Message-IDs deferred at load are read a batch at a time: the
            // state keeps each pair's, which later move detection matches.
            let ids = try await messageIds(for: batch.filter { $0.source.messageId == nil }.map(\.source.key), on: source)
            for index in batch.indices where batch[index].source.messageId == nil {
                batch[index].source.messageId = ids[batch[index].source.key]
            }
            let pendings = try batch.map { copy in
                PendingCopy(source: try columns.source(on: source, copy.source.key), flags: copy.flags, size: copy.source.size,
                            internalDate: copy.source.internalDate, messageId: copy.source.messageId)
            }
            // Journaled before the first byte moves.
            let transferIds = try st { try state.recordPending(copies: pendings, in: mailboxId) }
            var envelopes: [MessageKey: AppendEnvelope] = [:]
            for (copy, transferId) in zip(batch, transferIds) {
                envelopes[copy.source.key] = AppendEnvelope(
                    flags: copy.flags, internalDate: copy.source.internalDate, size: copy.source.size,
                    messageId: copy.source.messageId, transferId: transferId)
            }
            let streamed = try await stream(batch.map(\.source.key), from: source, mailbox: names[source],
                                            to: destination, mailbox: names[destination], envelopes: envelopes)
            let landed = streamed.landed

            var completions: [CopyCompletion] = []
            var unknown: [LocateProbe] = []
            var cancelled: [String] = []
            for (copy, transferId) in zip(batch, transferIds) {
                switch landed[transferId] {
                case .some(.some(let key)):
                    completions.append(CopyCompletion(transferId: transferId, destination: try columns.destination(on: destination, key)))
                case .some(.none):
                    unknown.append(LocateProbe(transferId: transferId, messageId: copy.source.messageId,
                                               size: copy.source.size, internalDate: copy.source.internalDate))
                case .none:
                    if let reason = streamed.rejected[transferId] {
                        logger.warning("message refused by the destination; the others go on", metadata: [
                            "ferrymail.mailbox": "\(names[destination])", "ferrymail.messageId": "\(copy.source.messageId ?? "none")",
                            "ferrymail.size": "\(copy.source.size)", "ferrymail.reason": "\(reason)"])
                        report.notCopied.append(.messageRejected(account: account, mailbox: names[destination], side: destination,
                                                                 message: copy.source.messageId ?? "\(copy.source.key)",
                                                                 size: copy.source.size, reason: reason))
                    }
                    // Refused, or expunged on the source meanwhile: nothing copied.
                    cancelled.append(transferId)
                }
            }
            if !unknown.isEmpty {
                // No APPENDUID (no UIDPLUS): find the new messages again.
                let listing = try await list(destination, since: nil)
                var taken = Set(try st { try state.pairs(in: mailboxId) }.compactMap { columns.statePair($0).keys[destination] })
                for completion in completions {
                    switch completion.destination {
                    case .far(let uid): taken.insert(.uid(uid))
                    case .near(let name): taken.insert(columns.kinds.near == .uid ? UInt32(name).map(MessageKey.uid) ?? .name(name) : .name(name))
                    }
                }
                let found = try await locate(unknown, among: listing.messages, on: destination, excluding: taken)
                for probe in unknown {
                    if let key = found[probe.transferId] {
                        completions.append(CopyCompletion(transferId: probe.transferId, destination: try columns.destination(on: destination, key)))
                    } else {
                        logger.warning("appended message not found again; it will be copied again next run", metadata: [
                            "ferrymail.mailbox": "\(names[destination])", "ferrymail.messageId": "\(probe.messageId ?? "none")"])
                        cancelled.append(probe.transferId)
                    }
                }
            }
            if !completions.isEmpty {
                // Durable on the destination before the state calls it synced.
                try await io(destination, "flushing \(names[destination])") { try await stores[destination].flush(names[destination]) }
                try st { try state.completeCopies(completions) }
            }
            if !cancelled.isEmpty { try st { try state.cancelCopies(transferIds: cancelled) } }
            copied += completions.count
        }
        return copied
    }

    /// Streams bodies from one store (and mailbox) into another; returns, per
    /// transfer id, the destination key (nil when the store could not tell).
    /// Never holds a whole message: chunks go straight through.
    func stream(_ keys: [MessageKey], from source: Side, mailbox sourceMailbox: String, to destination: Side, mailbox destinationMailbox: String,
                envelopes: [MessageKey: AppendEnvelope]) async throws -> StreamResult {
        let sink = CopySink(destination: stores[destination], mailbox: destinationMailbox, envelopes: envelopes)
        let operation = "copying from \(sourceMailbox) to \(destination.rawValue) \(destinationMailbox)"
        do {
            try await io(source, operation) { try await stores[source].fetch(keys, in: sourceMailbox, into: sink) }
        } catch {
            // The source failed mid-message: the destination's open append is
            // abandoned (an IMAP connection must not stay inside a literal).
            await sink.abandon()
            try? await sink.confirmAll()
            throw error
        }
        try await io(destination, operation) { try await sink.confirmAll() }
        return StreamResult(landed: await sink.landed, rejected: await sink.rejected)
    }

    /// Moves messages between two mailboxes of one store: MOVE when
    /// available, else copy + expunge. Returns the new keys it knows.
    func transfer(_ messages: [MessageInfo], on side: Side, from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        let store = stores[side]
        if store.capabilities.move {
            let moved = try await io(side, "MOVE from \(source) to \(destination)") {
                try await store.move(messages.map(\.key), from: source, to: destination)
            }
            if store.capabilities.keysSurviveMove {
                return Dictionary(uniqueKeysWithValues: messages.map { ($0.key, moved[$0.key] ?? $0.key) })
            }
            return moved
        }
        var envelopes: [MessageKey: AppendEnvelope] = [:]
        var byTransfer: [String: MessageKey] = [:]
        for message in messages {
            let transferId = "move-\(message.key)"
            envelopes[message.key] = AppendEnvelope(flags: message.flags, internalDate: message.internalDate, size: message.size,
                                                    messageId: message.messageId, transferId: transferId)
            byTransfer[transferId] = message.key
        }
        let streamed = try await stream(messages.map(\.key), from: side, mailbox: source, to: side, mailbox: destination, envelopes: envelopes)
        if let refused = streamed.rejected.first {
            // Expunging the originals now would lose the refused one.
            throw SyncError.store(account: account, mailbox: source, side: side, operation: "copying to \(destination) (move without MOVE)",
                                  cause: "a message was refused: \(refused.value); nothing was expunged")
        }
        let landed = streamed.landed
        // The copies are durable before the originals go.
        try await io(side, "flushing \(destination)") { try await store.flush(destination) }
        try await io(side, "EXPUNGE in \(source)") { try await store.expunge(messages.map(\.key), in: source) }
        var result: [MessageKey: MessageKey] = [:]
        for (transferId, key) in landed {
            if let key, let original = byTransfer[transferId] { result[original] = key }
        }
        return result
    }

    /// Finds messages on `side` that an earlier step created but whose keys
    /// were not learned: by transfer id where the store keeps it, else by
    /// Message-ID + size + internal date, else — for messages without a
    /// Message-ID — by size + date when exactly one candidate fits.
    func locate(_ probes: [LocateProbe], among messages: [MessageInfo], on side: Side, excluding taken: Set<MessageKey>) async throws -> [String: MessageKey] {
        var candidates = messages.filter { !taken.contains($0.key) }
        var found: [String: MessageKey] = [:]
        var used: Set<MessageKey> = []
        for probe in probes {
            if let match = candidates.first(where: { $0.transferId == probe.transferId && !used.contains($0.key) }) {
                found[probe.transferId] = match.key
                used.insert(match.key)
            }
        }
        let remaining = probes.filter { found[$0.transferId] == nil }
        guard !remaining.isEmpty else { return found }
        let missingIds = candidates.filter { $0.messageId == nil && !used.contains($0.key) }.map(\.key)
        if !missingIds.isEmpty {
            let ids = try await messageIds(for: missingIds, on: side)
            candidates = candidates.map { var message = $0; if message.messageId == nil { message.messageId = ids[message.key] }; return message }
        }
        var index = IdentityIndex(candidates.filter { !used.contains($0.key) })
        for probe in remaining {
            if probe.messageId != nil {
                let probeInfo = MessageInfo(key: .uid(0), size: probe.size, internalDate: probe.internalDate, messageId: probe.messageId)
                if let match = index.take(matching: probeInfo) { found[probe.transferId] = match.key }
            } else if let date = probe.internalDate {
                let fits = index.remaining().filter { $0.messageId == nil && $0.size == probe.size && $0.internalDate == date }
                if fits.count == 1 {
                    found[probe.transferId] = fits[0].key
                    index.take(key: fits[0].key)
                }
            }
        }
        return found
    }

    // MARK: - Error mapping

    @discardableResult
    func st<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as SyncError {
            throw error
        } catch {
            throw SyncError.state(account: account, mailbox: names.far, cause: "\(error)")
        }
    }

    func io<T>(_ side: Side, _ operation: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SyncError {
            throw error
        } catch {
            throw SyncError.store(account: account, mailbox: names[side], side: side, operation: operation, cause: "\(error)")
        }
    }
}

/// What is known about a message being looked for on its destination.
struct LocateProbe: Sendable {
    var transferId: String
    var messageId: String?
    var size: Int64
    var internalDate: Int64?
}

extension MessageListing {
    /// The messages a listing mentions (all of them for a full listing).
    var messages: [MessageInfo] {
        switch self {
        case .full(let messages): messages
        case .delta(let changed, _): changed
        }
    }

    /// How many entries the listing holds: listed, changed or vanished.
    var messageCount: Int {
        switch self {
        case .full(let messages): messages.count
        case .delta(let changed, let vanished): changed.count + vanished.count
        }
    }

    /// Every key a listing mentions: listed, changed or vanished.
    var keys: [MessageKey] {
        switch self {
        case .full(let messages): messages.map(\.key)
        case .delta(let changed, let vanished): changed.map(\.key) + vanished
        }
    }
}

/// Bridges a store's fetch into another store's append, message by message.
/// What `stream` learned: per transfer id, the destination key (nil when
/// the store could not tell), or why the destination refused the message.
struct StreamResult: Sendable {
    var landed: [String: MessageKey?]
    var rejected: [String: String]
}

actor CopySink: MessageSink {
    private let destination: any MailStore
    private let mailbox: String
    private let envelopes: [MessageKey: AppendEnvelope]
    private var current: (writer: any AppendWriter, transferId: String)?
    /// Appends whose body is complete and whose confirmation is awaited,
    /// oldest first; at most the destination's `appendWindow`.
    private var unconfirmed: [(transferId: String, confirmation: Task<MessageKey?, any Error>)] = []
    /// Per transfer id, the key the destination reported (nil: unknown).
    private(set) var landed: [String: MessageKey?] = [:]
    /// Per transfer id, why the destination refused that one message.
    private(set) var rejected: [String: String] = [:]

    init(destination: any MailStore, mailbox: String, envelopes: [MessageKey: AppendEnvelope]) {
        self.destination = destination
        self.mailbox = mailbox
        self.envelopes = envelopes
    }

    func begin(_ key: MessageKey, size: Int64) async throws {
        guard var envelope = envelopes[key] else { throw CopySinkError.unexpectedMessage(key) }
        // The source's actual byte count is what the literal must announce.
        envelope.size = size
        current = (try await destination.beginAppend(to: mailbox, envelope), envelope.transferId)
    }

    func write(_ chunk: [UInt8]) async throws {
        guard let current else { throw CopySinkError.outOfOrder }
        do {
            try await current.writer.write(chunk)
        } catch {
            await current.writer.cancel()
            self.current = nil
            throw error
        }
    }

    func end() async throws {
        guard let current else { throw CopySinkError.outOfOrder }
        self.current = nil
        let writer = current.writer
        do {
            try await writer.endBody()
        } catch {
            await writer.cancel()
            throw error
        }
        unconfirmed.append((current.transferId, Task { try await writer.finish() }))
        while unconfirmed.count >= destination.capabilities.appendWindow {
            try await confirmOldest()
        }
    }

    /// Cancels the message being written, if any.
    func abandon() async {
        if let current {
            self.current = nil
            await current.writer.cancel()
        }
    }

    /// Waits for every outstanding confirmation. After a failure the rest
    /// are still awaited (so no append outlives the run), then the first
    /// error is thrown.
    func confirmAll() async throws {
        var firstError: (any Error)?
        while !unconfirmed.isEmpty {
            do { try await confirmOldest() } catch { if firstError == nil { firstError = error } }
        }
        if let firstError { throw firstError }
    }

    private func confirmOldest() async throws {
        let (transferId, confirmation) = unconfirmed.removeFirst()
        do {
            landed[transferId] = .some(try await confirmation.value)
        } catch let refusal as MessageRejected {
            rejected[transferId] = refusal.reason
        }
    }
}

enum CopySinkError: Error, CustomStringConvertible {
    case unexpectedMessage(MessageKey)
    case outOfOrder

    var description: String {
        switch self {
        case .unexpectedMessage(let key): "store delivered \(key), which was not requested"
        case .outOfOrder: "store sent message bytes outside begin/end"
        }
    }
}
