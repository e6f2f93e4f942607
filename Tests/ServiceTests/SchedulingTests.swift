@testable import Service
import Testing

/// A deterministic generator: the tests pick where in the jitter range a draw lands.
struct FixedRandom: RandomNumberGenerator {
    var values: [UInt64]
    var index = 0
    init(_ values: [UInt64]) { self.values = values }
    static let minimum = FixedRandom([0])
    static let maximum = FixedRandom([UInt64.max])
    mutating func next() -> UInt64 {
        defer { index += 1 }
        return values[index % values.count]
    }
}

/// xorshift, seeded: many different draws, reproducible.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

func seconds(_ duration: Duration) -> Double { ReconnectBackoff.seconds(duration) }

@Suite struct BackoffTests {
    @Test func growsExponentiallyUpToTheCap() {
        let backoff = ReconnectBackoff(initial: .seconds(1), cap: .seconds(60))
        let nominal = (1...9).map { seconds(backoff.nominalDelay(failures: $0)) }
        #expect(nominal == [1, 2, 4, 8, 16, 32, 60, 60, 60])
    }

    @Test func jitterStaysWithinItsBoundsAndNeverExceedsTheCap() {
        var backoff = ReconnectBackoff(initial: .seconds(1), cap: .seconds(30), jitter: 0.25)
        var random = SeededRandom(state: 0x9E37_79B9_7F4A_7C15)
        var distinct = Set<Int>()
        for failure in 1...40 {
            let nominal = seconds(backoff.nominalDelay(failures: failure))
            let decision = backoff.failed(.transient, random: &random)
            let delay = seconds(decision.delay)
            #expect(delay <= nominal + 1e-9, "failure \(failure): \(delay) > nominal \(nominal)")
            #expect(delay >= nominal * 0.75 - 1e-9, "failure \(failure): \(delay) < 75% of \(nominal)")
            #expect(delay <= 30 + 1e-9)
            #expect(decision.report)
            distinct.insert(Int(delay * 1000))
        }
        #expect(distinct.count > 10, "jitter should spread the delays")
    }

    @Test func jitterExtremes() {
        var low = ReconnectBackoff(initial: .seconds(4), cap: .seconds(100), jitter: 0.5)
        var minimum = FixedRandom.minimum
        #expect(seconds(low.failed(.transient, random: &minimum).delay) == 4)
        var high = ReconnectBackoff(initial: .seconds(4), cap: .seconds(100), jitter: 0.5)
        var maximum = FixedRandom.maximum
        #expect(abs(seconds(high.failed(.transient, random: &maximum).delay) - 2) < 1e-6)
    }

    @Test func successResetsTheStreak() {
        var backoff = ReconnectBackoff(initial: .seconds(1), cap: .seconds(60), jitter: 0)
        var random = FixedRandom.minimum
        for _ in 0..<5 { _ = backoff.failed(.transient, random: &random) }
        #expect(backoff.consecutiveFailures == 5)
        backoff.succeeded()
        #expect(backoff.consecutiveFailures == 0)
        #expect(seconds(backoff.failed(.transient, random: &random).delay) == 1)
    }

    @Test func authenticationFailureRetriesOnceQuicklyThenSlowlyAndReportsOnce() {
        var backoff = ReconnectBackoff(initial: .seconds(1), cap: .seconds(900), jitter: 0)
        var random = FixedRandom.minimum
        let first = backoff.failed(.authentication, random: &random)
        #expect(seconds(first.delay) == 1)
        #expect(!first.report, "the first one is retried with a fresh secret before bothering the user")
        let second = backoff.failed(.authentication, random: &random)
        #expect(seconds(second.delay) == 900)
        #expect(second.report)
        for _ in 0..<5 {
            let later = backoff.failed(.authentication, random: &random)
            #expect(seconds(later.delay) == 900)
            #expect(!later.report, "reported once, not at every attempt")
        }
        backoff.succeeded()
        _ = backoff.failed(.authentication, random: &random)
        #expect(seconds(backoff.failed(.authentication, random: &random).delay) == 900)
    }
}

@Suite struct DebouncerTests {
    let t0 = ContinuousClock.now

    @Test func firesAfterTheQuietPeriod() {
        var debouncer = Debouncer(DebouncePolicy(quiet: .milliseconds(300), maximumDelay: .seconds(2)))
        #expect(debouncer.deadline == nil)
        debouncer.record(at: t0)
        debouncer.record(at: t0 + .milliseconds(100))
        #expect(debouncer.deadline == t0 + .milliseconds(400))
        #expect(debouncer.fire(at: t0 + .milliseconds(399)) == nil)
        #expect(debouncer.fire(at: t0 + .milliseconds(400)) == 2)
        #expect(!debouncer.isPending)
        #expect(debouncer.fire(at: t0 + .seconds(5)) == nil, "fires once per burst")
    }

    @Test func aSteadyTrickleIsCutAtTheMaximumDelay() {
        var debouncer = Debouncer(DebouncePolicy(quiet: .milliseconds(300), maximumDelay: .seconds(2)))
        var now = t0
        var fired: [Duration] = []
        // An event every 200 ms for 5 s: never 300 ms quiet.
        for _ in 0..<25 {
            debouncer.record(at: now)
            now = now + .milliseconds(200)
            if debouncer.fire(at: now) != nil { fired.append(t0.duration(to: now)) }
        }
        // The second burst starts with the event at 2.0 s, so it is cut at 4.0 s.
        #expect(fired == [.seconds(2), .seconds(4)])
    }
}

@Suite struct ClockJumpTests {
    @Test func ordinaryProgressIsNoJump() {
        var detector = ClockJumpDetector(tolerance: .seconds(30))
        #expect(detector.observe(monotonic: .seconds(100), wallSeconds: 1_000_000) == nil)
        #expect(detector.observe(monotonic: .seconds(110), wallSeconds: 1_000_010.5) == nil)
        #expect(detector.observe(monotonic: .seconds(120), wallSeconds: 1_000_021) == nil)
    }

    @Test func suspendIsDetected() {
        var detector = ClockJumpDetector(tolerance: .seconds(30))
        _ = detector.observe(monotonic: .seconds(100), wallSeconds: 1_000_000)
        // The monotonic clock stood still for an hour of suspend.
        let jump = detector.observe(monotonic: .seconds(110), wallSeconds: 1_003_610)
        #expect(jump.map(seconds) == 3600)
        #expect(detector.observe(monotonic: .seconds(120), wallSeconds: 1_003_620) == nil, "only once")
    }

    @Test func wallClockSteppedBackIsDetected() {
        var detector = ClockJumpDetector(tolerance: .seconds(30))
        _ = detector.observe(monotonic: .seconds(0), wallSeconds: 1_000_000)
        #expect(detector.observe(monotonic: .seconds(10), wallSeconds: 999_000).map(seconds) == -1010)
    }
}

@Suite struct SchedulerTests {
    let t0 = ContinuousClock.now
    func scheduler(policy: SyncScheduler.Policy = .init(pollInterval: .seconds(300), fullReconcileInterval: .seconds(3600))) -> SyncScheduler {
        SyncScheduler(policy: policy, backoff: ReconnectBackoff(initial: .seconds(1), cap: .seconds(900), jitter: 0), now: t0)
    }

    @Test func initialSyncThenPollAndFullReconcile() {
        var scheduler = scheduler()
        var random = FixedRandom.minimum
        #expect(scheduler.startIfDue(at: t0) == [.initial])
        #expect(scheduler.startIfDue(at: t0) == nil, "one sync at a time")
        scheduler.finished(.succeeded, at: t0 + .seconds(1), random: &random)
        #expect(scheduler.nextDeadline == t0 + .seconds(300))
        #expect(scheduler.startIfDue(at: t0 + .seconds(299)) == nil)
        #expect(scheduler.startIfDue(at: t0 + .seconds(300)) == [.poll])
        scheduler.finished(.succeeded, at: t0 + .seconds(301), random: &random)
        var reasons: [Set<SyncReason>] = []
        while let next = scheduler.nextDeadline, next <= t0 + .seconds(3600) {
            if let due = scheduler.startIfDue(at: next) {
                reasons.append(due)
                scheduler.finished(.succeeded, at: next, random: &random)
            }
        }
        #expect(reasons.last == [.poll, .fullReconcile])
        #expect(reasons.count == 11)
    }

    @Test func withoutPollOnlyEventsAndTheFullReconcileWakeUp() {
        var scheduler = scheduler()
        var random = FixedRandom.minimum
        _ = scheduler.startIfDue(at: t0)
        scheduler.finished(.succeeded, at: t0, random: &random)
        scheduler.policy.pollInterval = nil
        #expect(scheduler.nextDeadline == t0 + .seconds(3600))
    }

    @Test func serverEventsAreDebounced() {
        var scheduler = scheduler()
        var random = FixedRandom.minimum
        _ = scheduler.startIfDue(at: t0)
        scheduler.finished(.succeeded, at: t0, random: &random)
        let t = t0 + .seconds(10)
        scheduler.serverChanged(at: t)
        scheduler.serverChanged(at: t + .milliseconds(50))
        #expect(scheduler.nextDeadline == t + .milliseconds(150))
        #expect(scheduler.startIfDue(at: t + .milliseconds(149)) == nil)
        #expect(scheduler.startIfDue(at: t + .milliseconds(150)) == [.server])
    }

    @Test func triggersDuringASyncAreMergedIntoTheNextOne() {
        var scheduler = scheduler()
        var random = FixedRandom.minimum
        _ = scheduler.startIfDue(at: t0)
        scheduler.localChanged(at: t0 + .milliseconds(10))
        scheduler.serverChanged(at: t0 + .milliseconds(20))
        #expect(scheduler.nextDeadline == nil, "nothing starts while syncing")
        scheduler.finished(.succeeded, at: t0 + .milliseconds(500), random: &random)
        #expect(scheduler.startIfDue(at: t0 + .milliseconds(500)) == [.local, .server])
    }

    @Test func failuresBackOffAndTriggersWait() {
        var scheduler = scheduler()
        var random = FixedRandom.minimum
        _ = scheduler.startIfDue(at: t0)
        let decision = scheduler.finished(.failed(.transient), at: t0, random: &random)
        #expect(decision?.delay == .seconds(1))
        scheduler.localChanged(at: t0 + .milliseconds(100))
        #expect(scheduler.startIfDue(at: t0 + .milliseconds(500)) == nil, "a local change does not defeat the back-off")
        #expect(scheduler.startIfDue(at: t0 + .seconds(1)) == [.local, .retry])
        scheduler.finished(.failed(.transient), at: t0 + .seconds(1), random: &random)
        #expect(scheduler.retryAt == t0 + .seconds(3))
        _ = scheduler.startIfDue(at: t0 + .seconds(3))
        scheduler.finished(.failed(.transient), at: t0 + .seconds(3), random: &random)
        #expect(scheduler.retryAt == t0 + .seconds(7))
        _ = scheduler.startIfDue(at: t0 + .seconds(7))
        scheduler.finished(.succeeded, at: t0 + .seconds(8), random: &random)
        #expect(scheduler.retryAt == nil)
        #expect(scheduler.backoff.consecutiveFailures == 0)
    }

    @Test func reconnectionAndClockJumpEndTheBackoff() {
        var scheduler = scheduler()
        var random = FixedRandom.minimum
        _ = scheduler.startIfDue(at: t0)
        for _ in 0..<6 {
            let now = scheduler.retryAt ?? t0
            _ = scheduler.startIfDue(at: now)
            scheduler.finished(.failed(.transient), at: now, random: &random)
        }
        let retryAt = scheduler.retryAt!
        let now = retryAt - .seconds(10)
        scheduler.reconnected(at: now)
        #expect(scheduler.startIfDue(at: now) == [.reconnected])
        scheduler.finished(.failed(.transient), at: now, random: &random)
        scheduler.clockJumped(at: now + .seconds(1))
        #expect(scheduler.backoff.consecutiveFailures == 0)
        #expect(scheduler.startIfDue(at: now + .seconds(1)) == [.clockJump])
    }

    @Test func authenticationFailureRetriesAtTheCap() {
        var scheduler = scheduler()
        var random = FixedRandom.minimum
        _ = scheduler.startIfDue(at: t0)
        #expect(scheduler.finished(.failed(.authentication), at: t0, random: &random)?.delay == .seconds(1))
        _ = scheduler.startIfDue(at: t0 + .seconds(1))
        let second = scheduler.finished(.failed(.authentication), at: t0 + .seconds(1), random: &random)
        #expect(second?.delay == .seconds(900))
        #expect(second?.report == true)
        scheduler.serverChanged(at: t0 + .seconds(2))
        #expect(scheduler.startIfDue(at: t0 + .seconds(500)) == nil)
        #expect(scheduler.nextDeadline == t0 + .seconds(901))
    }

    @Test func aFailedFullReconcileIsOwedToTheRetry() {
        var scheduler = scheduler(policy: .init(pollInterval: nil, fullReconcileInterval: .seconds(60)))
        var random = FixedRandom.minimum
        _ = scheduler.startIfDue(at: t0)
        scheduler.finished(.succeeded, at: t0, random: &random)
        #expect(scheduler.startIfDue(at: t0 + .seconds(60)) == [.fullReconcile])
        scheduler.finished(.failed(.transient), at: t0 + .seconds(60), random: &random)
        #expect(scheduler.startIfDue(at: t0 + .seconds(61)) == [.fullReconcile, .retry])
    }
}
