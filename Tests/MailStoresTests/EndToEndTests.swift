import Configuration
import Foundation
@testable import MailStores
import Synchronization
import SyncEngine
import SyncState
import TestSupport
import Testing

/// One account: a Dovecot user (far), a Maildir in a temporary directory
/// (near) and a file sync state, synced by the real engine.
final class Account: Sendable {
    let server: ServerAccount
    let local: TemporaryDirectory
    let state: StateStore
    private let opened = Mutex<[IMAPStore]>([])

    var localRoot: URL { local.url.appendingPathComponent("Mail") }

    init(_ kind: ServerKind) async throws {
        server = try await Servers.shared.account(kind)
        local = try TemporaryDirectory(prefix: "ferrymail-e2e")
        state = try StateStore.open(at: local.path + "/state.sqlite")
    }

    func sync(_ options: SyncOptions = SyncOptions(mapping: MailboxMapping(nearNamesByRole: [.sent: "Sent", .drafts: "Drafts", .trash: "Trash"]))) async throws -> SyncReport {
        let server = server, root = localRoot.path
        // One Maildir store per run, shared by the workers, as `AccountStores` does.
        let maildir = SharedMaildirStore { try MaildirMailStore(root: root, account: "e2e", logger: quietLogger) }
        let engine = SyncEngine(
            account: "e2e", state: state,
            far: {
                let store = try await server.openStore()
                self.opened.withLock { $0.append(store) }
                return store
            },
            near: { try await maildir.store() },
            options: options, logger: quietLogger)
        return try await engine.run()
    }

    /// Bodies downloaded by every IMAP store this account opened so far.
    func fetchedBodies() async -> Int {
        var total = 0
        for store in opened.withLock({ $0 }) { total += await store.statistics.fetchedBodies }
        return total
    }

    /// Pages listed by every IMAP store this account opened so far.
    func listedPages() async -> Int {
        var total = 0
        for store in opened.withLock({ $0 }) { total += await store.statistics.listedPages }
        return total
    }

    /// Both trees as the independent checker reads them.
    func trees() throws -> (far: [String: [CheckedMessage]], near: [String: [CheckedMessage]]) {
        (try MaildirChecker.read(root: server.user.maildirRoot, encodesNames: true, servesCRLF: true),
         try MaildirChecker.read(root: localRoot, encodesNames: false))
    }

    /// Fails unless every folder holds the same bytes with the same flags on both sides.
    func expectConverged(_ context: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (far, near) = try trees()
        #expect(Set(far.keys) == Set(near.keys), "\(context): folders differ", sourceLocation: sourceLocation)
        for name in Set(far.keys).union(near.keys).sorted() where far[name] != near[name] {
            Issue.record("\(context): \(name) differs\n  far:  \(far[name] ?? [])\n  near: \(near[name] ?? [])", sourceLocation: sourceLocation)
        }
    }

    /// Seeds the server: several folders, a non-ASCII and a nested name,
    /// keywords and the special-use Sent mailbox.
    func seedServer() async throws {
        let server = server.server, user = self.server.user.name
        try await offloadBlocking {
            try server.seedMaildir(user: user, mailbox: "INBOX", messages: (0..<5).map { message($0) })
            try server.seedMaildir(user: user, mailbox: "Sent", messages: (0..<2).map { message($0, "Sent") }, flags: ["\\Seen"])
            try server.seedMaildir(user: user, mailbox: "Entwürfe", messages: (0..<2).map { message($0, "Entwürfe") }, flags: ["\\Draft"])
            try server.seedMaildir(user: user, mailbox: "Lists/swift", messages: (0..<3).map { message($0, "Lists/swift", size: 40_000) })
        }
        try await self.server.save(message(5), to: "INBOX", flags: ["\\Seen", "$Forwarded"])
        try await self.server.save(message(3, "Lists/swift"), to: "Lists/swift", flags: ["$Label1", "NonJunk"])
    }

    /// A message file written straight into the local tree, as a mail reader would.
    func writeLocal(_ bytes: [UInt8], folder: String, flags: String = "S") throws {
        let directory = folder == "INBOX" ? localRoot : localRoot.appendingPathComponent("." + folder.replacingOccurrences(of: "/", with: "."))
        for sub in ["cur", "new", "tmp"] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        let name = "1700000000.M\(Int.random(in: 1...999_999))P1.localhost,S=\(bytes.count):2,\(flags)"
        try Data(bytes).write(to: directory.appendingPathComponent("cur/" + name))
    }

    func localDirectory(_ folder: String) -> URL {
        folder == "INBOX" ? localRoot : localRoot.appendingPathComponent("." + folder.replacingOccurrences(of: "/", with: "."))
    }

    func localFiles(_ folder: String) throws -> [URL] {
        let cur = localDirectory(folder).appendingPathComponent("cur")
        return try FileManager.default.contentsOfDirectory(atPath: cur.path).sorted().map { cur.appendingPathComponent($0) }
    }
}

func expectQuiet(_ report: SyncReport, _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(report.allErrors.isEmpty, "\(context): \(report.allErrors.map(\.description))", sourceLocation: sourceLocation)
    for mailbox in report.mailboxes {
        let changed = mailbox.copied.far + mailbox.copied.near + mailbox.flagsChanged.far + mailbox.flagsChanged.near
            + mailbox.deleted.far + mailbox.deleted.near + mailbox.movedIn
        #expect(changed == 0, "\(context): \(mailbox.farName) changed: \(mailbox)", sourceLocation: sourceLocation)
    }
    #expect(report.moves.isEmpty, sourceLocation: sourceLocation)
    #expect(report.folderChanges.isEmpty, "\(context): \(report.folderChanges)", sourceLocation: sourceLocation)
}

@Suite("SyncEngine over IMAPStore (Dovecot) and MaildirMailStore")
struct EndToEndTests {
    @Test(arguments: [ServerKind.full, .condStoreOnly, .noModSeq, .noUIDPlus, .noMove])
    func changesOnBothSidesConverge(_ kind: ServerKind) async throws {
        let account = try await Account(kind)
        try await account.seedServer()
        try account.writeLocal(message(1, "Local/notes"), folder: "Local/notes", flags: "FS")

        let first = try await account.sync()
        #expect(first.allErrors.isEmpty, "\(first.allErrors.map(\.description))")
        #expect(first.counts.fetched == 14)
        #expect(first.counts.appended == 1)
        try account.expectConverged("initial sync")
        let (_, near) = try account.trees()
        #expect(near["Entwürfe"]?.count == 2)
        #expect(near["Lists/swift"]?.contains { $0.flags == ["$Label1", "NonJunk"] } == true)
        #expect(near["INBOX"]?.contains { $0.flags == ["$Forwarded", "\\Seen"] } == true)

        // Server side: a new message, a flag, an expunge.
        try await account.server.save(message(20), to: "INBOX")
        try await account.server.doveadm(["flags", "add", "-u", account.server.user.name, "\\Flagged", "mailbox", "INBOX", "uid", "1"])
        try await account.server.doveadm(["expunge", "-u", account.server.user.name, "mailbox", "Lists/swift", "uid", "1"])
        // Local side: a flag rename, a deletion, a move between folders.
        let inbox = try account.localFiles("INBOX")
        let parts = inbox[0].path.components(separatedBy: ":2,")
        let letters = String((parts[1] + "R").sorted())
        try FileManager.default.moveItem(atPath: inbox[0].path, toPath: parts[0] + ":2," + letters)
        try FileManager.default.removeItem(at: try account.localFiles("Entwürfe")[0])
        // Keyword letters are per folder (dovecot-keywords), so the file moved
        // by hand is one without any.
        let moving = try #require(inbox.dropFirst().first { !$0.lastPathComponent.components(separatedBy: ":2,")[1].contains(where: \.isLowercase) })
        try FileManager.default.moveItem(at: moving, to: account.localDirectory("Lists/swift").appendingPathComponent("cur/" + moving.lastPathComponent))

        let second = try await account.sync()
        #expect(second.allErrors.isEmpty, "\(second.allErrors.map(\.description))")
        #expect(second.moves.count == 1)
        try account.expectConverged("after changes on both sides")
        let (far, _) = try account.trees()
        #expect(far["INBOX"]?.count == 6)
        #expect(far["Lists/swift"]?.count == 4)
        #expect(far["Entwürfe"]?.count == 1)
        let all = far.values.flatMap { $0 }
        #expect(all.filter { $0.flags.contains("\\Answered") }.count == 1)
        #expect(all.filter { $0.flags.contains("\\Flagged") && !$0.flags.contains("\\Draft") }.count == 2)

        let third = try await account.sync()
        expectQuiet(third, "second run")
        try account.expectConverged("after a quiet run")
        if kind == .full || kind == .condStoreOnly {
            // The second run's own changes on both sides were proven its own.
            let rescanned = third.mailboxes.filter { !$0.skipped }.map(\.farName)
            #expect(rescanned.isEmpty, "rescanned: \(rescanned)")
        }
    }

    /// A first download listed and copied a page at a time (`UID SEARCH`,
    /// then `UID FETCH` of a page's UIDs) ends as one listed whole.
    @Test(arguments: [ServerKind.full, .noModSeq])
    func aFirstDownloadListedAPageAtATimeConverges(_ kind: ServerKind) async throws {
        let account = try await Account(kind)
        try await account.seedServer()
        // Pages of 2 messages: INBOX (6) and Lists/swift (4) are paged, their
        // first page once to load and again to copy; Sent and Entwürfe (2) are listed whole.
        var options = SyncOptions(mapping: MailboxMapping(nearNamesByRole: [.sent: "Sent", .drafts: "Drafts", .trash: "Trash"]))
        options.heldMessages = 8
        let first = try await account.sync(options)
        #expect(first.allErrors.isEmpty, "\(first.allErrors.map(\.description))")
        #expect(first.counts.fetched == 14)
        #expect(await account.fetchedBodies() == 14, "each message downloaded once")
        // INBOX and Lists/swift: a window to load each, then at least two to copy each.
        #expect(await account.listedPages() >= 6)
        try account.expectConverged("paged first download")
        let (_, near) = try account.trees()
        #expect(near["INBOX"]?.contains { $0.flags == ["$Forwarded", "\\Seen"] } == true)
        expectQuiet(try await account.sync(options), "after the paged download")
    }

    /// The second run is the first one's no-op: folders the first run only
    /// filled from the server are proven unchanged and skipped, not rescanned.
    @Test func runAfterDownloadingSkipsEveryFolder() async throws {
        let account = try await Account(.full)
        try await account.seedServer()
        let first = try await account.sync()
        #expect(first.allErrors.isEmpty, "\(first.allErrors.map(\.description))")
        #expect(first.counts.fetched == 14)

        let second = try await account.sync()
        expectQuiet(second, "run after the download")
        let rescanned = second.mailboxes.filter { !$0.skipped }.map(\.farName)
        #expect(rescanned.isEmpty, "rescanned: \(rescanned)")

        // Another program's change is still seen.
        try account.writeLocal(message(30), folder: "INBOX")
        let third = try await account.sync()
        #expect(third.counts.appended == 1)
        try account.expectConverged("after a local delivery")
    }

    /// The mailbox is recreated on the server with the same messages (new
    /// UIDVALIDITY): the engine re-pairs them by identity and downloads nothing.
    @Test func uidValidityChangeRepairsWithoutDownloading() async throws {
        let account = try await Account(.full)
        try await account.seedServer()
        let first = try await account.sync()
        #expect(first.allErrors.isEmpty, "\(first.allErrors.map(\.description))")
        let fetchedBefore = await account.fetchedBodies()
        #expect(fetchedBefore == 14)

        let user = account.server.user.name
        let before = try await account.server.doveadm(["mailbox", "status", "-u", user, "uidvalidity", "Lists/swift"])
        try await account.server.doveadm(["mailbox", "create", "-u", user, "Rebuilt"])
        try await account.server.doveadm(["move", "-u", user, "Rebuilt", "mailbox", "Lists/swift", "ALL"])
        try await account.server.doveadm(["mailbox", "delete", "-u", user, "Lists/swift"])
        try await account.server.doveadm(["mailbox", "rename", "-u", user, "Rebuilt", "Lists/swift"])
        let after = try await account.server.doveadm(["mailbox", "status", "-u", user, "uidvalidity", "Lists/swift"])
        #expect(before != after)

        let second = try await account.sync()
        #expect(second.allErrors.isEmpty, "\(second.allErrors.map(\.description))")
        let lists = try #require(second.mailbox("Lists/swift"))
        #expect(lists.copied == Sides(far: 0, near: 0))
        #expect(await account.fetchedBodies() == fetchedBefore)
        try account.expectConverged("after UIDVALIDITY change")
        expectQuiet(try await account.sync(), "run after re-pairing")
    }

    /// An emptied local folder must not empty the server.
    @Test func emptiedLocalFolderTripsTheMassDeleteGuard() async throws {
        let account = try await Account(.full)
        let server = account.server.server, user = account.server.user.name
        try await offloadBlocking {
            _ = try server.seedMaildir(user: user, mailbox: "Bulk", messages: (0..<25).map { message($0, "Bulk", size: 800) })
        }
        let first = try await account.sync()
        #expect(first.allErrors.isEmpty)
        for file in try account.localFiles("Bulk") { try FileManager.default.removeItem(at: file) }

        let second = try await account.sync()
        let bulk = try #require(second.mailbox("Bulk"))
        guard case .massDeletion(_, _, .far, 25, 25, _)? = bulk.error else {
            Issue.record("expected the mass-delete guard, got \(String(describing: bulk.error))")
            return
        }
        let (far, near) = try account.trees()
        #expect(far["Bulk"]?.count == 25)
        #expect(near["Bulk"]?.isEmpty == true)
    }

    /// Server-only changes in a folder the Maildir side proves unchanged are
    /// reconciled from the rows they touch, while the mass-deletion guard
    /// still counts the whole folder: 30 of 100 deleted passes, 60 of the
    /// remaining 71 stops.
    @Test(arguments: [ServerKind.full, .condStoreOnly])
    func serverChangesInALargeFolderTouchOnlyTheirRows(_ kind: ServerKind) async throws {
        let account = try await Account(kind)
        let server = account.server.server, user = account.server.user.name
        try await offloadBlocking {
            _ = try server.seedMaildir(user: user, mailbox: "Bulk", messages: (0..<100).map { message($0, "Bulk", size: 800) })
        }
        #expect(try await account.sync().allErrors.isEmpty)

        try await account.server.doveadm(["expunge", "-u", user, "mailbox", "Bulk", "uid", "1:30"])
        try await account.server.doveadm(["flags", "add", "-u", user, "\\Flagged", "mailbox", "Bulk", "uid", "31:35"])
        try await account.server.save(message(200, "Bulk"), to: "Bulk")
        let second = try await account.sync()
        #expect(second.allErrors.isEmpty, "\(second.allErrors.map(\.description))")
        let bulk = try #require(second.mailbox("Bulk"))
        #expect(bulk.deleted.near == 30)
        #expect(bulk.flagsChanged.near == 5)
        #expect(bulk.copied.near == 1)
        try account.expectConverged("after server changes")
        let third = try await account.sync()
        expectQuiet(third, "run after server changes")
        let rescanned = third.mailboxes.filter { !$0.skipped }.map(\.farName)
        #expect(rescanned.isEmpty, "rescanned: \(rescanned)")

        try await account.server.doveadm(["expunge", "-u", user, "mailbox", "Bulk", "uid", "31:90"])
        let guarded = try #require(try await account.sync().mailbox("Bulk"))
        guard case .massDeletion(_, _, .near, 60, 71, _)? = guarded.error else {
            Issue.record("expected the mass-delete guard, got \(String(describing: guarded.error))")
            return
        }
        let near = try account.trees().near
        #expect(near["Bulk"]?.count == 71)
    }

    /// AccountStores builds working factories and options from a configuration.
    @Test func accountStoresFromConfiguration() async throws {
        let server = try await Servers.shared.account(.full)
        let local = try TemporaryDirectory(prefix: "ferrymail-account")
        try await server.save(message(1), to: "INBOX")
        try await server.save(message(1, "Private"), to: "Private")
        let configuration = AccountConfiguration(
            name: "configured", host: server.server.host, port: server.server.plainPort, security: .plaintext,
            user: server.user.name, authentication: .password,
            secret: SecretSource(kind: .environment(variable: "UNUSED"), account: "configured", key: "password_env"),
            allowInsecureAuth: true, compress: false, maildir: local.path + "/Mail",
            folders: FolderFilter(include: ["*"], exclude: ["Private"]),
            policy: SyncPolicy(deletions: .keepLocal, massDeleteThreshold: 0.3, fullReconcileInterval: .seconds(60),
                               pollInterval: .seconds(60), backoffMax: .seconds(60)))
        let stores = AccountStores(account: configuration, secret: server.user.password, connectionsPerAccount: 3, logger: quietLogger)
        #expect(stores.options.expungePolicy == .keepLocal)
        #expect(stores.options.massDeletion.share == 0.3)
        #expect(stores.options.maxConcurrentMailboxes == 3)
        #expect(stores.options.mapping.nearNamesByRole[.sent] == "Sent")

        let state = try StateStore.inMemory()
        let report = try await SyncEngine(account: "configured", state: state, far: stores.far, near: stores.near,
                                          options: stores.options, logger: quietLogger).run()
        #expect(report.allErrors.isEmpty, "\(report.allErrors.map(\.description))")
        #expect(report.mailbox("INBOX")?.copied.near == 1)
        #expect(report.mailbox("Private") == nil)
        let near = try MaildirChecker.read(root: URL(fileURLWithPath: local.path + "/Mail"), encodesNames: false)
        #expect(near["Private"] == nil)
        #expect(near["INBOX"]?.count == 1)
    }
}
