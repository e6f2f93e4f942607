import Archive
import Foundation
import IMAPClient
import Logging
@testable import MailStores
import Synchronization
import SyncEngine
import SyncState
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Helpers for the restore / backup tests (RestoreIntegrationTests,
// InterruptedTransferTests, RestoreProcessTests). Everything that judges an
// outcome reads files with plain FileManager / stat calls, never Ferrymail code.

/// Engine runs that fail on purpose log nothing (`quietLogger` shows errors).
let silentLogger = Logger(label: "ferrymail.tests.silent") { _ in SwiftLogNoOpLogHandler() }

// MARK: - Servers with many users

/// One Dovecot per flavour for the restore tests, with enough users that
/// every crash point gets a fresh, empty target account.
actor RestoreServers {
    static let shared = RestoreServers()
    static let usersPerServer = 400

    enum Flavour: Sendable, Hashable {
        /// The fixture's default special-use names (Sent, Drafts, Trash, Junk, Archive).
        case standard
        /// Another server's naming: `\Sent` is "Sent Items", `\Trash` "Deleted Items",
        /// `\Drafts` "Brouillons", `\Junk` "Spam"; no folder is called Sent or Trash.
        case foreignNames
        /// Only a `\Sent` folder "Sent": fewer folders, so fewer steps for the crash tests.
        case sentOnly

        var specialUse: [(name: String, flag: String)]? {
            switch self {
            case .standard: nil
            case .foreignNames: [("Sent Items", "\\Sent"), ("Deleted Items", "\\Trash"), ("Brouillons", "\\Drafts"), ("Spam", "\\Junk")]
            case .sentOnly: [("Sent", "\\Sent")]
            }
        }
    }

    private var servers: [Flavour: Task<DovecotServer, any Error>] = [:]
    private var nextUser: [Flavour: Int] = [:]

    func account(_ flavour: Flavour = .standard) async throws -> ServerAccount {
        let task = servers[flavour] ?? Task {
            var options = DovecotServer.Options(
                users: (1...Self.usersPerServer).map { DovecotServer.Account(name: "r\($0)", password: "pw-\($0)-Restore") },
                compress: false, notify: false)
            if let folders = flavour.specialUse {
                options.specialUse = false
                var text = "namespace inbox {\n"
                for (name, flag) in folders {
                    text += "  mailbox \"\(name)\" {\n    special_use = \(flag)\n    auto = subscribe\n  }\n"
                }
                options.extraConfiguration = text + "}\n"
            }
            return try await DovecotServer.start(options)
        }
        servers[flavour] = task
        let server = try await task.value
        let index = nextUser[flavour, default: 0]
        nextUser[flavour] = index + 1
        precondition(index < Self.usersPerServer, "more restore-test accounts than users; raise usersPerServer")
        return ServerAccount(server: server, user: server.users[index], kind: .full)
    }
}

extension ServerAccount {
    /// The same store `RestoreCommand` builds for an account (`AccountStores.far`
    /// with the default `include = ["*"]` filter).
    /// `commandTimeout` bounds how long a stalled connection can hold a run.
    func restoreStore(commandTimeout: Duration = .seconds(20)) async throws -> any MailStore {
        var configuration = imap
        configuration.timeouts.command = commandTimeout
        let store = try await IMAPStore.open(configuration: configuration, account: "test-\(user.name)", logger: silentLogger)
        return FilteredStore(store) { _ in true }
    }

    /// The server's Maildir tree as the independent checker reads it.
    func checkedTree() throws -> [String: [CheckedMessage]] {
        try MaildirChecker.read(root: user.maildirRoot, encodesNames: true, servesCRLF: true)
    }

    /// Digest → file mtimes (Dovecot's maildir keeps INTERNALDATE as the mtime).
    func checkedDates() throws -> [String: [String: [Int64]]] {
        try MaildirDates.read(root: user.maildirRoot, encodesNames: true, servesCRLF: true)
    }
}

// MARK: - Writing Maildir trees without Ferrymail

/// One message to place in a hand-written Maildir++ tree.
struct SeedMessage: Sendable {
    var folder: String
    var bytes: [UInt8]
    /// Maildir system flag letters (`D F R S`), any order.
    var letters: String = ""
    var keywords: [String] = []
    /// The file's mtime, i.e. the INTERNALDATE it stands for.
    var date: Int64
    /// Delivered to `new/` without an info part (unseen, no flags).
    var inNew = false
}

/// Writes a Maildir++ tree by hand — `cur/` files named
/// `<date>.M<n>P<pid>.seed,S=<size>:2,<letters><keyword letters>`, a
/// `dovecot-keywords` table per folder, `maildirfolder` markers, mtimes set —
/// exactly what Dovecot (or mutt) would have left behind.
enum MaildirWriter {
    /// - Parameters:
    ///   - encodesNames: folder names in modified UTF-7 (Dovecot's default on
    ///     disk) instead of UTF-8 (Ferrymail's default).
    static func write(_ messages: [SeedMessage], root: String, encodesNames: Bool) throws {
        let fm = FileManager.default
        var tables: [String: [String]] = [:]
        for (index, message) in messages.enumerated() {
            let directory = self.directory(root: root, folder: message.folder, encodesNames: encodesNames)
            for sub in ["", "/cur", "/new", "/tmp"] {
                try fm.createDirectory(atPath: directory + sub, withIntermediateDirectories: true)
            }
            if message.folder != "INBOX" { _ = fm.createFile(atPath: directory + "/maildirfolder", contents: nil) }
            var letters = String(message.letters.sorted())
            if !message.keywords.isEmpty {
                var table = tables[message.folder] ?? []
                var keywordLetters: [Character] = []
                for keyword in message.keywords {
                    if !table.contains(keyword) { table.append(keyword) }
                    keywordLetters.append(Character(UnicodeScalar(UInt8(ascii: "a") + UInt8(table.firstIndex(of: keyword)!))))
                }
                tables[message.folder] = table
                letters += String(keywordLetters.sorted())
            }
            let base = "\(message.date).M\(index)P\(getpid()).seed,S=\(message.bytes.count)"
            let path = message.inNew ? "\(directory)/new/\(base)" : "\(directory)/cur/\(base):2,\(letters)"
            guard fm.createFile(atPath: path, contents: Data(message.bytes)) else { throw TestFailure("cannot write \(path)") }
            try fm.setAttributes([.modificationDate: Date(timeIntervalSince1970: TimeInterval(message.date))], ofItemAtPath: path)
        }
        for (folder, table) in tables {
            let text = table.enumerated().map { "\($0.offset) \($0.element)\n" }.joined()
            let path = directory(root: root, folder: folder, encodesNames: encodesNames) + "/dovecot-keywords"
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        }
    }

    static func directory(root: String, folder: String, encodesNames: Bool) -> String {
        if folder == "INBOX" { return root }
        let parts = folder.split(separator: "/").map(String.init)
        return root + "/." + (encodesNames ? parts.map(FixtureModifiedUTF7.encode) : parts).joined(separator: ".")
    }

    /// Writes into a test user's server Maildir before Dovecot has looked at
    /// it, and hands the files to the mail account.
    static func seed(_ messages: [SeedMessage], into account: ServerAccount) throws {
        try write(messages, root: account.user.maildirRoot.path, encodesNames: true)
        try account.server.fixOwnership()
    }
}

/// A small mixed set: per folder, messages cycle through seen; flagged +
/// seen + `$Forwarded`; answered + seen + `$Label1` + `Projekt` (in INBOX:
/// unseen in `new/` instead); draft. Distinct sizes and dates (one hour
/// apart from 2023-11-14), each with its own Message-ID.
func seedMessages(perFolder: [String: Int] = ["INBOX": 3, "Sent": 2, "Lists/swift": 2], size: Int = 1_500) -> [SeedMessage] {
    var result: [SeedMessage] = []
    var serial = 0
    for folder in perFolder.keys.sorted() {
        for i in 0..<perFolder[folder]! {
            serial += 1
            var message = SeedMessage(folder: folder, bytes: Corpus.message(index: serial, size: size + serial * 97, folder: folder),
                                      date: 1_700_000_000 + Int64(serial) * 3_600)
            switch i % 4 {
            case 0:
                message.letters = "S"
            case 1:
                message.letters = "FS"
                message.keywords = ["$Forwarded"]
            case 2 where folder == "INBOX":
                message.inNew = true
            case 2:
                message.letters = "RS"
                message.keywords = ["$Label1", "Projekt"]
            default:
                message.letters = "D"
            }
            result.append(message)
        }
    }
    return result
}

// MARK: - The independent checker's dates

/// Per folder, message digest → the files' mtimes (sorted), read with `stat`.
/// Dovecot's maildir backend keeps INTERNALDATE as the file's mtime, so two
/// trees with equal dates here show equal INTERNALDATEs over IMAP.
enum MaildirDates {
    static func read(root: URL, encodesNames: Bool, servesCRLF: Bool = false) throws -> [String: [String: [Int64]]] {
        let fm = FileManager.default
        var result: [String: [String: [Int64]]] = [:]
        for (name, directory) in try MaildirChecker.folders(root: root, encodesNames: encodesNames) {
            var dates: [String: [Int64]] = [:]
            for sub in ["cur", "new"] {
                let path = directory.appendingPathComponent(sub)
                for file in try fm.contentsOfDirectory(atPath: path.path) where !file.hasPrefix(".") {
                    let filePath = path.appendingPathComponent(file).path
                    var bytes = try Data(contentsOf: URL(fileURLWithPath: filePath))
                    if servesCRLF { bytes = MaildirChecker.crlf(bytes) }
                    var st = stat()
                    guard stat(filePath, &st) == 0 else { continue }
                    dates[sha256Hex(bytes), default: []].append(Int64(st.st_mtim.tv_sec))
                }
            }
            result[name] = dates.mapValues { $0.sorted() }
        }
        return result
    }
}

/// Number of message files in every folder of a Maildir++ tree (cur/ + new/).
func maildirMessageCount(_ root: URL) -> Int {
    let fm = FileManager.default
    var directories = [root]
    for entry in (try? fm.contentsOfDirectory(atPath: root.path)) ?? [] where entry.hasPrefix(".") && !entry.hasPrefix("..") {
        directories.append(root.appendingPathComponent(entry))
    }
    var count = 0
    for directory in directories {
        for sub in ["cur", "new"] {
            count += ((try? fm.contentsOfDirectory(atPath: directory.appendingPathComponent(sub).path)) ?? [])
                .filter { !$0.hasPrefix(".") }.count
        }
    }
    return count
}

/// `expected` (folder name on the source → target name) must be exactly what
/// `actual` holds for those folders, and every other folder of `actual` must
/// be empty.
func expectSameMail(_ actual: [String: [CheckedMessage]], _ expected: [String: [CheckedMessage]],
                    renamed: [String: String] = [:], _ context: @autoclosure () -> String = "",
                    sourceLocation: SourceLocation = #_sourceLocation) {
    var covered: Set<String> = []
    for (folder, messages) in expected where !messages.isEmpty {
        let name = renamed[folder] ?? folder
        covered.insert(name)
        let got = actual[name] ?? []
        #expect(got == messages, "\(context()) folder \(name): \(got.count) messages \(got), expected \(messages.count) \(messages)",
                sourceLocation: sourceLocation)
    }
    for (folder, messages) in actual where !covered.contains(folder) {
        #expect(messages.isEmpty, "\(context()) folder \(folder) should be empty, holds \(messages)", sourceLocation: sourceLocation)
    }
}

// MARK: - Running the engine

/// How a run ended: its report, or the error `run()` threw (a run that
/// could do nothing at all, e.g. crashed while creating folders).
struct RunOutcome: Sendable {
    var report: SyncReport?
    var thrown: SyncError?

    var errors: [String] {
        if let thrown { return [thrown.description] }
        return report?.allErrors.map(\.description) ?? ["(no report)"]
    }
    var succeeded: Bool { thrown == nil && report?.allErrors.isEmpty == true }
    var copiedToTarget: Int { report?.mailboxes.reduce(0) { $0 + $1.copied.near + $1.copied.far } ?? 0 }
    var paired: Int { report?.mailboxes.reduce(0) { $0 + $1.paired } ?? 0 }
    var flagChanges: Int { report?.mailboxes.reduce(0) { $0 + $1.flagsChanged.near + $1.flagsChanged.far } ?? 0 }
}

/// Runs the engine, giving up after `seconds` (a hang is a finding, not a
/// reason to block the suite): nil then.
func runEngine(_ engine: SyncEngine, timeout seconds: Double = 30) async -> RunOutcome? {
    let work = Task { () -> RunOutcome in
        do throws(SyncError) {
            return RunOutcome(report: try await engine.run(), thrown: nil)
        } catch {
            return RunOutcome(report: nil, thrown: error)
        }
    }
    // A task group would wait for a hung run, so the deadline is raced by hand.
    let result: RunOutcome? = await withCheckedContinuation { continuation in
        let once = ResumeOnce(continuation)
        Task { once.resume(await work.value) }
        Task {
            try? await Task.sleep(for: .seconds(seconds))
            once.resume(nil)
        }
    }
    if result == nil { work.cancel() }
    return result
}

/// Resumes a continuation with whichever value comes first.
final class ResumeOnce<Value: Sendable>: Sendable {
    private let continuation: CheckedContinuation<Value, Never>
    private let done = Mutex(false)

    init(_ continuation: CheckedContinuation<Value, Never>) { self.continuation = continuation }

    func resume(_ value: Value) {
        let first = done.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        if first { continuation.resume(returning: value) }
    }
}

// MARK: - Faults on the source side

/// Counts the read steps of a store and fails the `failAt`-th one; unless
/// `transient`, every later call fails too, as when a connection or disk
/// goes away for good. A step is a store call, or one message of a `fetch`
/// (only the latter with `onlyMessages`); with `midMessage` a failing
/// message delivers half of its first chunk before it fails, so the
/// destination sees an append cut off.
actor ReadFaults {
    let failAt: Int?
    /// Only the `failAt`-th step fails; the source works again afterwards
    /// (a dropped connection that the next command reopens).
    let transient: Bool
    /// Whether the message of a failing fetch step is cut off half-way
    /// (else the step fails before the message begins).
    let midMessage: Bool
    /// Count only messages delivered by `fetch`, not the other calls.
    let onlyMessages: Bool
    private(set) var steps = 0
    private(set) var failed = false
    private var dead: Bool { failed && !transient }

    init(failAt: Int?, transient: Bool = false, midMessage: Bool = false, onlyMessages: Bool = false) {
        self.failAt = failAt
        self.transient = transient
        self.midMessage = midMessage
        self.onlyMessages = onlyMessages
    }

    /// A store call other than a message: throws when it is the failing step
    /// (or after it).
    func step() throws {
        if dead { throw SourceFailure(step: steps) }
        if onlyMessages { return }
        if try count() { throw SourceFailure(step: steps) }
    }

    /// One message of a fetch: reports whether it is the failing step, so
    /// the caller can fail half-way through it.
    func messageStepFails() throws -> Bool {
        if dead { throw SourceFailure(step: steps) }
        return try count()
    }

    private func count() throws -> Bool {
        steps += 1
        if let failAt, steps == failAt || (!transient && steps > failAt) {
            failed = true
            return true
        }
        return false
    }

    func checkAlive() throws {
        if dead { throw SourceFailure(step: steps) }
    }
}

struct SourceFailure: Error, CustomStringConvertible {
    var step: Int
    var description: String { "simulated source failure at read step \(step)" }
}

/// The source side of a transfer, failing at a chosen read step.
struct ReadFaultStore: MailStoreDecorator {
    let inner: any MailStore
    let faults: ReadFaults

    func listMailboxes() async throws -> [MailboxInfo] {
        try await faults.step()
        return try await inner.listMailboxes()
    }

    func select(_ mailbox: String) async throws -> MailboxStatus {
        try await faults.step()
        return try await inner.select(mailbox)
    }

    func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        try await faults.step()
        return try await inner.messages(in: mailbox, changedSince: watermark)
    }

    func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        try await faults.step()
        return try await inner.messageIds(for: keys, in: mailbox)
    }

    func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        try await faults.checkAlive()
        try await inner.fetch(keys, in: mailbox, into: FaultySink(inner: sink, faults: faults))
    }

    // A source is never written by a one-way transfer; these only check it is alive.
    func createMailbox(_ name: String, role: SpecialUse?) async throws {
        try await faults.checkAlive()
        try await inner.createMailbox(name, role: role)
    }

    func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {
        try await faults.checkAlive()
        try await inner.setFlags(changes, in: mailbox)
    }

    func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        try await faults.checkAlive()
        return try await inner.beginAppend(to: mailbox, envelope)
    }
}

/// Counts one step per message and, with `midMessage`, cuts the failing
/// message off half-way. A message that began before the failure is
/// delivered whole (on IMAP each folder's FETCH has its own connection);
/// the failure shows at the next message or call.
actor FaultySink: MessageSink {
    let inner: any MessageSink
    let faults: ReadFaults
    private var cutting = false

    init(inner: any MessageSink, faults: ReadFaults) {
        self.inner = inner
        self.faults = faults
    }

    func begin(_ key: MessageKey, size: Int64) async throws {
        if try await faults.messageStepFails() {
            guard faults.midMessage else { throw SourceFailure(step: await faults.steps) }
            cutting = true
        }
        try await inner.begin(key, size: size)
    }

    func write(_ chunk: [UInt8]) async throws {
        if cutting {
            try await inner.write(Array(chunk.prefix(max(1, chunk.count / 2))))
            throw SourceFailure(step: await faults.steps)
        }
        try await inner.write(chunk)
    }

    func end() async throws {
        if cutting { throw SourceFailure(step: await faults.steps) }
        try await inner.end()
    }
}

// MARK: - Appends left open

/// Counts the appends a store began and never finished or cancelled. An
/// append left open on an IMAP connection keeps it inside its APPEND
/// literal: the next command on it, or closing it, waits out the command
/// timeout. Wraps the real store, beneath any fault injector.
actor AppendTracker {
    private var open: Set<Int> = []
    private var next = 0
    private(set) var mailboxes: [Int: String] = [:]

    func began(_ mailbox: String) -> Int {
        next += 1
        open.insert(next)
        mailboxes[next] = mailbox
        return next
    }

    func ended(_ id: Int) {
        open.remove(id)
        mailboxes[id] = nil
    }

    /// Mailboxes of the appends still open.
    var stillOpen: [String] { open.sorted().compactMap { mailboxes[$0] } }
}

struct AppendTrackingStore: MailStoreDecorator {
    let inner: any MailStore
    let tracker: AppendTracker

    func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        let writer = try await inner.beginAppend(to: mailbox, envelope)
        return TrackedAppendWriter(inner: writer, tracker: tracker, id: await tracker.began(mailbox))
    }
}

struct TrackedAppendWriter: AppendWriter {
    let inner: any AppendWriter
    let tracker: AppendTracker
    let id: Int

    func write(_ chunk: [UInt8]) async throws { try await inner.write(chunk) }

    /// Forwarded explicitly: a decorator that left it to a default would
    /// never end the body.
    func endBody() async throws { try await inner.endBody() }

    /// Over once it returns or throws: a store's finish awaits the answer.
    func finish() async throws -> MessageKey? {
        do {
            let key = try await inner.finish()
            await tracker.ended(id)
            return key
        } catch {
            await tracker.ended(id)
            throw error
        }
    }

    func cancel() async {
        await inner.cancel()
        await tracker.ended(id)
    }
}

// MARK: - How RestoreCommand maps roles

/// The mapping `ferrymail restore` uses for `target` (`MailboxMapping.onto`).
func targetRoleMapping(_ target: ServerAccount, renames: [String: String] = [:]) async throws -> MailboxMapping {
    let store = try await target.restoreStore()
    let mailboxes = try await store.listMailboxes()
    await store.close()
    return MailboxMapping.onto(target: mailboxes, renames: renames)
}

/// What `expectSameMail` compares from an archive's manifest: per folder,
/// each message's SHA-256 and flags (keywords included), sorted.
func manifestTree(_ manifest: ArchiveManifest) -> [String: [CheckedMessage]] {
    var result: [String: [CheckedMessage]] = [:]
    for folder in manifest.folders { result[folder.name] = [] }
    for message in manifest.messages {
        let flags = (message.flags + message.keywords).sorted()
        result[message.folder, default: []].append(CheckedMessage(digest: message.sha256, flags: flags))
    }
    return result.mapValues { $0.sorted() }
}
