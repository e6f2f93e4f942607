import Digest
import Foundation
import SyncEngine
import SyncState

/// Backup, verify and restore throughput through the real engine, for
/// `ferrymail-bench`. The far side generates messages on the fly and the
/// restore target only hashes what it receives, so the figures (and peak
/// RSS) are the archive path's own, not a test store's.
public enum ArchiveBenchmark {
    public struct Result: Sendable, CustomStringConvertible {
        public var messages: Int
        public var messageBytes: Int64
        public var tarBytes: Int64
        public var archiveBytes: Int64
        public var backupSeconds: Double
        public var verifySeconds: Double
        public var restoreSeconds: Double
        public var restoredMessages: Int
        /// VmHWM after each phase (process-wide peak so far), MB.
        public var peakRSSAfterBackup: Double
        public var peakRSSAfterRestore: Double

        public var compressionRatio: Double { archiveBytes > 0 ? Double(tarBytes) / Double(archiveBytes) : 0 }
        public var backupMegabytesPerSecond: Double { Double(messageBytes) / 1_000_000 / backupSeconds }
        public var verifyMegabytesPerSecond: Double { Double(messageBytes) / 1_000_000 / verifySeconds }
        public var restoreMegabytesPerSecond: Double { Double(messageBytes) / 1_000_000 / restoreSeconds }

        public var description: String {
            String(format: "archive: %d messages, %.0f MB → %.0f MB gzip (ratio %.2f); backup %.1f s = %.0f MB/s; verify %.1f s = %.0f MB/s; restore %.1f s = %.0f MB/s (%d messages); peak RSS %.0f MB after backup, %.0f MB after restore",
                   messages, Double(messageBytes) / 1_000_000, Double(archiveBytes) / 1_000_000, compressionRatio,
                   backupSeconds, backupMegabytesPerSecond, verifySeconds, verifyMegabytesPerSecond,
                   restoreSeconds, restoreMegabytesPerSecond, restoredMessages, peakRSSAfterBackup, peakRSSAfterRestore)
        }
    }

    /// Backs up `messages` generated messages of about `messageSize` bytes in
    /// `folders` folders through the engine into `directory`, verifies the
    /// archive, restores it through the engine, and removes it.
    public static func run(messages: Int, messageSize: Int, folders: Int = 10, directory: String,
                           options: ArchiveWriterOptions = ArchiveWriterOptions()) async throws -> Result {
        let account = "bench@example.test"
        let path = directory + "/bench-\(FileIO.randomHex(bytes: 4)).tar.gz"
        defer { unlink(path) }
        let far = GeneratedStore(messages: messages, size: messageSize, folders: max(1, folders))

        let state = try StateStore.inMemory()
        let writerStore = try ArchiveWriterStore(output: path, account: account, sourceState: state, options: options)
        var start = Date()
        let backup = try await SyncEngine(account: account, state: state, far: { far }, near: { writerStore },
                                          options: SyncOptions(direction: .pull, copyBatchSize: 200)).run()
        guard backup.succeeded else {
            await writerStore.abandon()
            throw backup.allErrors.first!
        }
        let summary = try await writerStore.finish()
        let backupSeconds = Date().timeIntervalSince(start)
        let peakBackup = peakRSSMegabytes()

        start = Date()
        let chain = try ArchiveChain.open(paths: [path])
        let verifySeconds = Date().timeIntervalSince(start)

        start = Date()
        let target = CountingStore()
        let restore = try await SyncEngine(account: account, state: try StateStore.inMemory(), far: { ArchiveReaderStore(chain: chain) },
                                           near: { target }, options: SyncOptions(direction: .pull, copyBatchSize: 200)).run()
        guard restore.succeeded else { throw restore.allErrors.first! }
        let restoreSeconds = Date().timeIntervalSince(start)

        return Result(messages: summary.messages, messageBytes: summary.messageBytes, tarBytes: summary.tarBytes,
                      archiveBytes: summary.archiveBytes, backupSeconds: backupSeconds, verifySeconds: verifySeconds,
                      restoreSeconds: restoreSeconds, restoredMessages: await target.count,
                      peakRSSAfterBackup: peakBackup, peakRSSAfterRestore: peakRSSMegabytes())
    }

    static func peakRSSMegabytes() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else { return 0 }
        return kb / 1024
    }
}

/// An IMAP-like, read-only far store whose messages are generated when
/// fetched: mail-like text (headers, CRLF lines of words), deterministic.
actor GeneratedStore: MailStore {
    nonisolated let capabilities = StoreCapabilities(keyKind: .uid, move: false, keysSurviveMove: false, keywords: true)
    private let perFolder: [Int]
    private let size: Int

    init(messages: Int, size: Int, folders: Int) {
        perFolder = (0..<folders).map { messages / folders + ($0 < messages % folders ? 1 : 0) }
        // Room for the headers, so every body is exactly `size` bytes.
        self.size = max(size, 512)
    }

    private func folderIndex(_ name: String) throws -> Int {
        guard name.hasPrefix("Folder"), let index = Int(name.dropFirst(6)), perFolder.indices.contains(index) else {
            throw ArchiveError.noSuchFolder(archive: "(generated)", folder: name)
        }
        return index
    }

    func listMailboxes() async throws -> [MailboxInfo] {
        perFolder.indices.map { MailboxInfo(name: "Folder\($0)", role: $0 == 1 ? .sent : nil) }
    }

    func createMailbox(_ name: String, role: SpecialUse?) async throws {}
    func deleteMailbox(_ name: String) async throws {}

    func select(_ mailbox: String) async throws -> MailboxStatus {
        let count = perFolder[try folderIndex(mailbox)]
        return MailboxStatus(uidValidity: 7, uidNext: UInt32(count + 1), messageCount: count)
    }

    func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        let folder = try folderIndex(mailbox)
        // Bodies are exactly `size` bytes, so listing needs no generation.
        var listing: [MessageInfo] = []
        listing.reserveCapacity(perFolder[folder])
        let size = Int64(self.size)
        for index in 0..<perFolder[folder] {
            let flags: MessageFlags = index % 3 == 0 ? ["\\Seen"] : .none
            listing.append(MessageInfo(key: .uid(UInt32(index + 1)), flags: flags, size: size,
                                       internalDate: 1_700_000_000 + Int64(index), messageId: "<\(folder).\(index)@bench.test>"))
        }
        return .full(listing)
    }

    func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        let folder = try folderIndex(mailbox)
        var result: [MessageKey: String] = [:]
        for case .uid(let uid) in keys { result[.uid(uid)] = "<\(folder).\(uid - 1)@bench.test>" }
        return result
    }

    func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        let folder = try folderIndex(mailbox)
        for case .uid(let uid) in keys {
            let body = Self.body(folder: folder, index: Int(uid) - 1, size: size)
            try await sink.begin(.uid(uid), size: Int64(body.count))
            var offset = 0
            while offset < body.count {
                let end = min(offset + 65_536, body.count)
                try await sink.write(Array(body[offset..<end]))
                offset = end
            }
            try await sink.end()
        }
    }

    func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        throw ArchiveError.unsupported(archive: "(generated)", operation: "append", reason: "read-only benchmark source")
    }

    func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {}
    func expunge(_ keys: [MessageKey], in mailbox: String) async throws {}
    func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] { [:] }
    func flush(_ mailbox: String) async throws {}
    func close() async {}

    private static let words = ["the", "archive", "message", "folder", "server", "backup", "restore", "meeting", "tomorrow",
                                "report", "attached", "please", "review", "thanks", "regards", "project", "update", "schedule",
                                "über", "naïve", "quarterly", "budget", "deadline", "invoice", "customer", "release"]

    private static let wordBytes = words.map { Array($0.utf8) }

    /// Exactly `size` bytes (at least the headers), CRLF-terminated.
    static func body(folder: Int, index: Int, size: Int) -> [UInt8] {
        var text = "From: Sender \(index % 17) <sender\(index % 17)@example.test>\r\nTo: bench@example.test\r\n"
        text += "Subject: Benchmark message \(index) in folder \(folder)\r\nMessage-ID: <\(folder).\(index)@bench.test>\r\n"
        text += "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        var bytes = Array(text.utf8)
        bytes.reserveCapacity(size + 80)
        var seed = UInt64(folder &* 1_000_003 &+ index) &* 0x9E37_79B9_7F4A_7C15 | 1
        var lineLength = 0
        while bytes.count < size {
            seed ^= seed << 13
            seed ^= seed >> 7
            seed ^= seed << 17
            let word = wordBytes[Int(seed % UInt64(wordBytes.count))]
            bytes.append(contentsOf: word)
            lineLength += word.count + 1
            if lineLength > 70 {
                bytes.append(13)
                bytes.append(10)
                lineLength = 0
            } else {
                bytes.append(32)
            }
        }
        if bytes.count >= size, size >= text.utf8.count + 2 {
            bytes.removeLast(bytes.count - size + 2)
        }
        bytes.append(13)
        bytes.append(10)
        return bytes
    }
}

/// A restore target that keeps nothing but counts and hashes: measures the
/// archive side of a restore.
actor CountingStore: MailStore {
    nonisolated let capabilities = StoreCapabilities(keyKind: .name, move: false, keysSurviveMove: true, keywords: true)
    private var folders: [String: [MessageKey: MessageInfo]] = [:]
    private var counter = 0
    var count: Int { folders.values.reduce(0) { $0 + $1.count } }

    func listMailboxes() async throws -> [MailboxInfo] { folders.keys.sorted().map { MailboxInfo(name: $0) } }
    func createMailbox(_ name: String, role: SpecialUse?) async throws { if folders[name] == nil { folders[name] = [:] } }
    func deleteMailbox(_ name: String) async throws { folders[name] = nil }
    func select(_ mailbox: String) async throws -> MailboxStatus { MailboxStatus(messageCount: folders[mailbox]?.count ?? 0) }

    func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        .full((folders[mailbox] ?? [:]).values.sorted { $0.key < $1.key })
    }

    func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] { [:] }
    func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {}

    func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        CountingAppend(store: self, mailbox: mailbox, envelope: envelope)
    }

    func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {}
    func expunge(_ keys: [MessageKey], in mailbox: String) async throws {}
    func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] { [:] }
    func flush(_ mailbox: String) async throws {}
    func close() async {}

    func record(_ mailbox: String, _ envelope: AppendEnvelope, received: Int64) throws -> MessageKey {
        guard received == envelope.size else {
            throw ArchiveError.sizeMismatch(archive: "(restore target)", folder: mailbox, announced: envelope.size, received: received)
        }
        counter += 1
        let key = MessageKey.name("m\(counter)")
        folders[mailbox, default: [:]][key] = MessageInfo(key: key, flags: envelope.flags, size: envelope.size,
                                                          internalDate: envelope.internalDate, messageId: envelope.messageId,
                                                          transferId: envelope.transferId)
        return key
    }
}

actor CountingAppend: AppendWriter {
    private let store: CountingStore
    private let mailbox: String
    private let envelope: AppendEnvelope
    private var received: Int64 = 0
    private var hasher: SHA256Hasher? = SHA256Hasher()

    init(store: CountingStore, mailbox: String, envelope: AppendEnvelope) {
        self.store = store
        self.mailbox = mailbox
        self.envelope = envelope
    }

    func write(_ chunk: [UInt8]) async throws {
        received += Int64(chunk.count)
        hasher?.update(chunk)
    }

    func finish() async throws -> MessageKey? {
        if let hasher = hasher.take() { _ = hasher.finalize() }
        return try await store.record(mailbox, envelope, received: received)
    }

    func cancel() async {}
}
