import Synchronization
import SyncState

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What one account supervisor last reported, for the systemd STATUS line,
/// tests and benchmarks (the state DB has the same for `ferrymail status`).
public struct AccountSnapshot: Sendable, Hashable {
    public var account: String
    public var state: DaemonState
    public var detail: String?
    /// Wall-clock seconds of the last sync that ended without errors.
    public var lastSuccess: Double?
    /// Syncs finished (successful or not) since the supervisor started.
    public var completedSyncs = 0
    /// Messages copied (both directions) and flag changes, summed over all syncs.
    public var messagesCopied = 0
    public var flagChanges = 0
    /// The last error, kept after recovery like the state DB does.
    public var lastError: String?
    /// Whether the last sync ended with errors.
    public var failing = false

    public init(account: String, state: DaemonState) {
        self.account = account
        self.state = state
    }
}

/// Shared by the supervisors of one daemon; every update wakes the daemon's
/// status writer through `onChange`.
final class StatusBoard: Sendable {
    private let entries = Mutex<[String: AccountSnapshot]>([:])
    private let onChange: @Sendable () -> Void

    init(onChange: @escaping @Sendable () -> Void) {
        self.onChange = onChange
    }

    func update(_ account: String, _ body: (inout AccountSnapshot) -> Void) {
        entries.withLock { entries in
            var snapshot = entries[account] ?? AccountSnapshot(account: account, state: .starting)
            body(&snapshot)
            entries[account] = snapshot
        }
        onChange()
    }

    func remove(_ account: String) {
        _ = entries.withLock { $0.removeValue(forKey: account) }
        onChange()
    }

    var snapshots: [String: AccountSnapshot] { entries.withLock { $0 } }

    /// "3 accounts, last sync 12:03, 0 errors" for `systemctl status`.
    var summary: String {
        let all = snapshots.values
        let count = all.count
        let errors = all.filter(\.failing).count
        var text = "\(count) account\(count == 1 ? "" : "s")"
        if let last = all.compactMap(\.lastSuccess).max() {
            text += ", last sync \(Self.clockTime(last, seconds: false))"
        } else {
            text += ", no sync yet"
        }
        text += ", \(errors) error\(errors == 1 ? "" : "s")"
        let backingOff = all.filter { $0.state == .backingOff }.count
        if backingOff > 0 { text += ", \(backingOff) backing off" }
        return text
    }

    /// Local wall-clock time of day, "12:03" or "12:03:05".
    static func clockTime(_ epochSeconds: Double, seconds: Bool = true) -> String {
        var time = time_t(epochSeconds)
        var parts = tm()
        localtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let hm = "\(two(parts.tm_hour)):\(two(parts.tm_min))"
        return seconds ? hm + ":\(two(parts.tm_sec))" : hm
    }

    static func wallClockNow() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
