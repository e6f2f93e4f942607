import Foundation
import IMAPClient
import IMAPCodec
import Maildir
import SyncState
import Archive
import TestSupport

// Prints the figures the issues ask for. Speed targets are checked by these
// numbers, not by timed unit tests (which are flaky on shared 2-core machines).
//
//   ferrymail-bench parser [--bytes N]      response parser on a synthetic FETCH stream
//   ferrymail-bench fetch [--messages N]    2,000 × ~65 KB from a private Dovecot: pipelined vs one at a time
//   ferrymail-bench maildir                 100,000-message scan, 10,000 × 20 KB durable deliveries
//   ferrymail-bench state                   100,000 pair inserts
//   ferrymail-bench sync [--messages N] [--size BYTES] [--ferrymail PATH] [--hold] [--no-mbsync] [--no-list-index]
//                        [--folders N]      ferrymail sync vs mbsync: initial, no-op, after changes; --folders
//                                           spreads the messages evenly over INBOX and N - 1 other folders
//   ferrymail-bench archive [--messages N] [--size BYTES]
//                                           backup and restore throughput, compression ratio, peak RSS
//   ferrymail-bench restore [--messages N] [--size BYTES] [--ferrymail PATH] [--level N]
//                                           end to end with the ferrymail binary: backup (mirror / download),
//                                           verify-archive, restore (archive, no-op, Maildir) vs OfflineIMAP
//   ferrymail-bench all

func peakRSSMegabytes() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kb = Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else { return 0 }
    return kb / 1024
}

func option(_ name: String, _ arguments: [String], default value: Int) -> Int {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count, let n = Int(arguments[index + 1]) else { return value }
    return n
}

func benchParser(_ arguments: [String]) {
    let total = option("--bytes", arguments, default: 1_000_000_000)
    // Large bodies measure literal slicing; small ones (2 KB) the per-response line parsing.
    for size in [option("--size", arguments, default: 64 * 1024), 2 * 1024] {
        let result = ParserBenchmark.run(totalBytes: total, messageSize: size)
        print(String(format: "parser: %d MB of FETCH responses with %d-byte bodies in %.2f s = %.0f MB/s (peak RSS so far %.1f MB)",
                     total / 1_000_000, size, result.seconds, result.megabytesPerSecond, peakRSSMegabytes()))
    }
}

func benchFetch(_ arguments: [String]) async throws {
    let count = option("--messages", arguments, default: 2_000)
    let server = try await DovecotServer.start(.init())
    defer { server.stop() }
    let user = server.users[0]
    let messages = Corpus.messages(count: count, size: 65_000)
    _ = try server.seedMaildir(user: user.name, messages: messages)
    // Dovecot indexes a freshly seeded Maildir on first access; do that outside the timing.
    _ = try server.doveadm(["mailbox", "status", "-u", user.name, "messages", "INBOX"])
    for pipelined in [true, false, true] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferrymail-fetch-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let report = try await FetchBenchmark.run(host: server.host, port: server.plainPort, user: user.name,
                                                  password: user.password, outputDirectory: directory, pipelined: pipelined)
        print("fetch: \(report)")
    }
    print(String(format: "fetch: peak RSS of the whole benchmark process %.1f MB", peakRSSMegabytes()))
}

func benchMaildir() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferrymail-maildir-bench-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    print("maildir: \(try MaildirBenchmark.measureScan(directory: directory + "/scan", messageCount: 100_000))")
    print("maildir: \(try MaildirBenchmark.measureDelivery(directory: directory + "/deliver", messageCount: 10_000))")
}

func benchState() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferrymail-state-bench-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    print("state: \(try StateBenchmark.insertPairs(count: 100_000, batchSize: 5_000, in: directory))")
}

func benchArchive(_ arguments: [String]) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferrymail-archive-bench-\(UUID())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let level = Int32(option("--level", arguments, default: 1))
    let result = try await ArchiveBenchmark.run(messages: option("--messages", arguments, default: 2_000),
                                                messageSize: option("--size", arguments, default: 70_000),
                                                directory: directory, options: ArchiveWriterOptions(compressionLevel: level))
    print("archive: \(result)")
}

/// `--ferrymail PATH`, or the `ferrymail` next to this executable.
func ferrymailBinary(_ arguments: [String]) -> String {
    arguments.firstIndex(of: "--ferrymail").flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
        ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ferrymail").path
}

let arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first ?? "all"
do {
    switch mode {
    case "parser": benchParser(arguments)
    case "fetch": try await benchFetch(arguments)
    case "maildir": try benchMaildir()
    case "state": try benchState()
    case "sync":
        let binary = arguments.firstIndex(of: "--ferrymail").map { arguments[$0 + 1] }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ferrymail").path
        try await SyncBenchmark.run(ferrymail: binary, messages: option("--messages", arguments, default: 2_048),
                                    size: option("--size", arguments, default: 50_000),
                                    hold: arguments.contains("--hold"), withMbsync: !arguments.contains("--no-mbsync"),
                                    listIndex: !arguments.contains("--no-list-index"),
                                    folders: arguments.contains("--folders") ? option("--folders", arguments, default: 3) : nil)
    case "archive": try await benchArchive(arguments)
    case "restore":
        // Defaults: issue 6's 20,000 messages / ~1.4 GB (3% are 20× the size).
        try await RestoreBenchmark.run(ferrymail: ferrymailBinary(arguments), messages: option("--messages", arguments, default: 20_000),
                                       size: option("--size", arguments, default: 43_000),
                                       level: option("--level", arguments, default: 1))
    case "all":
        benchParser(arguments)
        try benchState()
        try benchMaildir()
        try await benchFetch(arguments)
    default:
        print("usage: ferrymail-bench [parser|fetch|maildir|state|sync|archive|restore|all] [--bytes N] [--messages N] [--size BYTES]\n"
              + "       ferrymail-bench restore [--messages N] [--size BYTES] [--ferrymail PATH] [--level N]")
        exit(2)
    }
} catch {
    print("benchmark failed: \(error)")
    exit(1)
}
