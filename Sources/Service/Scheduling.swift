/// The daemon's notion of "now" for scheduling: the continuous clock, which
/// keeps counting through system suspend, so a poll that fell due while the
/// laptop slept runs right after resume.
public typealias DaemonInstant = ContinuousClock.Instant

/// How long bursts of change notifications are collected before one sync.
public struct DebouncePolicy: Sendable, Hashable {
    /// Fire once no new change arrived for this long…
    public var quiet: Duration
    /// …or at the latest this long after the first change of the burst, so a
    /// mail reader that keeps touching files cannot postpone the push forever.
    public var maximumDelay: Duration

    public init(quiet: Duration, maximumDelay: Duration) {
        self.quiet = quiet
        self.maximumDelay = max(maximumDelay, quiet)
    }

    /// Local Maildir changes: a mail reader marking 20 messages read renames
    /// 20 files in a few milliseconds; one push is enough.
    public static let local = DebouncePolicy(quiet: .milliseconds(300), maximumDelay: .seconds(2))
    /// Server notifications: NOTIFY sends a STATUS per mailbox and IDLE an
    /// EXISTS per message; a short window merges a delivery burst.
    public static let server = DebouncePolicy(quiet: .milliseconds(100), maximumDelay: .seconds(1))
}

/// Collapses a burst of events into one firing: pure, driven by the instants
/// the caller passes in.
public struct Debouncer: Sendable, Hashable {
    public let policy: DebouncePolicy
    public private(set) var firstEvent: DaemonInstant?
    public private(set) var lastEvent: DaemonInstant?
    /// Events recorded since the last firing.
    public private(set) var count = 0

    public init(_ policy: DebouncePolicy) {
        self.policy = policy
    }

    public var isPending: Bool { firstEvent != nil }

    public mutating func record(at now: DaemonInstant) {
        if firstEvent == nil { firstEvent = now }
        lastEvent = now
        count += 1
    }

    /// When the pending burst fires: quiet period after the last event, or the
    /// maximum delay after the first, whichever comes first. nil when idle.
    public var deadline: DaemonInstant? {
        guard let firstEvent, let lastEvent else { return nil }
        return min(lastEvent + policy.quiet, firstEvent + policy.maximumDelay)
    }

    /// Returns the number of events merged when the burst is due at `now`
    /// (and resets), nil otherwise.
    public mutating func fire(at now: DaemonInstant) -> Int? {
        guard let deadline, now >= deadline else { return nil }
        defer { reset() }
        return count
    }

    public mutating func reset() {
        firstEvent = nil
        lastEvent = nil
        count = 0
    }
}

/// Notices that the wall clock moved differently from the monotonic clock:
/// the machine was suspended (CLOCK_MONOTONIC stands still, the wall clock
/// does not) or the time was stepped. Either way IMAP connections are probably
/// dead and NAT mappings gone, so the supervisor reconnects at once instead of
/// waiting out a back-off computed before the sleep.
public struct ClockJumpDetector: Sendable, Hashable {
    /// Differences below this are ordinary drift and scheduling latency.
    public let tolerance: Duration
    private var last: (monotonic: Duration, wallSeconds: Double)?

    public init(tolerance: Duration = .seconds(30)) {
        self.tolerance = tolerance
    }

    /// - Parameters:
    ///   - monotonic: a clock that stops during suspend (`SuspendingClock`),
    ///     as the time since any fixed origin.
    ///   - wallSeconds: seconds since the epoch (`gettimeofday`).
    /// - Returns: the size of the jump (wall minus monotonic progress) when it
    ///   exceeds the tolerance in either direction, else nil.
    public mutating func observe(monotonic: Duration, wallSeconds: Double) -> Duration? {
        defer { last = (monotonic, wallSeconds) }
        guard let last else { return nil }
        let monotonicElapsed = ReconnectBackoff.seconds(monotonic - last.monotonic)
        let wallElapsed = wallSeconds - last.wallSeconds
        let difference = wallElapsed - monotonicElapsed
        guard abs(difference) > ReconnectBackoff.seconds(tolerance) else { return nil }
        return .seconds(difference)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.tolerance == rhs.tolerance && lhs.last?.monotonic == rhs.last?.monotonic && lhs.last?.wallSeconds == rhs.last?.wallSeconds
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(tolerance)
        hasher.combine(last?.monotonic)
        hasher.combine(last?.wallSeconds)
    }
}

/// Why a sync of an account runs; several can coincide.
public enum SyncReason: String, Sendable, Hashable, Comparable, CaseIterable {
    case initial
    case server
    case local
    case poll
    case fullReconcile = "full-reconcile"
    case retry
    case reconnected
    case clockJump = "clock-jump"
    case reload

    public static func < (lhs: Self, rhs: Self) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// Decides when an account syncs, as a pure state machine: every input
/// carries its instant, and `nextDeadline` tells the caller how long it may
/// sleep. One sync at a time; triggers arriving meanwhile are remembered and
/// merged into the next one.
///
/// While backing off, triggers wait for the retry time (a local change must
/// not defeat the back-off of an unreachable server); a clock jump or a
/// reconnected watcher ends the back-off, because the reason for it is likely
/// gone.
public struct SyncScheduler: Sendable, Hashable {
    public struct Policy: Sendable, Hashable {
        /// nil when NOTIFY watches every folder, so no poll is needed.
        public var pollInterval: Duration?
        public var fullReconcileInterval: Duration
        public var serverDebounce: DebouncePolicy

        public init(pollInterval: Duration?, fullReconcileInterval: Duration, serverDebounce: DebouncePolicy = .server) {
            self.pollInterval = pollInterval
            self.fullReconcileInterval = fullReconcileInterval
            self.serverDebounce = serverDebounce
        }
    }

    public enum Outcome: Sendable, Hashable {
        case succeeded
        case failed(ReconnectBackoff.Failure)
    }

    public var policy: Policy {
        didSet { if policy.pollInterval != oldValue.pollInterval { nextPoll = policy.pollInterval.map { lastSyncStart + $0 } } }
    }
    public private(set) var backoff: ReconnectBackoff
    private var server: Debouncer
    private var forced: Set<SyncReason> = [.initial]
    private var lastSyncStart: DaemonInstant
    public private(set) var nextPoll: DaemonInstant?
    public private(set) var nextFullReconcile: DaemonInstant
    /// Set while backing off: no sync before this.
    public private(set) var retryAt: DaemonInstant?
    public private(set) var isSyncing = false
    /// The reasons of the sync in progress.
    public private(set) var running: Set<SyncReason> = []

    public init(policy: Policy, backoff: ReconnectBackoff, now: DaemonInstant) {
        self.policy = policy
        self.backoff = backoff
        server = Debouncer(policy.serverDebounce)
        lastSyncStart = now
        nextPoll = policy.pollInterval.map { now + $0 }
        nextFullReconcile = now + policy.fullReconcileInterval
    }

    /// The server reported a change (NOTIFY STATUS, IDLE EXISTS…).
    public mutating func serverChanged(at now: DaemonInstant) {
        server.record(at: now)
    }

    /// The Maildir watcher delivered a (debounced) batch.
    public mutating func localChanged(at now: DaemonInstant) {
        forced.insert(.local)
    }

    /// A server watcher connected after being down: changes made meanwhile
    /// were not notified, and the outage that caused a back-off is over.
    public mutating func reconnected(at now: DaemonInstant) {
        forced.insert(.reconnected)
        retryAt = nil
    }

    public mutating func clockJumped(at now: DaemonInstant) {
        forced.insert(.clockJump)
        retryAt = nil
        backoff.succeeded()
    }

    /// A configuration reload or an explicit request: sync at once.
    public mutating func requestSync(_ reason: SyncReason) {
        forced.insert(reason)
        if reason == .reload { retryAt = nil }
    }

    /// When the caller should look again (nil: only when an input arrives).
    public var nextDeadline: DaemonInstant? {
        guard !isSyncing else { return nil }
        if let retryAt { return retryAt }
        if !forced.isEmpty { return lastSyncStart } // already due
        return [server.deadline, nextPoll, nextFullReconcile].compactMap { $0 }.min()
    }

    /// The reasons to start a sync now, or nil. Starting consumes them.
    public mutating func startIfDue(at now: DaemonInstant) -> Set<SyncReason>? {
        guard !isSyncing else { return nil }
        var reasons = forced
        if let retryAt {
            guard now >= retryAt else { return nil }
            reasons.insert(.retry)
        }
        if server.fire(at: now) != nil { reasons.insert(.server) }
        if let nextPoll, now >= nextPoll { reasons.insert(.poll) }
        if now >= nextFullReconcile { reasons.insert(.fullReconcile) }
        guard !reasons.isEmpty else { return nil }
        forced = []
        retryAt = nil
        isSyncing = true
        running = reasons
        lastSyncStart = now
        // Every sync looks at every folder (unchanged ones cheaply), so it
        // also counts as the poll.
        nextPoll = policy.pollInterval.map { now + $0 }
        if reasons.contains(.fullReconcile) { nextFullReconcile = now + policy.fullReconcileInterval }
        return reasons
    }

    /// Records the end of the sync started by `startIfDue`; on failure returns
    /// the back-off decision (the scheduler already set `retryAt`).
    @discardableResult
    public mutating func finished(_ outcome: Outcome, at now: DaemonInstant,
                                  random: inout some RandomNumberGenerator) -> ReconnectBackoff.Decision? {
        isSyncing = false
        defer { running = [] }
        switch outcome {
        case .succeeded:
            backoff.succeeded()
            retryAt = nil
            return nil
        case .failed(let failure):
            let decision = backoff.failed(failure, random: &random)
            retryAt = now + decision.delay
            // A failed full reconcile is owed: the retry does it.
            if running.contains(.fullReconcile) { forced.insert(.fullReconcile) }
            return decision
        }
    }
}
