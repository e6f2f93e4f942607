/// Exponential reconnect back-off with jitter, capped, as a pure value: the
/// caller supplies the random numbers, so tests check growth, jitter bounds and
/// the cap without sleeping.
///
/// Why jitter only *downwards* (`nominal × [1 − jitter, 1]`): the configured
/// `backoff_max` is then a true ceiling the user can rely on ("never more than
/// 15 minutes between attempts"), and daemons restarted together by a server
/// outage still spread out.
///
/// Authentication failures are treated apart: hammering a server with a wrong
/// password gets accounts locked. The first one is retried once at the initial
/// delay, because the supervisor resolves the secret again first (an OAuth2
/// token may simply have expired); a second consecutive one is reported once
/// and then retried only at the cap until something succeeds.
public struct ReconnectBackoff: Sendable, Hashable {
    public enum Failure: Sendable, Hashable {
        /// Network loss, timeout, BYE, DNS, server restart: may succeed soon.
        case transient
        /// The server refused the credentials (or TLS trust failed): needs a human.
        case authentication
    }

    /// What to do after a failure.
    public struct Decision: Sendable, Hashable {
        /// Wait this long before the next attempt.
        public var delay: Duration
        /// Whether this failure deserves a log line at error level and a status
        /// update; false for repeats of an already reported authentication failure.
        public var report: Bool
    }

    public let initial: Duration
    public let cap: Duration
    public let multiplier: Double
    /// Share (0…1) of the nominal delay that jitter may remove.
    public let jitter: Double
    public private(set) var consecutiveFailures = 0
    public private(set) var consecutiveAuthenticationFailures = 0

    public init(initial: Duration = .seconds(1), cap: Duration, multiplier: Double = 2, jitter: Double = 0.25) {
        self.initial = max(initial, .milliseconds(1))
        self.cap = max(cap, self.initial)
        self.multiplier = max(multiplier, 1)
        self.jitter = min(max(jitter, 0), 1)
    }

    /// The delay before jitter for the `failures`-th consecutive failure
    /// (1-based): initial × multiplier^(failures−1), at most the cap.
    public func nominalDelay(failures: Int) -> Duration {
        guard failures > 1 else { return min(initial, cap) }
        let capSeconds = Self.seconds(cap)
        var seconds = Self.seconds(initial)
        for _ in 1..<failures {
            seconds *= multiplier
            if seconds >= capSeconds { return cap }
        }
        return min(.seconds(seconds), cap)
    }

    /// Records a failure and returns how long to wait. `random` draws the
    /// jitter; pass `SystemRandomNumberGenerator()` outside tests.
    public mutating func failed(_ failure: Failure, random: inout some RandomNumberGenerator) -> Decision {
        consecutiveFailures += 1
        let nominal: Duration
        let report: Bool
        switch failure {
        case .transient:
            consecutiveAuthenticationFailures = 0
            nominal = nominalDelay(failures: consecutiveFailures)
            report = true
        case .authentication:
            consecutiveAuthenticationFailures += 1
            if consecutiveAuthenticationFailures == 1 {
                // One quick retry with a freshly resolved secret.
                nominal = initial
                report = false
            } else {
                nominal = cap
                report = consecutiveAuthenticationFailures == 2
            }
        }
        // 53 random bits → [0, 1). Not `Double.random(in:using:)`: its
        // rejection sampling never ends with a constant test generator.
        let unit = Double(random.next() >> 11) / 9_007_199_254_740_992.0
        let factor = 1 - jitter * unit
        let delay = Duration.seconds(Self.seconds(nominal) * factor)
        return Decision(delay: max(delay, .milliseconds(1)), report: report)
    }

    /// A success ends the streak: the next failure starts at `initial` again.
    public mutating func succeeded() {
        consecutiveFailures = 0
        consecutiveAuthenticationFailures = 0
    }

    static func seconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
