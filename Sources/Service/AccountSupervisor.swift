import Configuration
import Foundation
import IMAPClient
import Logging
import MailStores
import SyncEngine
import SyncState

/// Inputs of a supervisor's loop.
enum SupervisorEvent: Sendable {
    case watcher(WatcherEvent)
    case local(MaildirChangeBatch)
    case clockJumped(Duration)
    case syncRequested(SyncReason)
    case stop
}

/// Keeps one account in sync for as long as the daemon runs: an initial
/// sync, then a sync whenever the server watcher, the Maildir watcher, the
/// poll or the full-reconcile timer says so, with back-off after failures.
///
/// Three child tasks feed one loop through an `EventInbox`: the server
/// watcher (NOTIFY/IDLE connections), the clock-jump ticker and — on its own
/// thread — the inotify watcher. The loop owns all mutable state (a
/// `SyncScheduler`, the cached secret) and runs one sync at a time, so the
/// engine never sees two runs of an account. Everything ends when `stop()` is
/// called: the gate makes the running sync stop after the message in flight,
/// watchers end IDLE and log out, and `run()` returns.
final class AccountSupervisor: Sendable {
    /// What the supervisor is doing, as published in the state DB.
    enum Phase: Sendable, Hashable {
        case starting
        case syncing(Set<SyncReason>)
        case idle
        case backingOff(until: Double, failure: String)
        case failing(String)
        case stopped
    }

    /// How one sync ended.
    enum RunOutcome: Sendable {
        /// Every mailbox synced.
        case clean(SyncReport)
        /// The server was reachable but some mailboxes failed (errors named in
        /// the report); retried at the next trigger, not with back-off,
        /// because retrying at once cannot fix a mass-deletion guard or a
        /// UIDVALIDITY conflict.
        case partial(SyncReport)
        /// Nothing or little could be done because of the connection or the
        /// credentials.
        case failed(ReconnectBackoff.Failure, String)
        /// Stopped between messages by a shutdown.
        case interrupted
    }

    let account: AccountConfiguration
    let connectionsPerAccount: Int
    let state: StateStore
    let board: StatusBoard
    let logger: Logger
    let localDebounce: DebouncePolicy
    let clockTick: Duration
    private let inbox = EventInbox<SupervisorEvent>()
    private let stopSignal = StopSignal()
    private let gate = StopGate()

    init(account: AccountConfiguration, connectionsPerAccount: Int, state: StateStore, board: StatusBoard,
         localDebounce: DebouncePolicy = .local, clockTick: Duration = .seconds(10), logger: Logger) {
        self.account = account
        self.connectionsPerAccount = connectionsPerAccount
        self.state = state
        self.board = board
        self.localDebounce = localDebounce
        self.clockTick = clockTick
        var logger = logger
        logger[metadataKey: "ferrymail.account"] = "\(account.name)"
        self.logger = logger
    }

    /// Asks the supervisor to stop; `run()` returns once it has.
    func stop() {
        gate.close()
        stopSignal.fire()
        inbox.post(.stop)
    }

    /// Syncs as soon as possible (after a reload; ends a back-off).
    func requestSync(_ reason: SyncReason) {
        inbox.post(.syncRequested(reason))
    }

    func run() async {
        let accountId: Int64?
        do {
            accountId = try state.account(named: account.name).id
        } catch {
            logger.error("\(ServiceError.state(path: state.path, message: "\(error)").description)")
            accountId = nil
        }
        publish(.starting, accountId: accountId)

        let watcher = startMaildirWatcher()
        let inbox = self.inbox
        let stopSignal = self.stopSignal
        let clockTick = self.clockTick
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                let account = self.account, logger = self.logger
                await ServerWatcher(account: account,
                                    imap: { IMAPConfiguration(account: account, secret: try account.secret.resolve(), logger: logger) },
                                    maximumConnections: self.connectionsPerAccount,
                                    logger: logger, stop: stopSignal) { inbox.post(.watcher($0)) }.run()
            }
            group.addTask {
                var detector = ClockJumpDetector()
                let suspending = SuspendingClock()
                let origin = suspending.now
                _ = detector.observe(monotonic: suspending.now - origin, wallSeconds: StatusBoard.wallClockNow())
                while !(await stopSignal.sleep(for: clockTick)) {
                    if let jump = detector.observe(monotonic: suspending.now - origin, wallSeconds: StatusBoard.wallClockNow()) {
                        inbox.post(.clockJumped(jump))
                    }
                }
            }
            await loop(accountId: accountId)
            stopSignal.fire()
            await group.waitForAll()
        }
        await watcher?.stop()
        publish(.stopped, accountId: accountId)
    }

    private func startMaildirWatcher() -> MaildirWatcher? {
        do {
            try FileManager.default.createDirectory(atPath: account.maildir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            logger.warning("cannot create the Maildir root \(account.maildir): \(error)")
        }
        let inbox = self.inbox
        do {
            return try MaildirWatcher(root: account.maildir, account: account.name, debounce: localDebounce, logger: logger) { batch in
                inbox.post(.local(batch))
            }
        } catch {
            // Without inotify, local changes still reach the server at the next poll.
            logger.warning("\(error.description)")
            return nil
        }
    }

    // MARK: - The loop

    private func loop(accountId: Int64?) async {
        let clock = ContinuousClock()
        var scheduler = SyncScheduler(
            policy: .init(pollInterval: account.policy.pollInterval, fullReconcileInterval: account.policy.fullReconcileInterval),
            backoff: ReconnectBackoff(cap: account.policy.backoffMax), now: clock.now)
        var random = SystemRandomNumberGenerator()
        var secret: String?

        while true {
            for event in inbox.drain() {
                let now = clock.now
                switch event {
                case .stop:
                    return
                case .local(let batch):
                    logger.debug("local change", metadata: ["ferrymail.folders": "\(batch.folders.sorted())", "ferrymail.events": "\(batch.eventCount)"])
                    scheduler.localChanged(at: now)
                case .watcher(.changed(let mailbox)):
                    logger.trace("server change", metadata: mailbox.map { ["ferrymail.mailbox": "\($0)"] })
                    scheduler.serverChanged(at: now)
                case .watcher(.mode(let mode)):
                    if case .notify = mode { scheduler.policy.pollInterval = nil } else { scheduler.policy.pollInterval = account.policy.pollInterval }
                case .watcher(.reconnected):
                    scheduler.reconnected(at: now)
                case .watcher(.failed(let error, let authentication, let report)):
                    if authentication {
                        secret = nil
                        if report {
                            board.update(account.name) { $0.lastError = error.description; $0.failing = true }
                            publish(.failing(error.description), accountId: accountId, error: error.description)
                        }
                    }
                case .clockJumped(let jump):
                    logger.notice("wall clock jumped by \(ServerWatcher.format(jump)) (suspend/resume or time change): syncing now")
                    scheduler.clockJumped(at: now)
                case .syncRequested(let reason):
                    scheduler.requestSync(reason)
                }
            }
            if let reasons = scheduler.startIfDue(at: clock.now) {
                publish(.syncing(reasons), accountId: accountId)
                let outcome = await sync(reasons: reasons, secret: &secret)
                if case .interrupted = outcome { return }
                let decision: ReconnectBackoff.Decision?
                switch outcome {
                case .clean, .partial: decision = scheduler.finished(.succeeded, at: clock.now, random: &random)
                case .failed(let failure, _): decision = scheduler.finished(.failed(failure), at: clock.now, random: &random)
                case .interrupted: return
                }
                record(outcome, decision: decision, accountId: accountId)
                continue
            }
            await inbox.wait(until: scheduler.nextDeadline)
        }
    }

    /// Runs the engine once over fresh store factories.
    private func sync(reasons: Set<SyncReason>, secret: inout String?) async -> RunOutcome {
        let started = ContinuousClock.now
        if secret == nil {
            do {
                secret = try account.secret.resolve()
            } catch {
                // A locked password manager or a failing command: retry slowly,
                // it may be prompting the user.
                return .failed(.authentication, ServiceError.secret(account: account.name, message: "\(error)").description)
            }
        }
        let stores = AccountStores(account: account, secret: secret!, connectionsPerAccount: connectionsPerAccount, logger: logger)
        let gate = self.gate
        let name = account.name
        let full = reasons.contains(.fullReconcile)
        let farFactory = stores.far, nearFactory = stores.near
        let engine = SyncEngine(
            account: name, state: state,
            far: { SupervisedStore(inner: try await farFactory(), gate: gate, account: name, fullReconcile: full) },
            near: { SupervisedStore(inner: try await nearFactory(), gate: gate, account: name, fullReconcile: full) },
            options: stores.options, logger: logger)
        let report: SyncReport
        do {
            report = try await engine.run()
        } catch {
            if gate.isClosed { return .interrupted }
            logger.error("\(error.description)")
            if let failed = await classify(failure: error.description, secret: &secret) { return failed }
            var failedReport = SyncReport(account: name, dryRun: false)
            failedReport.errors = [error]
            return .partial(failedReport)
        }
        if gate.isClosed, !report.succeeded { return .interrupted }
        let elapsed = started.duration(to: .now)
        if report.succeeded {
            let counts = report.counts
            let changed = counts.fetched + counts.appended + counts.flagsChanged + counts.expungedFar + counts.expungedNear + counts.moved
            let summary = "synced (\(reasons.sorted().map(\.rawValue).joined(separator: ", "))) in \(ServerWatcher.format(elapsed)): "
                + "\(counts.fetched) downloaded, \(counts.appended) uploaded, \(counts.flagsChanged) flag changes, "
                + "\(counts.expungedFar + counts.expungedNear) deleted, \(counts.moved) moved"
            if changed > 0 { logger.info("\(summary)") } else { logger.debug("\(summary)") }
            return .clean(report)
        }
        for error in report.allErrors { logger.error("\(error.description)") }
        let attempted = report.mailboxes.filter { !$0.skipped }
        let allFailed = !report.errors.isEmpty || (!attempted.isEmpty && attempted.allSatisfy { $0.error != nil })
        if allFailed {
            let first = report.allErrors.first?.description ?? "sync failed"
            if let failed = await classify(failure: first, secret: &secret) { return failed }
        }
        return .partial(report)
    }

    /// After a failed run, one typed connection attempt tells a server that
    /// is down or refusing the credentials (back off) from a problem with a
    /// particular mailbox (report and carry on): the engine's errors carry
    /// the client's error as text only.
    /// Returns nil when the server accepts a connection.
    private func classify(failure: String, secret: inout String?) async -> RunOutcome? {
        guard let current = secret else { return .failed(.transient, failure) }
        let imap = IMAPConfiguration(account: account, secret: current, logger: logger)
        do {
            try await IMAPConnection.withConnection(configuration: imap) { _ in }
            return nil
        } catch {
            if ServerWatcher.isAuthenticationFailure(error) {
                secret = nil // resolve again: a token may have expired
                return .failed(.authentication, ServiceError.authentication(account: account.name, message: "\(error)").description)
            }
            return .failed(.transient, ServiceError.connection(account: account.name, message: "\(error)").description)
        }
    }

    private func record(_ outcome: RunOutcome, decision: ReconnectBackoff.Decision?, accountId: Int64?) {
        switch outcome {
        case .clean(let report):
            let counts = report.counts
            board.update(account.name) { snapshot in
                snapshot.completedSyncs += 1
                snapshot.lastSuccess = StatusBoard.wallClockNow()
                snapshot.messagesCopied += counts.fetched + counts.appended
                snapshot.flagChanges += counts.flagsChanged
                snapshot.failing = false
            }
            publish(.idle, accountId: accountId, succeeded: true)
        case .partial(let report):
            let text = report.allErrors.map(\.description).joined(separator: "; ")
            board.update(account.name) { snapshot in
                snapshot.completedSyncs += 1
                snapshot.lastError = text
                snapshot.failing = true
            }
            publish(.failing(text), accountId: accountId, error: text.isEmpty ? nil : text)
        case .failed(_, let message):
            let until = StatusBoard.wallClockNow() + ReconnectBackoff.seconds(decision?.delay ?? .zero)
            if decision?.report ?? true {
                logger.error("\(message) (next attempt at \(StatusBoard.clockTime(until)))")
            } else {
                logger.debug("\(message) (next attempt at \(StatusBoard.clockTime(until)))")
            }
            board.update(account.name) { snapshot in
                snapshot.completedSyncs += 1
                snapshot.lastError = message
                snapshot.failing = true
            }
            publish(.backingOff(until: until, failure: message), accountId: accountId, error: message)
        case .interrupted:
            break
        }
    }

    /// Writes the phase to the state DB (for `ferrymail status`) and the board.
    private func publish(_ phase: Phase, accountId: Int64?, error: String? = nil, succeeded: Bool = false) {
        let daemonState: DaemonState
        let detail: String?
        switch phase {
        case .starting: daemonState = .starting; detail = nil
        case .syncing(let reasons): daemonState = .syncing; detail = reasons.sorted().map(\.rawValue).joined(separator: ", ")
        case .idle: daemonState = .idle; detail = "last sync \(StatusBoard.clockTime(StatusBoard.wallClockNow()))"
        case .backingOff(let until, _): daemonState = .backingOff; detail = "until \(StatusBoard.clockTime(until))"
        case .failing(let text): daemonState = .error; detail = text
        case .stopped: daemonState = .stopped; detail = nil
        }
        board.update(account.name) { snapshot in
            snapshot.state = daemonState
            snapshot.detail = detail
        }
        guard let accountId else { return }
        do {
            try state.setDaemonStatus(account: accountId, state: daemonState, detail: detail, error: error, succeeded: succeeded)
        } catch {
            logger.warning("cannot record the daemon status: \(error)")
        }
    }
}
