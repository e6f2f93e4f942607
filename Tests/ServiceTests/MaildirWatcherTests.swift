import Foundation
import Logging
@testable import Service
import Synchronization
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Collects batches delivered on the watcher thread.
final class BatchCollector: Sendable {
    private let batches = Mutex<[(MaildirChangeBatch, ContinuousClock.Instant)]>([])

    func append(_ batch: MaildirChangeBatch) { batches.withLock { $0.append((batch, .now)) } }

    var all: [MaildirChangeBatch] { batches.withLock { $0.map(\.0) } }
    var times: [ContinuousClock.Instant] { batches.withLock { $0.map(\.1) } }

    /// Waits (polling, with a deadline) until `count` batches arrived.
    func wait(for count: Int, timeout: Duration = .seconds(5)) async throws -> [MaildirChangeBatch] {
        try await DaemonBenchmark.waitUntil(timeout: timeout, interval: .milliseconds(10)) { self.all.count >= count }
        return all
    }
}

func makeFolder(_ path: String) throws {
    for sub in ["cur", "new", "tmp"] {
        try FileManager.default.createDirectory(atPath: path + "/" + sub, withIntermediateDirectories: true)
    }
}

func writeFile(_ path: String, _ text: String = "Subject: x\r\n\r\nbody\r\n") throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

@Suite struct MaildirWatcherTests {
    let quick = DebouncePolicy(quiet: .milliseconds(150), maximumDelay: .seconds(1))

    @Test func deliveriesRenamesAndDeletionsArriveAsOneDebouncedBatch() async throws {
        let root = try TemporaryDirectory(prefix: "ferrymail-watch")
        defer { root.remove() }
        try makeFolder(root.path)
        try makeFolder(root.path + "/.Work")
        let collector = BatchCollector()
        let watcher = try MaildirWatcher(root: root.path, debounce: quick) { collector.append($0) }

        // A delivery (tmp → new), a flag change (rename in cur), a deletion, in another folder too.
        try writeFile(root.path + "/tmp/1.host")
        #expect(rename(root.path + "/tmp/1.host", root.path + "/new/1.host") == 0)
        try writeFile(root.path + "/.Work/cur/2.host:2,")
        #expect(rename(root.path + "/.Work/cur/2.host:2,", root.path + "/.Work/cur/2.host:2,S") == 0)
        #expect(unlink(root.path + "/.Work/cur/2.host:2,S") == 0)

        let batches = try await collector.wait(for: 1)
        try await Task.sleep(for: .milliseconds(400))
        #expect(collector.all.count == 1, "one burst, one batch: \(collector.all)")
        let batch = try #require(batches.first)
        #expect(batch.folders == ["", ".Work"])
        #expect(!batch.foldersChanged)
        #expect(!batch.overflowed)
        // new: MOVED_TO; .Work/cur: CREATE, MOVED_FROM, MOVED_TO, DELETE (+ ATTRIB-free writes). tmp/ is not watched.
        #expect(batch.eventCount == 5, "events: \(batch.eventCount)")
        await watcher.stop()
    }

    @Test func newFoldersAreWatchedAsTheyAppear() async throws {
        let root = try TemporaryDirectory(prefix: "ferrymail-watch")
        defer { root.remove() }
        try makeFolder(root.path)
        let collector = BatchCollector()
        let watcher = try MaildirWatcher(root: root.path, debounce: quick) { collector.append($0) }

        try makeFolder(root.path + "/.Lists.swift")
        let first = try await collector.wait(for: 1)
        #expect(first[0].foldersChanged)

        try writeFile(root.path + "/.Lists.swift/new/3.host")
        let second = try await collector.wait(for: 2)
        #expect(second[1].folders == [".Lists.swift"])
        #expect(!second[1].foldersChanged)

        // Nested layout: folders inside folders.
        try makeFolder(root.path + "/Archive/2024")
        _ = try await collector.wait(for: 3)
        try writeFile(root.path + "/Archive/2024/cur/4.host:2,S")
        let fourth = try await collector.wait(for: 4)
        #expect(fourth[3].folders == ["Archive/2024"])
        await watcher.stop()
    }

    @Test func aSteadyStreamIsFlushedAtTheMaximumDelay() async throws {
        let root = try TemporaryDirectory(prefix: "ferrymail-watch")
        defer { root.remove() }
        try makeFolder(root.path)
        let collector = BatchCollector()
        let policy = DebouncePolicy(quiet: .milliseconds(200), maximumDelay: .milliseconds(600))
        let watcher = try MaildirWatcher(root: root.path, debounce: policy) { collector.append($0) }
        // A file every 50 ms for at least 1.5 s: never quiet for 200 ms, so
        // only the maximum delay can flush a batch while files keep coming.
        var lastWrite = ContinuousClock.now
        for index in 0..<30 {
            try writeFile(root.path + "/cur/\(index).host:2,")
            lastWrite = .now
            try await Task.sleep(for: .milliseconds(50))
        }
        let batches = try await collector.wait(for: 2)
        #expect(collector.times[0] < lastWrite, "a batch was flushed while files kept arriving")
        #expect(batches.allSatisfy { $0.folders == [""] })
        await watcher.stop()
        #expect(collector.all.reduce(0) { $0 + $1.eventCount } <= 30)
    }

    @Test func temporaryFilesAloneAreNoChange() async throws {
        let root = try TemporaryDirectory(prefix: "ferrymail-watch")
        defer { root.remove() }
        try makeFolder(root.path)
        let collector = BatchCollector()
        let watcher = try MaildirWatcher(root: root.path, debounce: quick) { collector.append($0) }
        try writeFile(root.path + "/tmp/5.host")
        try writeFile(root.path + "/dovecot-uidlist")
        try await Task.sleep(for: .milliseconds(500))
        #expect(collector.all.isEmpty)
        await watcher.stop()
    }

    @Test func aMissingRootIsAnActionableError() {
        #expect(throws: ServiceError.self) {
            _ = try MaildirWatcher(root: "/nonexistent/ferrymail/maildir") { _ in }
        }
    }
}

@Suite struct JournalLogHandlerTests {
    @Test func journalLinesCarryPriorityAndContext() {
        var handler = JournalLogHandler(label: "t", format: .journal, level: .trace)
        handler[metadataKey: "ferrymail.account"] = "work"
        let line = handler.render(level: .warning, message: "connection lost\nretrying",
                                  metadata: ["ferrymail.mailbox": "INBOX", "ferrymail.attempt": "3"])
        #expect(line == "<4>account=work mailbox=INBOX attempt=3: connection lost retrying")
        #expect(handler.render(level: .error, message: "x", metadata: nil) == "<3>account=work: x")
        #expect(JournalLogHandler(label: "t", format: .journal).render(level: .info, message: "x", metadata: nil) == "<6>account=-: x")
        #expect(JournalLogHandler.priority(.debug) == 7)
        #expect(JournalLogHandler.priority(.critical) == 2)
    }

    @Test func plainLinesHaveATimeStampAndQuoteValuesWithSpaces() {
        let handler = JournalLogHandler(label: "t", format: .plain)
        let line = handler.render(level: .info, message: "synced", metadata: ["ferrymail.mailbox": "Sent Items"])
        #expect(line.hasSuffix(" INFO account=- mailbox=\"Sent Items\": synced"))
        #expect(line.first?.isNumber == true)
    }

    @Test func formatFollowsTheEnvironment() {
        #expect(JournalLogHandler.format(for: ["JOURNAL_STREAM": "8:1234"]) == .journal)
        #expect(JournalLogHandler.format(for: ["NOTIFY_SOCKET": "/run/systemd/notify"]) == .journal)
        #expect(JournalLogHandler.format(for: ["TERM": "xterm"]) == .plain)
    }
}
