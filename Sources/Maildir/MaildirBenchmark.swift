import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Measurements of the store's two hot paths, for the project's benchmark
/// executable: scanning a large folder and durable delivery.
public enum MaildirBenchmark {
    public struct ScanReport: Sendable, CustomStringConvertible {
        public let messageCount: Int
        public let populateSeconds: Double
        /// First scan after the files were created (dentries still cached:
        /// the cost of the daemon's first pass over a folder it just synced).
        public let coldScanSeconds: Double
        /// User+system CPU time of the cold scan: wall time on a shared
        /// machine includes waiting for a core.
        public let coldScanCPUSeconds: Double
        /// Full rescan of the unchanged folder.
        public let warmScanSeconds: Double
        /// `scanIfChanged(since:)` on the unchanged folder (token check only), mean of many.
        public let tokenCheckSeconds: Double
        public let tokenCheckSkippedScan: Bool
        public let entriesFound: Int
        /// Resident set size growth while holding the scan result.
        public let rssGrowthBytes: Int
        public let peakRSSBytes: Int

        public var description: String {
            """
            scan: \(messageCount) messages (populated in \(fmt(populateSeconds)) s)
              cold scan:      \(fmt(coldScanSeconds * 1000)) ms wall, \(fmt(coldScanCPUSeconds * 1000)) ms CPU (\(entriesFound) entries, \(fmt(coldScanCPUSeconds / Double(max(messageCount, 1)) * 1e9)) ns CPU/message)
              warm rescan:    \(fmt(warmScanSeconds * 1000)) ms
              token check:    \(fmt(tokenCheckSeconds * 1e6)) µs (rescan skipped: \(tokenCheckSkippedScan))
              memory:         +\(rssGrowthBytes / 1024) KiB RSS holding the result (\(rssGrowthBytes / max(messageCount, 1)) B/message), peak RSS \(peakRSSBytes / 1024) KiB
            """
        }
    }

    public struct DeliveryReport: Sendable, CustomStringConvertible {
        public let messageCount: Int
        public let messageSize: Int
        public let batchSize: Int
        /// Per-file fsync and a `cur/` fsync after every message.
        public let unbatchedSeconds: Double
        /// Per-file fsync, `cur/` fsync once per `batchSize` messages.
        public let batchedSeconds: Double

        public var description: String {
            """
            delivery: \(messageCount) × \(messageSize / 1024) KiB, file fsync before every rename
              directory fsync per message:   \(fmt(unbatchedSeconds)) s = \(fmt(Double(messageCount) / unbatchedSeconds)) msg/s, \(fmt(Double(messageCount * messageSize) / unbatchedSeconds / 1_048_576)) MiB/s
              directory fsync per \(batchSize) msgs: \(fmt(batchedSeconds)) s = \(fmt(Double(messageCount) / batchedSeconds)) msg/s, \(fmt(Double(messageCount * messageSize) / batchedSeconds / 1_048_576)) MiB/s
            """
        }
    }

    /// Creates `messageCount` small message files directly in a fresh
    /// folder's `cur/` (bypassing fsync, which is not what is measured here),
    /// waits until the directory stamps are settled, then measures.
    public static func measureScan(directory: String, messageCount: Int = 100_000) throws -> ScanReport {
        let store = try MaildirStore(root: directory, layout: .maildirPlusPlus)
        let folder = try store.folder(named: "Bench/Scan", create: true)
        _ = try folder.keywordMask(for: ["$Forwarded", "$Junk", "NonJunk"])
        let body = Array(repeating: UInt8(ascii: "x"), count: 200)
        let populateStart = ContinuousClock.now
        for i in 0..<messageCount {
            let info = ["S", "RS", "FS", "Sa", "Sbc", ""][i % 6]
            let name = "\(1_700_000_000 + i).M\(i % 1_000_000)P4242Q\(i).bench.example,S=\(body.count):2,\(info)"
            let fd = openat(folder.cur.fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd < 0 { throw MaildirError.systemCall(operation: "create", path: folder.cur.child(name), errno: errno) }
            try writeAll(fd, body, path: name)
            _ = close(fd)
        }
        let populateSeconds = seconds(ContinuousClock.now - populateStart)
        Thread.sleep(forTimeInterval: ScanToken.settleInterval + 0.1)

        let rssBefore = residentBytes().current
        let coldStart = ContinuousClock.now
        let coldCPUStart = cpuSeconds()
        let cold = try folder.scan()
        let coldCPU = cpuSeconds() - coldCPUStart
        let coldSeconds = seconds(ContinuousClock.now - coldStart)
        let rssAfter = residentBytes().current

        let warmStart = ContinuousClock.now
        let warm = try folder.scan()
        let warmSeconds = seconds(ContinuousClock.now - warmStart)
        precondition(warm.entries.count == cold.entries.count)

        let iterations = 1000
        var skipped = true
        let tokenStart = ContinuousClock.now
        for _ in 0..<iterations where try folder.scanIfChanged(since: cold.token) != nil { skipped = false }
        let tokenSeconds = seconds(ContinuousClock.now - tokenStart) / Double(iterations)
        let peak = residentBytes().peak
        return withExtendedLifetime(cold) {
            ScanReport(
                messageCount: messageCount, populateSeconds: populateSeconds, coldScanSeconds: coldSeconds, coldScanCPUSeconds: coldCPU,
                warmScanSeconds: warmSeconds, tokenCheckSeconds: tokenSeconds, tokenCheckSkippedScan: skipped,
                entriesFound: cold.entries.count, rssGrowthBytes: max(0, rssAfter - rssBefore), peakRSSBytes: peak)
        }
    }

    /// Delivers `messageCount` messages of `messageSize` bytes, streamed in
    /// 4 KiB chunks, twice: once with a `cur/` fsync per message and once
    /// batched.
    public static func measureDelivery(directory: String, messageCount: Int = 10_000, messageSize: Int = 20 * 1024, batchSize: Int = 100) throws -> DeliveryReport {
        let store = try MaildirStore(root: directory, layout: .maildirPlusPlus)
        var line = Array("Subject: benchmark message with a line of text to fill the body\r\n".utf8)
        var message: [UInt8] = []
        while message.count < messageSize { message += line }
        message = Array(message.prefix(messageSize))
        line.removeAll()
        let flags = MessageFlags(system: [.seen], keywords: ["$Forwarded"])

        func deliver(into folder: MaildirFolder, batched: Bool) throws -> Double {
            let start = ContinuousClock.now
            for i in 0..<messageCount {
                let delivery = try folder.beginDelivery()
                var offset = 0
                while offset < message.count {
                    let end = min(offset + 4096, message.count)
                    try delivery.write(message[offset..<end])
                    offset = end
                }
                try delivery.commit(flags: flags, internalDate: Date(timeIntervalSince1970: 1_700_000_000), syncDirectory: !batched)
                if batched && (i + 1) % batchSize == 0 { try folder.syncDirectories() }
            }
            if batched { try folder.syncDirectories() }
            return seconds(ContinuousClock.now - start)
        }
        let unbatched = try deliver(into: store.folder(named: "Bench/Unbatched", create: true), batched: false)
        let batched = try deliver(into: store.folder(named: "Bench/Batched", create: true), batched: true)
        return DeliveryReport(messageCount: messageCount, messageSize: messageSize, batchSize: batchSize, unbatchedSeconds: unbatched, batchedSeconds: batched)
    }

    /// `[scan|deliver|all] [--dir PATH] [--scan-count N] [--deliver-count N] [--keep]`.
    /// The directory must not exist yet (it is removed afterwards unless
    /// `--keep`). Returns a process exit status.
    public static func runFromCommandLine(arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Int32 {
        var mode = "all", dir = NSTemporaryDirectory() + "ferrymail-maildir-bench-\(getpid())"
        var scanCount = 100_000, deliverCount = 10_000, keep = false
        var it = arguments.makeIterator()
        while let arg = it.next() {
            switch arg {
            case "scan", "deliver", "all": mode = arg
            case "--dir": dir = it.next() ?? dir
            case "--scan-count": scanCount = Int(it.next() ?? "") ?? scanCount
            case "--deliver-count": deliverCount = Int(it.next() ?? "") ?? deliverCount
            case "--keep": keep = true
            default:
                print("usage: [scan|deliver|all] [--dir PATH] [--scan-count N] [--deliver-count N] [--keep]")
                return 2
            }
        }
        if FileManager.default.fileExists(atPath: dir) {
            print("\(dir) already exists; choose a new --dir so no existing mail is touched")
            return 2
        }
        defer { if !keep { try? FileManager.default.removeItem(atPath: dir) } }
        do {
            if mode != "deliver" { print(try measureScan(directory: dir + "/scan", messageCount: scanCount)) }
            if mode != "scan" { print(try measureDelivery(directory: dir + "/deliver", messageCount: deliverCount)) }
            return 0
        } catch {
            print("benchmark failed: \(error)")
            return 1
        }
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return s(usage.ru_utime) + s(usage.ru_stime)
    }

    /// VmRSS and VmHWM from /proc/self/status, in bytes.
    static func residentBytes() -> (current: Int, peak: Int) {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
        func field(_ key: String) -> Int {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return 0 }
            return (Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0) * 1024
        }
        return (field("VmRSS:"), field("VmHWM:"))
    }
}

private func fmt(_ value: Double) -> String { String(format: "%.2f", value) }
