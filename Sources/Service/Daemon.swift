import Configuration
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import SyncState
import UnixSignals

/// Settings of the daemon that are not in the configuration file.
public struct DaemonOptions: Sendable {
    /// How long a graceful stop may take before running syncs are cancelled.
    public var shutdownGracePeriod: Duration
    /// Trap SIGTERM/SIGINT (graceful stop; a second one exits at once) and
    /// SIGHUP (reload). Tests running several daemons in one process turn it off
    /// and call `stop()` / `reload()` instead.
    public var handlesSignals: Bool
    /// Debounce of local Maildir changes.
    public var localDebounce: DebouncePolicy
    /// The process environment: `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `HOME`, XDG paths.
    public var environment: [String: String]

    public init(shutdownGracePeriod: Duration = .seconds(10), handlesSignals: Bool = true,
                localDebounce: DebouncePolicy = .local,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.shutdownGracePeriod = shutdownGracePeriod
        self.handlesSignals = handlesSignals
        self.localDebounce = localDebounce
        self.environment = environment
    }
}

/// `ferrymail daemon`: every configured account kept in sync continuously,
/// under swift-service-lifecycle.
///
/// ```swift
/// JournalLogHandler.bootstrap(level: .info, environment: ProcessInfo.processInfo.environment)
/// try await Daemon(configurationPath: path).run()
/// ```
///
/// One `ServiceGroup` runs the daemon core (a supervisor task per account;
/// one failing account never waits for another) and the systemd watchdog.
/// Signals:
/// - **SIGTERM / SIGINT**: graceful stop — every supervisor finishes the
///   message in flight, commits the state and logs out — within
///   `shutdownGracePeriod`, after which the group cancels what is left.
/// - **A second SIGTERM / SIGINT**: exit at once (`_exit`). This cannot
///   corrupt anything: every state change is one SQLite transaction (WAL,
///   `synchronous=FULL`), so the database holds either all of it or none;
///   a Maildir delivery becomes visible only by its final `rename` from
///   `tmp/`; and a copy journaled as pending before it started is found again
///   (by its transfer id or Message-ID) at the next start instead of being
///   duplicated. The cost is redoing the interrupted mailbox.
/// - **SIGHUP**: reload the configuration: added accounts start, removed ones
///   stop, changed ones restart; unchanged ones sync at once (the way to retry
///   after fixing a password). An invalid file is reported and the running
///   configuration kept. `state` cannot change without a restart.
public final class Daemon: Sendable {
    public let configurationPath: String
    public let options: DaemonOptions
    private let logger: Logger
    private let notifier: SystemdNotifier
    private let control: AsyncStream<DaemonControl>
    private let controlInput: AsyncStream<DaemonControl>.Continuation
    private let group = Mutex<ServiceGroup?>(nil)
    private let board: StatusBoard
    private let started = Atomic<Bool>(false)

    public init(configurationPath: String, options: DaemonOptions = DaemonOptions(),
                logger: Logger = Logger(label: "ferrymail.daemon")) {
        self.configurationPath = configurationPath
        self.options = options
        self.logger = logger
        notifier = SystemdNotifier(environment: options.environment)
        (control, controlInput) = AsyncStream.makeStream()
        let input = controlInput
        board = StatusBoard { input.yield(.statusChanged) }
    }

    /// Runs until stopped (signal or `stop()`). Throws only when it cannot
    /// start: invalid configuration, state database locked by another process.
    public func run() async throws(ServiceError) {
        guard !started.exchange(true, ordering: .relaxed) else {
            throw .configuration(path: configurationPath, message: "this daemon object was already run; create a new one")
        }
        let configuration = try Self.load(configurationPath, environment: options.environment)
        for warning in configuration.warnings { logger.warning("\(warning)") }
        let state: StateStore
        do {
            state = try StateStore.open(at: configuration.general.statePath)
        } catch {
            throw .state(path: configuration.general.statePath, message: "\(error)")
        }
        defer { try? state.close() }

        let core = DaemonCore(configuration: configuration, configurationPath: configurationPath, options: options,
                              state: state, board: board, notifier: notifier, control: control, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: core)]
        if let interval = notifier.watchdogInterval {
            services.append(.init(service: WatchdogService(notifier: notifier, interval: interval, logger: logger),
                                  successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore))
        }
        var groupConfiguration = ServiceGroupConfiguration(services: services, logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = options.shutdownGracePeriod
        // Cancellation after the grace period must end within this, or the
        // process is beyond saving: ServiceGroup then crashes it on purpose.
        groupConfiguration.maximumCancellationDuration = .seconds(30)
        let serviceGroup = ServiceGroup(configuration: groupConfiguration)
        group.withLock { $0 = serviceGroup }

        let handlesSignals = options.handlesSignals
        let notifier = self.notifier
        let logger = self.logger
        let controlInput = self.controlInput
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await serviceGroup.run() }
                if handlesSignals {
                    let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
                    tasks.addTask {
                        var stopRequests = 0
                        for await signal in signals {
                            if signal == .sighup {
                                controlInput.yield(.reload)
                                continue
                            }
                            stopRequests += 1
                            if stopRequests == 1 {
                                logger.notice("\(signal) received: stopping gracefully (send it again to exit at once)")
                                try? notifier.stopping()
                                await serviceGroup.triggerGracefulShutdown()
                            } else {
                                logger.notice("second \(signal): exiting at once; the state stays consistent and the next start resumes")
                                _exit(128 + signal.rawValue)
                            }
                        }
                    }
                }
                try await tasks.next()
                tasks.cancelAll()
            }
        } catch {
            throw .state(path: configuration.general.statePath, message: "the daemon stopped abnormally: \(error)")
        }
        group.withLock { $0 = nil }
    }

    /// Graceful stop, as SIGTERM does; returns at once (`run()` returns when done).
    public func stop() async {
        let serviceGroup = group.withLock { $0 }
        await serviceGroup?.triggerGracefulShutdown()
    }

    /// Reload, as SIGHUP does; returns at once.
    public func reload() {
        controlInput.yield(.reload)
    }

    /// Sync `account` (every account when nil) as soon as possible.
    public func requestSync(account: String? = nil) {
        controlInput.yield(.sync(account: account))
    }

    /// What every running account last reported.
    public var accounts: [String: AccountSnapshot] { board.snapshots }

    static func load(_ path: String, environment: [String: String]) throws(ServiceError) -> FerrymailConfiguration {
        do {
            return try FerrymailConfiguration.load(path: path, environment: environment)
        } catch {
            throw .configuration(path: path, message: "\(error)")
        }
    }
}

enum DaemonControl: Sendable {
    case reload
    case sync(account: String?)
    case statusChanged
    case supervisorEnded(account: String, generation: Int)
    case stop
}

/// The service that owns the account supervisors.
struct DaemonCore: Service {
    let configuration: FerrymailConfiguration
    let configurationPath: String
    let options: DaemonOptions
    let state: StateStore
    let board: StatusBoard
    let notifier: SystemdNotifier
    let control: AsyncStream<DaemonControl>
    let logger: Logger

    private struct Running {
        var supervisor: AccountSupervisor
        var configuration: AccountConfiguration
        var generation: Int
        var stopping = false
    }

    func run() async throws {
        // `control` has one consumer: this service.
        let (stopStream, stopInput) = AsyncStream<DaemonControl>.makeStream()
        await withGracefulShutdownHandler {
            await supervise(stopStream: stopStream)
        } onGracefulShutdown: {
            stopInput.yield(.stop)
        }
    }

    private func supervise(stopStream: AsyncStream<DaemonControl>) async {
        await withTaskGroup(of: Void.self) { group in
            var current = configuration
            var running: [String: Running] = [:]
            var waiting: [String: AccountConfiguration] = [:] // changed accounts, restarted once the old one ended
            var generation = 0
            var stopping = false
            var lastStatus = ""
            let (merged, mergedInput) = AsyncStream<DaemonControl>.makeStream()
            group.addTask {
                await withTaskGroup(of: Void.self) { forwarders in
                    forwarders.addTask { for await message in control { mergedInput.yield(message) } }
                    forwarders.addTask { for await message in stopStream { mergedInput.yield(message) } }
                    // Ends when the outer group is cancelled below.
                    await forwarders.next()
                    forwarders.cancelAll()
                }
            }

            func start(_ account: AccountConfiguration) {
                generation += 1
                let supervisor = AccountSupervisor(account: account, connectionsPerAccount: current.general.connectionsPerAccount,
                                                   state: state, board: board, localDebounce: options.localDebounce, logger: logger)
                running[account.name] = Running(supervisor: supervisor, configuration: account, generation: generation)
                // Listed at once, so READY's status line counts every account.
                board.update(account.name) { $0.state = .starting }
                let name = account.name, generation = generation
                group.addTask {
                    await supervisor.run()
                    mergedInput.yield(.supervisorEnded(account: name, generation: generation))
                }
            }

            for account in current.accounts { start(account) }
            logger.info("daemon started: \(current.accounts.count) account(s) from \(configurationPath)")
            notify { try notifier.ready(status: board.summary) }

            loop: for await message in merged {
                switch message {
                case .stop:
                    guard !stopping else { continue }
                    stopping = true
                    notify { try notifier.stopping() }
                    logger.info("stopping \(running.count) account(s)")
                    for name in running.keys { running[name]!.stopping = true; running[name]!.supervisor.stop() }
                    waiting = [:]
                    if running.isEmpty { break loop }
                case .supervisorEnded(let name, let ended):
                    if running[name]?.generation == ended { running[name] = nil }
                    if !stopping, running[name] == nil, let next = waiting.removeValue(forKey: name) { start(next) }
                    if running[name] == nil, waiting[name] == nil, !current.accounts.contains(where: { $0.name == name }) {
                        board.remove(name)
                    }
                    if stopping, running.isEmpty { break loop }
                case .reload:
                    guard !stopping else { continue }
                    notify { try notifier.reloading() }
                    do {
                        let next = try Daemon.load(configurationPath, environment: options.environment)
                        for account in apply(next, current: &current, running: &running, waiting: &waiting) { start(account) }
                    } catch {
                        logger.error("reload failed, keeping the running configuration: \(error)")
                    }
                    notify { try notifier.ready(status: board.summary) }
                case .sync(let account):
                    for (name, entry) in running where account == nil || account == name {
                        entry.supervisor.requestSync(.reload)
                    }
                case .statusChanged:
                    let summary = board.summary
                    if summary != lastStatus {
                        lastStatus = summary
                        notify { try notifier.status(summary) }
                    }
                }
            }
            logger.info("daemon stopped")
            group.cancelAll()
        }
    }

    /// Applies a reloaded configuration: stops removed and changed accounts
    /// (changed ones wait in `waiting` until their old supervisor ended) and
    /// returns the added accounts for the caller to start.
    private func apply(_ next: FerrymailConfiguration, current: inout FerrymailConfiguration, running: inout [String: Running],
                       waiting: inout [String: AccountConfiguration]) -> [AccountConfiguration] {
        for warning in next.warnings { logger.warning("\(warning)") }
        if next.general.statePath != current.general.statePath {
            logger.warning("reload: 'state' changed to \(next.general.statePath); it takes effect only after a restart")
        }
        let connectionsChanged = next.general.connectionsPerAccount != current.general.connectionsPerAccount
        let nextByName = Dictionary(next.accounts.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var added: [String] = [], removed: [String] = [], restarted: [String] = []
        for (name, entry) in running where !entry.stopping {
            guard let updated = nextByName[name] else {
                removed.append(name)
                running[name]!.stopping = true
                entry.supervisor.stop()
                continue
            }
            if updated != entry.configuration || connectionsChanged {
                restarted.append(name)
                running[name]!.stopping = true
                entry.supervisor.stop()
                waiting[name] = updated
            } else {
                entry.supervisor.requestSync(.reload)
            }
        }
        current = next
        let additions = next.accounts.filter { running[$0.name] == nil }
        added = additions.map(\.name)
        for name in waiting.keys where nextByName[name] == nil { waiting[name] = nil }
        for (name, account) in waiting { waiting[name] = nextByName[name] ?? account }
        logger.notice("configuration reloaded: \(added.count) added\(Self.list(added)), \(removed.count) removed\(Self.list(removed)), \(restarted.count) changed\(Self.list(restarted))")
        return additions
    }

    private static func list(_ names: [String]) -> String {
        names.isEmpty ? "" : " (\(names.sorted().joined(separator: ", ")))"
    }

    /// systemd notifications are best effort: a failure is logged, never fatal.
    private func notify(_ body: () throws -> Void) {
        do {
            try body()
        } catch {
            logger.warning("\(error)")
        }
    }
}

/// Sends `WATCHDOG=1` every half `WATCHDOG_USEC`. It runs on the same
/// cooperative pool as the supervisors, so a wedged pool stops the pings and
/// systemd restarts the service.
struct WatchdogService: Service {
    let notifier: SystemdNotifier
    let interval: Duration
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try notifier.watchdog()
                } catch {
                    logger.warning("\(error)")
                }
                try await Task.sleep(for: interval)
            }
        }
    }
}
