import Archive
import Foundation
import Maildir
@testable import MailStores
import SyncEngine
import SyncState
import TestSupport
import Testing

/// Issue 6's round trip against a real Dovecot: account → backup → restore into
/// an empty second account → the two accounts are identical, judged by the
/// independent checker (server Maildir trees read without Ferrymail) and by
/// Dovecot's own view of INTERNALDATEs.
@Suite("Backup and restore against Dovecot")
struct BackupRestoreTests {
    @Test("an account backed up and restored into an empty account is identical; a second restore uploads nothing")
    func roundTripIntoAnEmptyAccount() async throws {
        let source = try await Servers.shared.account(.full)
        let target = try await Servers.shared.account(.full)
        try await source.doveadm(["mailbox", "create", "-u", source.user.name, "Entwürfe", "Lists/swift"])
        for index in 0..<6 {
            try await source.save(Corpus.message(index: index, size: 3_000 + index * 500), to: "INBOX",
                                  flags: index.isMultiple(of: 2) ? ["\\Seen"] : ["\\Flagged", "$Forwarded"])
        }
        try await source.save(Corpus.message(index: 50, folder: "Sent"), to: "Sent", flags: ["\\Seen", "\\Answered"])
        try await source.save(Corpus.message(index: 60, folder: "Entwürfe"), to: "Entwürfe", flags: ["\\Draft", "$Label1"])
        try await source.save(Corpus.message(index: 70, size: 40_000, folder: "Lists/swift"), to: "Lists/swift")

        let directory = try TemporaryDirectory(prefix: "ferrymail-backup-e2e")
        let path = directory.path + "/alice.tar.gz"

        // Backup: far = the source account, near = the archive writer.
        let backupState = try StateStore.inMemory()
        let writer = try ArchiveWriterStore(output: path, account: "source", sourceState: backupState)
        let sourceIMAP = source.imap
        let backup = try await SyncEngine(account: "source", state: backupState,
                                          far: { try await IMAPStore.open(configuration: sourceIMAP, logger: quietLogger) },
                                          near: { writer }, options: SyncOptions(direction: .pull), logger: quietLogger).run()
        #expect(backup.allErrors.isEmpty, "\(backup.allErrors)")
        let summary = try await writer.finish()
        #expect(summary.messages == 9)
        #expect(ArchiveVerifier.verify(paths: [path]).isIntact)

        // Restore twice into the empty target, with the state kept between runs.
        let targetIMAP = target.imap
        let restoreState = try StateStore.open(at: directory.path + "/state.sqlite")
        defer { try? restoreState.close() }
        let chain = try ArchiveChain.open(paths: [path])
        var counts: [Int] = []
        for _ in 0..<2 {
            let report = try await SyncEngine(
                account: "restore", state: restoreState, far: { ArchiveReaderStore(chain: chain) },
                near: { try await IMAPStore.open(configuration: targetIMAP, logger: quietLogger) },
                options: SyncOptions(direction: .pull, expungePolicy: .keepLocal,
                                     mapping: MailboxMapping(nearNamesByRole: [.sent: "Sent", .drafts: "Drafts", .trash: "Trash"])),
                logger: quietLogger).run()
            #expect(report.allErrors.isEmpty, "\(report.allErrors)")
            counts.append(report.counts.fetched)
        }
        #expect(counts == [9, 0], "first restore uploads every message, the second none")

        // Independent check: bytes and flags/keywords per folder on both servers' disks.
        let before = try MaildirChecker.read(root: source.user.maildirRoot, encodesNames: true, servesCRLF: true)
        let after = try MaildirChecker.read(root: target.user.maildirRoot, encodesNames: true, servesCRLF: true)
        for folder in ["INBOX", "Sent", "Entwürfe", "Lists/swift"] {
            #expect(before[folder] != nil && before[folder] == after[folder], "folder \(folder) differs")
        }
        // INTERNALDATEs as Dovecot reports them.
        func dates(_ account: ServerAccount) async throws -> [String] {
            try await account.doveadm(["-f", "flow", "fetch", "-u", account.user.name, "mailbox date.received", "ALL"])
                .split(separator: "\n").map(String.init).sorted()
        }
        #expect(try await dates(source) == dates(target))
    }
}

@Suite("Backup from the synced Maildir mirror")
struct MirroredBackupTests {
    @Test("a backup right after a sync reads every body from the Maildir, byte-identical to the server's")
    func backupAfterSyncDownloadsNothing() async throws {
        let account = try await Account(.full)
        for index in 0..<5 {
            try await account.server.save(Corpus.message(index: index, size: 5_000), to: "INBOX", flags: ["\\Seen"])
        }
        try await account.server.save(Corpus.message(index: 9, folder: "Sent"), to: "Sent")
        let sync = try await account.sync()
        #expect(sync.allErrors.isEmpty, "\(sync.allErrors)")

        let path = account.local.path + "/mirror.tar.gz"
        let runState = try StateStore.inMemory()
        let writer = try ArchiveWriterStore(output: path, account: "e2e", sourceState: runState)
        let counter = MirrorCounter()
        let mirror = try MaildirStore(root: account.localRoot.path, logger: quietLogger)
        let server = account.server, state = account.state
        let report = try await SyncEngine(
            account: "e2e", state: runState,
            far: { MirroredIMAPStore(inner: try await server.openStore(), state: state, account: "e2e", maildir: mirror,
                                     counter: counter, logger: quietLogger) },
            near: { writer }, options: SyncOptions(direction: .pull), logger: quietLogger).run()
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        let summary = try await writer.finish()
        #expect(summary.messages == 6)
        #expect(await counter.fromMirror == 6)
        #expect(await counter.fromServer == 0)

        // The archive's hashes are the server's bytes (as IMAP serves them).
        let verification = ArchiveVerifier.verify(paths: [path])
        #expect(verification.isIntact)
        let serverDigests = Set(try MaildirChecker.read(root: server.user.maildirRoot, encodesNames: true, servesCRLF: true)
            .values.flatMap { $0.map(\.digest) })
        let manifest = try #require(verification.archives.first?.manifest)
        #expect(Set(manifest.messages.map(\.sha256)) == serverDigests)
    }
}
