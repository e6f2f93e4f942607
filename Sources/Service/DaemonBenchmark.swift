import Configuration
import Foundation
import IMAPClient
import IMAPCodec
import Logging
import MailStores
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Measures the daemon end to end against a real server, in-process:
/// notification latency both ways, idle CPU, memory growth over many sync
/// cycles and the time a graceful stop takes.
///
/// Needs only a configuration file whose account points at a disposable
/// server (the benchmark APPENDs messages over its own IMAP connection and
/// renames files in the account's INBOX); `ferrymail-bench` writes one for a
/// private Dovecot. Latencies are taken by polling (the Maildir every 2 ms,
/// the server's `STATUS INBOX (UNSEEN)` every 5 ms), which bounds their
/// resolution.
public struct DaemonBenchmark: Sendable {
    public struct Parameters: Sendable {
        /// Changes measured in each direction (≥ 50 for a meaningful p95).
        public var samples: Int
        /// Quiet period over which idle CPU is measured.
        public var idlePeriod: Duration
        /// RSS is read after this many sync cycles, then after `secondCycleCount`.
        public var firstCycleCount: Int
        public var secondCycleCount: Int
        /// Give up on one change after this long.
        public var timeout: Duration

        public init(samples: Int = 50, idlePeriod: Duration = .seconds(60), firstCycleCount: Int = 100,
                    secondCycleCount: Int = 1000, timeout: Duration = .seconds(20)) {
            self.samples = samples
            self.idlePeriod = idlePeriod
            self.firstCycleCount = firstCycleCount
            self.secondCycleCount = secondCycleCount
            self.timeout = timeout
        }
    }

    public struct Results: Sendable, CustomStringConvertible {
        /// Server APPEND → file in the Maildir's INBOX.
        public var appendToMaildir: [Duration] = []
        /// Local rename adding `S` → `\Seen` on the server.
        public var renameToServer: [Duration] = []
        /// CPU time (user + system) the whole process used while idle, and the period.
        public var idleCPU: Duration = .zero
        public var idlePeriod: Duration = .zero
        /// Resident set size in bytes after the two cycle counts.
        public var rssAtFirstCycles: Int = 0
        public var rssAtSecondCycles: Int = 0
        public var cycles: (first: Int, second: Int) = (0, 0)
        /// Average duration of one (no-op) sync cycle between the two RSS readings.
        public var cycleTime: Duration = .zero
        /// `stop()` → `run()` returned.
        public var stopTime: Duration = .zero

        public static func percentile(_ values: [Duration], _ p: Double) -> Duration {
            guard !values.isEmpty else { return .zero }
            let sorted = values.sorted()
            let index = min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))
            return sorted[index]
        }

        static func ms(_ duration: Duration) -> String {
            let value = ReconnectBackoff.seconds(duration) * 1000
            return String(format: "%.1f ms", value)
        }

        public var description: String {
            let idleShare = ReconnectBackoff.seconds(idleCPU) / max(ReconnectBackoff.seconds(idlePeriod), 1e-9) * 100
            return """
            daemon: server APPEND → Maildir file: p50 \(Self.ms(Self.percentile(appendToMaildir, 0.5))), p95 \(Self.ms(Self.percentile(appendToMaildir, 0.95))) (n=\(appendToMaildir.count))
            daemon: local rename (+S) → \\Seen on server: p50 \(Self.ms(Self.percentile(renameToServer, 0.5))), p95 \(Self.ms(Self.percentile(renameToServer, 0.95))) (n=\(renameToServer.count))
            daemon: idle CPU: \(Self.ms(idleCPU)) over \(ReconnectBackoff.seconds(idlePeriod)) s (\(String(format: "%.3f", idleShare))%)
            daemon: RSS after \(cycles.first) sync cycles: \(rssAtFirstCycles / 1024) KiB; after \(cycles.second): \(rssAtSecondCycles / 1024) KiB; \(Self.ms(cycleTime)) per no-op cycle
            daemon: graceful stop: \(Self.ms(stopTime))
            """
        }
    }

    public let configurationPath: String
    public let accountName: String
    public let parameters: Parameters
    public let logger: Logger

    public init(configurationPath: String, accountName: String, parameters: Parameters = Parameters(),
                logger: Logger = Logger(label: "ferrymail.bench")) {
        self.configurationPath = configurationPath
        self.accountName = accountName
        self.parameters = parameters
        self.logger = logger
    }

    public func run() async throws -> Results {
        let configuration = try Daemon.load(configurationPath, environment: ProcessInfo.processInfo.environment)
        guard let account = configuration.account(named: accountName) else {
            throw ServiceError.configuration(path: configurationPath, message: "no account named \(accountName)")
        }
        let imap = IMAPConfiguration(account: account, secret: try account.secret.resolve(), logger: logger)
        let inbox = account.maildir
        let daemon = Daemon(configurationPath: configurationPath,
                            options: DaemonOptions(handlesSignals: false, environment: [:]), logger: logger)
        var results = Results()
        let parameters = self.parameters

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await daemon.run() }
            do {
                try await Self.waitUntil(timeout: .seconds(60)) { (daemon.accounts[account.name]?.completedSyncs ?? 0) >= 1 }
                try await IMAPConnection.withConnection(configuration: imap) { connection in
                    // Server → Maildir.
                    for index in 0..<parameters.samples {
                        let before = Self.messageFiles(inbox).count
                        let message = Self.message(index: index)
                        let start = ContinuousClock.now
                        _ = try await connection.append(to: "INBOX", message: ByteBuffer(bytes: message))
                        try await Self.waitUntil(timeout: parameters.timeout, interval: .milliseconds(2)) {
                            Self.messageFiles(inbox).count > before
                        }
                        results.appendToMaildir.append(start.duration(to: .now))
                    }
                    // Let the follow-up no-op syncs settle.
                    try await Task.sleep(for: .seconds(1))
                    // Maildir → server.
                    for _ in 0..<parameters.samples {
                        guard let file = Self.messageFiles(inbox).first(where: { !Self.flags(of: $0).contains("S") }) else { break }
                        let unseen = try await Self.unseen(connection)
                        let start = ContinuousClock.now
                        guard rename(file, Self.adding("S", to: file)) == 0 else {
                            throw ServiceError.watch(account: account.name, path: file, errno: errno, operation: "rename")
                        }
                        try await Self.waitUntil(timeout: parameters.timeout, interval: .milliseconds(5)) {
                            try await Self.unseen(connection) < unseen
                        }
                        results.renameToServer.append(start.duration(to: .now))
                    }
                }
                // Idle CPU.
                try await Task.sleep(for: .seconds(2))
                let cpuBefore = Self.cpuTime()
                let idleStart = ContinuousClock.now
                try await Task.sleep(for: parameters.idlePeriod)
                results.idlePeriod = idleStart.duration(to: .now)
                results.idleCPU = Self.cpuTime() - cpuBefore

                // Memory over many sync cycles.
                func cycle(to target: Int) async throws {
                    while (daemon.accounts[account.name]?.completedSyncs ?? 0) < target {
                        let done = daemon.accounts[account.name]?.completedSyncs ?? 0
                        daemon.requestSync(account: account.name)
                        try await Self.waitUntil(timeout: parameters.timeout, interval: .milliseconds(1)) {
                            (daemon.accounts[account.name]?.completedSyncs ?? 0) > done
                        }
                    }
                }
                let base = daemon.accounts[account.name]?.completedSyncs ?? 0
                try await cycle(to: base + parameters.firstCycleCount)
                results.rssAtFirstCycles = Self.residentSetSize()
                let cycleStart = ContinuousClock.now
                try await cycle(to: base + parameters.secondCycleCount)
                results.cycleTime = cycleStart.duration(to: .now) / max(1, parameters.secondCycleCount - parameters.firstCycleCount)
                results.rssAtSecondCycles = Self.residentSetSize()
                results.cycles = (parameters.firstCycleCount, parameters.secondCycleCount)
            } catch {
                await daemon.stop()
                try? await group.waitForAll()
                throw error
            }
            let stopStart = ContinuousClock.now
            await daemon.stop()
            try await group.waitForAll()
            results.stopTime = stopStart.duration(to: .now)
        }
        return results
    }

    // MARK: - Helpers (public for tests and ferrymail-bench)

    /// Polls `condition` until it holds; throws after `timeout`.
    public static func waitUntil(timeout: Duration, interval: Duration = .milliseconds(20),
                                 _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            if try await condition() { return }
            guard ContinuousClock.now < deadline else {
                throw ServiceError.connection(account: "benchmark", message: "condition not met within \(timeout)")
            }
            try await Task.sleep(for: interval)
        }
    }

    /// Full paths of the message files in a Maildir folder's `cur/` and `new/`.
    public static func messageFiles(_ folder: String) -> [String] {
        ["cur", "new"].flatMap { sub -> [String] in
            let directory = folder + "/" + sub
            return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { !$0.hasPrefix(".") }
                .sorted()
                .map { directory + "/" + $0 }
        }
    }

    /// The flag letters of a Maildir file name (after `:2,`).
    public static func flags(of path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        guard let range = name.range(of: ":2,") else { return "" }
        return String(name[range.upperBound...])
    }

    /// The path of `path` in `cur/` with `flag` added to its info, letters sorted.
    public static func adding(_ flag: Character, to path: String) -> String {
        var components = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let name = components.removeLast()
        if components.last == "new" { components[components.count - 1] = "cur" }
        let base = name.range(of: ":2,").map { String(name[..<$0.lowerBound]) } ?? name
        var letters = Set(flags(of: path))
        letters.insert(flag)
        return components.joined(separator: "/") + "/" + base + ":2," + String(letters.sorted())
    }

    static func unseen(_ connection: IMAPConnection) async throws -> UInt32 {
        try await connection.status("INBOX", items: [.unseen]).unseen ?? 0
    }

    static func message(index: Int) -> [UInt8] {
        let text = "From: bench@example.org\r\nTo: bench@example.org\r\nSubject: daemon benchmark \(index)\r\n"
            + "Message-ID: <daemon-bench-\(index)-\(UInt32.random(in: 0...UInt32.max))@example.org>\r\n"
            + "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody \(index)\r\n"
        return Array(text.utf8)
    }

    /// User + system CPU time of the whole process.
    public static func cpuTime() -> Duration {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func duration(_ value: timeval) -> Duration { .seconds(Int64(value.tv_sec)) + .microseconds(Int64(value.tv_usec)) }
        return duration(usage.ru_utime) + duration(usage.ru_stime)
    }

    /// Current resident set size in bytes (`VmRSS` of /proc/self/status).
    public static func residentSetSize() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let digits = line.filter(\.isNumber)
            return (Int(digits) ?? 0) * 1024
        }
        return 0
    }
}
