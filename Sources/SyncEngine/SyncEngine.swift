import Logging
import SyncState

/// Runs the sync of one account: folders, then every mailbox pair (up to
/// `maxConcurrentMailboxes` at once, each on its own store handles), then
/// the run journal.
///
/// Phases, after isync:
/// 1. **Folders**: list both sides; create mailboxes new on one side on the
///    other; propagate deletions (see `syncFolders`).
/// 2. **Load** each mailbox pair: open, validate UIDVALIDITY, resolve copies
///    an interrupted run left pending, list (delta when possible). A pair
///    whose cheap status proves nothing changed is skipped without SELECT.
/// 3. **Moves** across mailboxes (see `MoveDetector`), then reload the
///    mailboxes they touched.
/// 4. **Reconcile and propagate** each mailbox pair, watermarks last.
/// Errors are collected per mailbox; the other mailboxes continue.
public actor SyncEngine {
    private enum Phase {
        case idle
        case running
    }

    public let account: String
    private let state: StateStore
    private let factories: Sides<StoreFactory>
    private let options: SyncOptions
    private let logger: Logger
    private var phase: Phase = .idle
    private var runStarted = ContinuousClock.now
    private let planObserver: (@Sendable (PlannedTransfers) -> Void)?

    /// - Parameters:
    ///   - far: hands out far store handles (an IMAP connection each).
    ///   - near: hands out near store handles.
    ///   - planObserver: told each mailbox's planned copies before they
    ///     start (progress displays use it for an ETA).
    public init(account: String, state: StateStore, far: @escaping StoreFactory, near: @escaping StoreFactory,
                options: SyncOptions = SyncOptions(), logger: Logger = Logger(label: "ferrymail.sync"),
                planObserver: (@Sendable (PlannedTransfers) -> Void)? = nil) {
        self.planObserver = planObserver
        self.account = account
        self.state = state
        self.factories = Sides(far: far, near: near)
        self.options = options
        var logger = logger
        logger[metadataKey: "ferrymail.account"] = "\(account)"
        self.logger = logger
    }

    /// Forgets everything known about one mailbox pair's messages — the
    /// documented recovery from `uidValidityChangedOnBothSides`. The next run
    /// pairs messages present on both sides by Message-ID, size and date and
    /// copies the rest both ways.
    public static func resetMailboxState(state: StateStore, account: String, farName: String) throws(SyncError) {
        do {
            let accountRecord = try state.account(named: account)
            guard let pair = try state.mailboxPairs(account: accountRecord.id!, includingDeleted: true)
                .first(where: { $0.farName == farName }) else { return }
            try state.forgetMailboxPair(pair.id!)
        } catch {
            throw .state(account: account, mailbox: farName, cause: "\(error)")
        }
    }

    /// Runs the account once. Throws only when nothing could be done
    /// (listing mailboxes, the state); per-mailbox failures are in the report.
    public func run() async throws(SyncError) -> SyncReport {
        guard case .idle = phase else {
            throw .state(account: account, mailbox: nil, cause: "a sync of this account is already running in this process")
        }
        phase = .running
        runStarted = .now
        defer { phase = .idle }

        var report = SyncReport(account: account, dryRun: options.dryRun)
        let accountRecord: AccountRecord
        do {
            if options.dryRun {
                // A dry run writes nothing, not even the account row.
                accountRecord = try state.accounts().first { $0.name == account } ?? AccountRecord(id: -1, name: account)
            } else {
                accountRecord = try state.account(named: account)
            }
        } catch {
            throw .state(account: account, mailbox: nil, cause: "\(error)")
        }
        let runRecord = options.dryRun ? nil : try? state.beginRun(account: accountRecord.id!)

        let pool = HandlePool(factories: factories, dryRun: options.dryRun, account: account)
        do {
            try await runAccount(accountId: accountRecord.id!, pool: pool, report: &report)
        } catch let error as SyncError {
            report.errors.append(error)
        } catch {
            report.errors.append(.state(account: account, mailbox: nil, cause: "\(error)"))
        }
        await pool.closeAll()

        if let runId = runRecord?.id {
            let failure = report.allErrors.isEmpty ? nil : report.allErrors.map(\.description).joined(separator: "\n")
            try? state.finishRun(runId, counts: report.counts, error: failure)
        }
        if report.errors.count == 1, report.mailboxes.isEmpty, let error = report.errors.first {
            throw error
        }
        return report
    }

    private func runAccount(accountId: Int64, pool: HandlePool, report: inout SyncReport) async throws {
        let primary = try await pool.acquire()
        let folders = try await FolderSync(
            account: account, accountId: accountId, state: state, stores: primary, options: options, logger: logger
        ).run()
        await pool.release(primary)
        report.folderChanges = folders.changes
        report.errors += folders.errors
        logger.debug("listed and paired folders", metadata: ["ferrymail.mailboxes": "\(folders.pairs.count)", "ferrymail.elapsed": "\(elapsed())"])

        let workers = folders.pairs.map { entry in
            MailboxWork(record: entry.record, infos: entry.infos, deletion: folders.deletion(for: entry.record), absent: entry.absent)
        }

        // Phase 2: load, in parallel. A mailbox the committed watermarks prove
        // unchanged is skipped before any handle is taken for it, so a no-op
        // run opens no connection beyond the one that listed the folders.
        // The budget keeps what the loaded mailboxes hold near its limit.
        let detector = MoveDetector(capabilities: Sides(far: await pool.capabilities(.far), near: await pool.capabilities(.near)),
                                    writable: options.direction.writable)
        let budget = ListingBudget(limit: options.heldMessages)
        var loads = [LoadOutcome](repeating: .skipped, count: workers.count)
        let unfinished = try? state.mailboxesWithUnfinishedWork()
        let changed = workers.indices.filter { !isUnchanged(workers[$0], unfinished: unfinished) }
        let loaded = await forEach(changed.map { ($0, workers[$0]) }, pool: pool, unreachable: { item, error in
            .failed(self.connectionError(item.1, error))
        }) { item, stores, engine in
            await engine.load(item.1, index: item.0, stores: stores, budget: budget, detector: detector)
        }
        for (index, outcome) in zip(changed, consume loaded) { loads[index] = outcome }
        let spilled = loads.compactMap { outcome -> MoveDetector.Spilled? in
            if case .spilled(let spilled) = outcome { return spilled }
            return nil
        }
        logger.debug("loaded changed mailboxes", metadata: [
            "ferrymail.changed": "\(changed.count)", "ferrymail.mailboxes": "\(workers.count)",
            "ferrymail.spilled": "\(spilled.count)", "ferrymail.elapsed": "\(elapsed())"])

        // Phase 3: moves across mailboxes.
        let vanished = detector.vanished(Self.detectable(loads), spilled: spilled)
        let sizes = MoveDetector.identitySizes(vanished)
        await readDeferredMessageIds(&loads, workers: workers, sizes: sizes, pool: pool)
        var candidates = Self.detectable(loads)
        if !vanished.far.isEmpty || !vanished.near.isEmpty {
            candidates += await arrivals(in: spilled, workers: workers, matching: vanished, sizes: sizes, pool: pool, budget: budget,
                                         detector: detector)
        }
        let moves = detector.detect(candidates.sorted { $0.index < $1.index }, vanished: vanished)
        candidates = []
        var ignoredPairs: [Int: Set<Int64>] = [:]
        var ignoredKeys: [Int: Sides<Set<MessageKey>>] = [:]
        var movedIn: [Int: Int] = [:]
        if !moves.isEmpty {
            if options.dryRun {
                for move in moves {
                    ignoredPairs[move.from, default: []].insert(move.pair.id)
                    ignoredKeys[move.to, default: Sides(far: [], near: [])][move.movedOn].insert(move.newKey)
                    report.moves.append(move.report(workers))
                    movedIn[move.to, default: 0] += 1
                }
            } else {
                let stores = try await pool.acquire()
                var touched: Set<Int> = []
                for move in moves {
                    do {
                        try await execute(move, workers: workers, stores: stores)
                        report.moves.append(move.report(workers))
                        movedIn[move.to, default: 0] += 1
                    } catch let error as SyncError {
                        report.errors.append(error)
                    } catch {
                        report.errors.append(.state(account: account, mailbox: workers[move.to].record.farName, cause: "\(error)"))
                    }
                    touched.formUnion([move.from, move.to])
                }
                await pool.release(stores)
                // Reload what the moves changed; the state now holds the moved pairs.
                // A spilled mailbox is listed again when it propagates anyway.
                for index in touched.sorted() where !loads[index].isSpilled {
                    let refreshed = current(workers[index])
                    loads[index] = await load(refreshed, stores: try await pool.acquire(), releasingTo: pool)
                }
            }
        }

        // Phase 4: reconcile and propagate, in parallel.
        // Trash mailboxes go last, reloaded, so messages moved there by the
        // `trash` policy in this run reach the other side in this run too.
        let isTrash = workers.map { work in
            folders.trash.far == work.record.farName || folders.trash.near == work.record.nearName
        }
        let items = workers.indices.map { index in
            PropagateItem(work: workers[index], index: index, skipped: loads[index].isSkipped,
                          ignoredPairs: ignoredPairs[index] ?? [], ignoredKeys: ignoredKeys[index] ?? Sides(far: [], near: []))
        }
        // Each loaded mailbox now has one owner, the worker that propagates
        // it, which lets go of its listing once the plan is made.
        let shelf = LoadShelf(consume loads)
        func propagateAll(_ items: [PropagateItem], reload: Bool) async -> [MailboxReport] {
            // Skipped mailboxes need no handle unless they are reloaded.
            var reports = [MailboxReport?](repeating: nil, count: items.count)
            var active: [Int] = []
            for (index, item) in items.enumerated() {
                if item.skipped, !reload {
                    var report = MailboxReport(farName: item.work.record.farName, nearName: item.work.record.nearName)
                    report.skipped = true
                    reports[index] = report
                } else {
                    active.append(index)
                }
            }
            // Kept mailboxes first: the spilled ones wait for their entries
            // to be released, so they must not take the workers first.
            var kept: Set<Int> = []
            for index in active where await budget.isHeld(items[index].index) { kept.insert(index) }
            active = active.filter { kept.contains($0) } + active.filter { !kept.contains($0) }
            let propagated = await forEach(active.map { items[$0] }, pool: pool, unreachable: { item, error in
                // Its kept entries are let go of, or the spilled mailboxes
                // waiting for them would wait for ever.
                await budget.release(item.index)
                var report = MailboxReport(farName: item.work.record.farName, nearName: item.work.record.nearName)
                report.error = self.connectionError(item.work, error)
                return report
            }) { item, stores, engine in
                let outcome = await shelf.take(item.index)
                guard outcome.isSpilled || (reload && !outcome.isFailure) else {
                    let report = await engine.propagate(item.work, outcome: consume outcome, stores: stores,
                                                        ignoredPairs: item.ignoredPairs, ignoredKeys: item.ignoredKeys)
                    await budget.release(item.index)
                    return report
                }
                // Listed again, from the record as the run left it so far.
                var estimate = item.work.estimatedEntries
                if case .spilled(let spilled) = outcome, spilled.paged { estimate = min(estimate, engine.options.copySlice) }
                _ = consume outcome
                await budget.release(item.index)
                await budget.admit(estimate, untilReleased: true)
                let work = engine.current(item.work)
                let report = await engine.propagate(work, outcome: await engine.load(work, stores: stores), stores: stores,
                                                    ignoredPairs: item.ignoredPairs, ignoredKeys: item.ignoredKeys)
                await budget.finished(estimate: estimate)
                return report
            }
            for (index, report) in zip(active, propagated) { reports[index] = report }
            return reports.map { $0! }
        }
        let trashIndices = workers.indices.filter { isTrash[$0] && options.expungePolicy == .trash && !options.dryRun }
        let otherIndices = workers.indices.filter { !trashIndices.contains($0) }
        // Trash mailboxes are loaded again after the others: what they hold
        // now would only keep the others' spilled mailboxes waiting.
        for index in trashIndices {
            await shelf.discardLoaded(index)
            await budget.release(index)
        }
        var results = [MailboxReport?](repeating: nil, count: workers.count)
        for (index, result) in zip(otherIndices, await propagateAll(otherIndices.map { items[$0] }, reload: false)) {
            results[index] = result
        }
        for (index, result) in zip(trashIndices, await propagateAll(trashIndices.map { items[$0] }, reload: true)) {
            results[index] = result
        }
        report.mailboxes = results.map { $0! }
        for (index, count) in movedIn { report.mailboxes[index].movedIn += count }
        logger.debug("propagated", metadata: ["ferrymail.elapsed": "\(elapsed())"])
    }

    /// Milliseconds since the run started, for `--verbose` phase timings.
    private func elapsed() -> String {
        let duration = runStarted.duration(to: .now)
        return "\(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000) ms"
    }

    // MARK: - One mailbox

    enum LoadOutcome: Sendable {
        case loaded(LoadedMailbox)
        case skipped
        case failed(SyncError)
        /// Loaded, then dropped by the `ListingBudget`; listed again to propagate.
        case spilled(MoveDetector.Spilled)

        var isSpilled: Bool {
            if case .spilled = self { return true }
            return false
        }

        var isFailure: Bool {
            if case .failed = self { return true }
            return false
        }

        var isSkipped: Bool {
            if case .skipped = self { return true }
            return false
        }
    }

    private static func detectable(_ loads: [LoadOutcome]) -> [MoveDetector.Mailbox] {
        loads.enumerated().compactMap { index, outcome -> MoveDetector.Mailbox? in
            if case .loaded(let loaded) = outcome { return MoveDetector.Mailbox(index: index, loaded: loaded) }
            return nil
        }
    }

    /// Before move detection: the unpaired messages whose Message-IDs the
    /// load deferred, and whose size matches a vanished pair, get them now.
    private func readDeferredMessageIds(_ loads: inout [LoadOutcome], workers: [MailboxWork], sizes: Sides<Set<Int64>>,
                                        pool: HandlePool) async {
        guard !sizes.far.isEmpty || !sizes.near.isEmpty else { return }
        var stores: Sides<any MailStore>?
        for index in loads.indices {
            guard case .loaded(var loaded) = loads[index],
                  Side.allCases.contains(where: { loaded.deferredMessageIds[$0] && !sizes[$0].isEmpty }) else { continue }
            // Taken out while it is filled, so its listings are not copied.
            loads[index] = .skipped
            do {
                if stores == nil { stores = try await pool.acquire() }
                let sync = mailboxSync(workers[index], stores: stores!)
                for side in Side.allCases {
                    try await sync.withDeferredMessageIds(&loaded, on: side, sizes: sizes[side])
                }
                loads[index] = .loaded(loaded)
            } catch {
                loads[index] = .failed(connectionError(workers[index], error))
            }
        }
        if let stores { await pool.release(stores) }
    }

    private func mailboxSync(_ work: MailboxWork, stores: Sides<any MailStore>) -> MailboxSync {
        MailboxSync(account: account, state: state, record: work.record, stores: stores, options: options,
                    deletion: work.deletion, absent: work.absent,
                    logger: { var logger = self.logger; logger[metadataKey: "ferrymail.mailbox"] = "\(work.record.farName)"; return logger }(),
                    planObserver: options.dryRun ? nil : planObserver)
    }

    private func load(_ work: MailboxWork, stores: Sides<any MailStore>, releasingTo pool: HandlePool) async -> LoadOutcome {
        let outcome = await load(work, stores: stores)
        await pool.release(stores)
        return outcome
    }

    /// `work` with its mailbox pair as the state holds it now (after this
    /// run's UIDVALIDITY adoption or moves), for loading it again.
    private nonisolated func current(_ work: MailboxWork) -> MailboxWork {
        work.refreshed(try? state.mailboxPair(id: work.record.id!))
    }

    /// Phase 2's load: admitted by the budget, kept when it fits, else
    /// spilled with what move detection needs of it.
    private func load(_ work: MailboxWork, index: Int, stores: Sides<any MailStore>, budget: ListingBudget,
                      detector: MoveDetector) async -> LoadOutcome {
        let estimate = work.estimatedEntries
        await budget.admit(estimate)
        let outcome = await load(work, stores: stores)
        guard case .loaded(let loaded) = outcome else {
            await budget.finished(estimate: estimate)
            return outcome
        }
        if loaded.setAside?.isPaged == true {
            // Listed a page at a time: moves into it are looked for page by
            // page in phase 3, as in a spilled mailbox, and it is listed
            // again to propagate.
            await budget.finished(estimate: estimate)
            var spilled = detector.spill(MoveDetector.Mailbox(index: index, loaded: consume loaded))
            spilled.paged = true
            return .spilled(spilled)
        }
        if await budget.loaded(index, estimate: estimate, entries: loaded.heldEntries) { return outcome }
        logger.debug("mailbox spilled: the run holds its budget of listed messages; it is listed again to propagate", metadata: [
            "ferrymail.mailbox": "\(work.record.farName)", "ferrymail.entries": "\(loaded.heldEntries)",
            "ferrymail.budget": "\(budget.limit)"])
        return .spilled(detector.spill(MoveDetector.Mailbox(index: index, loaded: consume loaded)))
    }

    /// Phase 3, when some pair vanished: each spilled mailbox listed again,
    /// one at a time, and reduced to the unpaired messages that may be
    /// those pairs moved.
    private func arrivals(in spilled: [MoveDetector.Spilled], workers: [MailboxWork], matching vanished: Sides<[MoveDetector.Vanished]>,
                          sizes: Sides<Set<Int64>>, pool: HandlePool, budget: ListingBudget,
                          detector: MoveDetector) async -> [MoveDetector.Mailbox] {
        var found: [MoveDetector.Mailbox] = []
        for entry in spilled where !entry.invalidated {
            let work = current(workers[entry.index])
            let estimate = work.estimatedEntries
            await budget.admit(estimate)
            if let stores = try? await pool.acquire() {
                if case .loaded(var loaded) = await load(work, stores: stores) {
                    let sync = mailboxSync(work, stores: stores)
                    do {
                        if var aside = loaded.setAside {
                            // A paged first download: each page reduced to its candidates.
                            loaded.setAside = nil
                            var candidates: [MessageInfo] = []
                            repeat {
                                var page = loaded
                                page.listings[aside.side] = .full(aside.messages)
                                page.deferredMessageIds[aside.side] = true
                                try await sync.withDeferredMessageIds(&page, on: aside.side, sizes: sizes[aside.side])
                                let reduced = detector.arrivals(in: MoveDetector.Mailbox(index: entry.index, loaded: page), matching: vanished)
                                candidates += reduced.loaded.listings[aside.side].messages
                            } while try await sync.nextPage(&aside)
                            loaded.listings[aside.side] = .full(candidates)
                        }
                        for side in Side.allCases where loaded.deferredMessageIds[side] {
                            try await sync.withDeferredMessageIds(&loaded, on: side, sizes: sizes[side])
                        }
                        found.append(detector.arrivals(in: MoveDetector.Mailbox(index: entry.index, loaded: loaded), matching: vanished))
                    } catch {
                        // Without its Message-IDs it can take no moved message;
                        // it is listed again, and its errors reported, when it propagates.
                    }
                }
                await pool.release(stores)
            }
            await budget.finished(estimate: estimate)
        }
        return found
    }

    private func load(_ work: MailboxWork, stores: Sides<any MailStore>) async -> LoadOutcome {
        let sync = mailboxSync(work, stores: stores)
        do {
            return .loaded(try await sync.load())
        } catch let error as SyncError {
            return .failed(error)
        } catch {
            return .failed(.state(account: account, mailbox: work.record.farName, cause: "\(error)"))
        }
    }

    /// The fast path: LIST-STATUS (or a scan token) equal to the committed
    /// watermarks on both sides, and nothing pending, proves the mailbox
    /// unchanged, so it is skipped without SELECT or a scan.
    /// `unfinished` holds the mailboxes with pending copies or expunges
    /// (nil when the state could not say: nothing is skipped then).
    private func isUnchanged(_ work: MailboxWork, unfinished: Set<Int64>?) -> Bool {
        guard let unfinished, let id = work.record.id, !unfinished.contains(id),
              let farStatus = work.infos.far.status, let nearStatus = work.infos.near.status else { return false }
        let record = work.record
        let farMark = SyncWatermark(uidValidity: record.farUidValidity, uidNext: record.farUidNext, highestModSeq: record.farHighestModSeq)
        let nearMark = NearWatermarkText.decode(record.nearScanToken)
        return record.lastSyncAt != nil && farMark.provesUnchanged(farStatus) && nearMark.provesUnchanged(nearStatus)
    }

    private func propagate(_ work: MailboxWork, outcome: consuming LoadOutcome, stores: Sides<any MailStore>,
                           ignoredPairs: Set<Int64>, ignoredKeys: Sides<Set<MessageKey>>) async -> MailboxReport {
        var report = MailboxReport(farName: work.record.farName, nearName: work.record.nearName)
        var loaded: LoadedMailbox
        switch consume outcome {
        case .skipped:
            report.skipped = true
            return report
        case .failed(let error):
            report.error = error
            logger.error("\(error.description)")
            return report
        case .loaded(let value):
            loaded = value
        case .spilled:
            // Phase 4 lists a spilled mailbox again before it gets here.
            report.error = .state(account: account, mailbox: work.record.farName, cause: "internal error: a spilled mailbox was not listed again")
            return report
        }
        report.pairsLoaded = loaded.pairs.count
        let sync = mailboxSync(work, stores: stores)
        // A dry run shows the whole plan; only a real run copies in slices.
        if !options.dryRun && ignoredKeys.far.isEmpty && ignoredKeys.near.isEmpty { sync.setAsideNewMessages(&loaded) }
        do {
            let plan = try Reconciler.reconcile(sync.reconcileInput(loaded, ignoredPairs: ignoredPairs, ignoredKeys: ignoredKeys))
            if let planObserver, !options.dryRun {
                // Counted in place: a filtered copy of a first download's
                // plan cost 9 MB at the run's peak.
                var messages = Sides(far: 0, near: 0), bytes = Sides<Int64>(far: 0, near: 0)
                for side in Side.allCases {
                    for copy in plan.copies[side] where options.admits(size: copy.source.size) {
                        messages[side] += 1
                        bytes[side] += copy.source.size
                    }
                }
                loaded.setAside?.countPlanned(options, messages: &messages, bytes: &bytes)
                planObserver(PlannedTransfers(mailbox: work.record.farName, messages: messages, bytes: bytes))
            }
            if options.dryRun {
                report.plan = plan
                report.copied = plan.copies.map(\.count)
                report.paired = plan.pairings.count
                report.flagsChanged = Sides { plan.flagUpdateCount(on: $0) }
                report.deleted = Sides { plan.removals[$0].count + plan.trash[$0].count }
                return report
            }
            try await sync.execute(consume plan, loaded: consume loaded, report: &report)
        } catch let error as SyncError {
            report.error = error
        } catch {
            report.error = .state(account: account, mailbox: work.record.farName, cause: "\(error)")
        }
        if let error = report.error { logger.error("\(error.description)") }
        return report
    }

    // MARK: - Moves

    /// Carries out one cross-mailbox move on the side where the user did not
    /// make it. Journaled as a copy into the destination mailbox (so an
    /// interruption is resolved like any pending copy), then the old pair is
    /// forgotten.
    private func execute(_ move: MoveDetector.Move, workers: [MailboxWork], stores: Sides<any MailStore>) async throws {
        let source = workers[move.from], destination = workers[move.to]
        let other = move.movedOn.opposite
        let sync = mailboxSync(destination, stores: stores)
        let columns = sync.columns
        let transferId = try sync.st {
            try state.recordPending(copies: [PendingCopy(
                source: try columns.source(on: move.movedOn, move.newKey), flags: move.pair.flags, size: move.pair.size,
                internalDate: move.pair.internalDate, messageId: move.pair.messageId ?? move.otherMessage.messageId)],
                in: destination.record.id!)[0]
        }
        let names = Sides(far: source.record.farName, near: source.record.nearName)
        let targets = Sides(far: destination.record.farName, near: destination.record.nearName)
        let moved = try await sync.transfer([move.otherMessage], on: other, from: names[other], to: targets[other])
        var newKey = moved[move.otherMessage.key]
        if newKey == nil {
            let listing = try await sync.io(other, "listing \(targets[other])") {
                try await stores[other].messages(in: targets[other], changedSince: nil)
            }
            let taken = Set(try state.pairs(in: destination.record.id!).compactMap { columns.statePair($0).keys[other] })
            let probe = LocateProbe(transferId: transferId, messageId: move.pair.messageId ?? move.otherMessage.messageId,
                                    size: move.otherMessage.size, internalDate: move.otherMessage.internalDate)
            newKey = try await sync.locate([probe], among: listing.messages, on: other, excluding: taken)[transferId]
        }
        if let newKey {
            try sync.st { try state.completeCopies([CopyCompletion(transferId: transferId, destination: try columns.destination(on: other, newKey))]) }
        } else {
            // Not found: the next run pairs the two copies by identity.
            try sync.st { try state.cancelCopies(transferIds: [transferId]) }
        }
        try sync.st { try state.recordExpunged([move.pair.id]) }
        logger.info("moved message to follow a move on the \(move.movedOn.rawValue) side", metadata: [
            "ferrymail.from": "\(names[other])", "ferrymail.to": "\(targets[other])"])
    }

    // MARK: - Concurrency

    /// Runs `body` for each item with at most `maxConcurrentMailboxes` at
    /// once, each with its own store handles from the pool; results keep the
    /// items' order. `unreachable` answers for an item when no store handle
    /// could be opened for it.
    private func forEach<Item: Sendable, Result: Sendable>(
        _ items: [Item], pool: HandlePool,
        unreachable: @escaping @Sendable (Item, any Error) async -> Result,
        _ body: @escaping @Sendable (Item, Sides<any MailStore>, SyncEngine) async -> Result
    ) async -> [Result] {
        let limit = options.maxConcurrentMailboxes
        return await withTaskGroup(of: (Int, Result).self) { group in
            var results = [Result?](repeating: nil, count: items.count)
            var next = 0
            func launch(_ index: Int) {
                let item = items[index]
                group.addTask {
                    let stores: Sides<any MailStore>
                    do {
                        stores = try await pool.acquire()
                    } catch {
                        return (index, await unreachable(item, error))
                    }
                    let result = await body(item, stores, self)
                    await pool.release(stores)
                    return (index, result)
                }
            }
            while next < min(limit, items.count) { launch(next); next += 1 }
            for await (index, result) in group {
                results[index] = result
                if next < items.count { launch(next); next += 1 }
            }
            return results.map { $0! }
        }
    }

    private nonisolated func connectionError(_ work: MailboxWork, _ error: any Error) -> SyncError {
        if let error = error as? SyncError { return error }
        return .store(account: account, mailbox: work.record.farName, side: .far, operation: "connecting", cause: "\(error)")
    }
}

/// The copies one mailbox's plan holds, by destination side.
public struct PlannedTransfers: Sendable, Hashable {
    public var mailbox: String
    public var messages: Sides<Int>
    public var bytes: Sides<Int64>

    public init(mailbox: String, messages: Sides<Int>, bytes: Sides<Int64>) {
        self.mailbox = mailbox
        self.messages = messages
        self.bytes = bytes
    }
}

struct PropagateItem: Sendable {
    var work: MailboxWork
    /// Where the mailbox's load outcome waits on the `LoadShelf`.
    var index: Int
    var skipped: Bool
    var ignoredPairs: Set<Int64>
    var ignoredKeys: Sides<Set<MessageKey>>
}

/// The load outcomes between loading and propagating, each taken exactly
/// once by the worker that propagates its mailbox, so that no array of
/// items keeps every mailbox's listing alive until the whole run ends.
actor LoadShelf {
    private var outcomes: [SyncEngine.LoadOutcome?]

    init(_ outcomes: [SyncEngine.LoadOutcome]) { self.outcomes = outcomes }

    /// Drops a loaded (or spilled) mailbox that will be loaded again; a
    /// failure stays, to be reported.
    func discardLoaded(_ index: Int) {
        if let outcome = outcomes[index], !outcome.isFailure { outcomes[index] = .skipped }
    }

    func take(_ index: Int) -> SyncEngine.LoadOutcome {
        defer { outcomes[index] = nil }
        return outcomes[index] ?? .skipped
    }
}

/// One mailbox pair to sync.
struct MailboxWork: Sendable {
    var record: MailboxPairRecord
    var infos: Sides<MailboxInfo>
    var deletion: Sides<DeletionRule>
    /// Dry run only: the side where the mailbox does not exist yet.
    var absent: Side?

    /// What loading the mailbox may hold, for the `ListingBudget`: its
    /// larger side's message count where a listing reports it.
    var estimatedEntries: Int {
        max(infos.far.status?.messageCount ?? 0, infos.near.status?.messageCount ?? 0)
    }

    func refreshed(_ record: MailboxPairRecord?) -> MailboxWork {
        var copy = self
        if let record { copy.record = record }
        return copy
    }
}

/// Store handles, opened on demand up to the number of concurrent mailbox
/// workers plus one, and reused.
actor HandlePool {
    private let factories: Sides<StoreFactory>
    private let dryRun: Bool
    private let account: String
    private var idle: [Sides<any MailStore>] = []
    private var all: [Sides<any MailStore>] = []

    init(factories: Sides<StoreFactory>, dryRun: Bool, account: String) {
        self.factories = factories
        self.dryRun = dryRun
        self.account = account
    }

    func acquire() async throws -> Sides<any MailStore> {
        if let handles = idle.popLast() { return handles }
        var far: any MailStore = try await factories.far()
        var near: any MailStore = try await factories.near()
        if dryRun {
            far = ReadOnlyStore(far, account: account)
            near = ReadOnlyStore(near, account: account)
        }
        let handles = Sides(far: far, near: near)
        all.append(handles)
        return handles
    }

    func release(_ handles: Sides<any MailStore>) {
        idle.append(handles)
    }

    func capabilities(_ side: Side) async -> StoreCapabilities {
        if let handles = all.first { return handles[side].capabilities }
        return StoreCapabilities(keyKind: side == .far ? .uid : .name, move: false, keysSurviveMove: false, keywords: true)
    }

    func closeAll() async {
        for handles in all {
            await handles.far.close()
            await handles.near.close()
        }
        all = []
        idle = []
    }
}
