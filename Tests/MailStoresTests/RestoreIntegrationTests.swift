import Foundation
@testable import MailStores
import SyncEngine
import SyncState
import TestSupport
import Testing

/// Issue 6's restores from a Maildir and from another account, built the way
/// `RestoreCommand` builds them, against real Dovecot servers. The outcome is
/// judged by reading the servers' Maildir trees without Ferrymail: bytes,
/// flags and keywords per folder, and file mtimes (Dovecot's INTERNALDATE).
@Suite("Restore from a Maildir or another account against Dovecot")
struct RestoreIntegrationTests {
    // MARK: - restore --maildir

    /// `RestoreCommand` with `--maildir`: the Maildir is the near side of a push.
    static func maildirRestore(from root: String, into target: ServerAccount, state: StateStore) async throws -> RunOutcome {
        let engine = SyncEngine(
            account: "restore \(target.user.name) ← maildir:\(root)", state: state,
            far: { try await target.restoreStore() },
            near: { try MaildirMailStore(root: root, layout: .maildirPlusPlus, account: target.user.name, logger: silentLogger) },
            options: SyncOptions(direction: .push, expungePolicy: .keepLocal, maxConcurrentMailboxes: 4,
                                 mapping: MailboxMapping(nearDelimiter: "/")),
            logger: silentLogger)
        return try #require(await runEngine(engine), "the restore did not finish within its deadline")
    }

    @Test("a Maildir restored into an empty account arrives byte-identical with flags, keywords and dates; reruns upload nothing, even with the state lost")
    func maildirIntoEmptyAccount() async throws {
        let target = try await RestoreServers.shared.account()
        let directory = try TemporaryDirectory(prefix: "ferrymail-restore-maildir")
        let root = directory.path + "/Mail"
        let messages = seedMessages(perFolder: ["INBOX": 4, "Lists/swift": 3, "Entwürfe": 4])
        try MaildirWriter.write(messages, root: root, encodesNames: false)
        let local = try MaildirChecker.read(root: URL(fileURLWithPath: root), encodesNames: false)
        let localDates = try MaildirDates.read(root: URL(fileURLWithPath: root), encodesNames: false)
        // The tree is what the test means it to be: nested, non-ASCII, keywords, an unseen message.
        #expect(local.keys.sorted() == ["Entwürfe", "INBOX", "Lists/swift"])
        #expect(local.values.reduce(0) { $0 + $1.count } == 11)
        #expect(local["INBOX"]!.contains { $0.flags == ["$Forwarded", "\\Flagged", "\\Seen"] })
        #expect(local["Entwürfe"]!.contains { $0.flags == ["$Label1", "Projekt", "\\Answered", "\\Seen"] })
        #expect(local["INBOX"]!.contains { $0.flags.isEmpty })

        let state = try StateStore.open(at: directory.path + "/state.sqlite")
        defer { try? state.close() }
        let first = try await Self.maildirRestore(from: root, into: target, state: state)
        #expect(first.succeeded, "\(first.errors)")
        #expect(first.copiedToTarget == 11)
        let restored = try target.checkedTree()
        expectSameMail(restored, local, "after the restore:")
        let dates = try target.checkedDates()
        for (folder, expected) in localDates {
            #expect(dates[folder] == expected, "INTERNALDATEs (file mtimes) in \(folder)")
        }

        let second = try await Self.maildirRestore(from: root, into: target, state: state)
        #expect(second.succeeded, "\(second.errors)")
        #expect(second.copiedToTarget == 0, "a second restore uploads nothing")
        #expect(second.paired == 0 && second.flagChanges == 0)

        // The state database is lost: every message is recognised on the
        // target by Message-ID + size + date; nothing is uploaded or doubled.
        let lost = try StateStore.open(at: directory.path + "/fresh-state.sqlite")
        defer { try? lost.close() }
        let fresh = try await Self.maildirRestore(from: root, into: target, state: lost)
        #expect(fresh.succeeded, "\(fresh.errors)")
        #expect(fresh.copiedToTarget == 0, "a restore with a fresh state uploads nothing")
        #expect(fresh.paired == 11, "every message is recognised on the target")
        #expect(fresh.flagChanges == 0)
        expectSameMail(try target.checkedTree(), local, "after the rerun with a fresh state:")
        #expect(try target.checkedDates() == dates)

        // A push never touches its source.
        #expect(try MaildirChecker.read(root: URL(fileURLWithPath: root), encodesNames: false) == local)
        #expect(try MaildirDates.read(root: URL(fileURLWithPath: root), encodesNames: false) == localDates)
    }

    // MARK: - restore --from-account

    /// `RestoreCommand` with `--from-account`: source far, target near, a pull
    /// with the target's role mapping.
    static func accountRestore(from source: ServerAccount, into target: ServerAccount, state: StateStore,
                               mapping: MailboxMapping) async throws -> RunOutcome {
        let engine = SyncEngine(
            account: "restore \(target.user.name) ← account:\(source.user.name)", state: state,
            far: { try await source.restoreStore() },
            near: { try await target.restoreStore() },
            options: SyncOptions(direction: .pull, expungePolicy: .keepLocal, maxConcurrentMailboxes: 4, mapping: mapping),
            logger: silentLogger)
        return try #require(await runEngine(engine), "the restore did not finish within its deadline")
    }

    @Test("account → empty account on a server with other special-use names: each role lands in the target's folder, identical; reruns upload nothing")
    func accountIntoEmptyAccountOfAnotherServer() async throws {
        let source = try await RestoreServers.shared.account(.standard)
        let target = try await RestoreServers.shared.account(.foreignNames)
        try MaildirWriter.seed(seedMessages(perFolder: ["INBOX": 4, "Sent": 2, "Trash": 2, "Drafts": 1, "Lists/swift": 2, "Entwürfe": 2]),
                               into: source)
        let before = try source.checkedTree()
        #expect(before.values.reduce(0) { $0 + $1.count } == 13)

        let mapping = try await targetRoleMapping(target)
        #expect(mapping.nearNamesByRole[.sent] == "Sent Items")
        #expect(mapping.nearNamesByRole[.trash] == "Deleted Items")
        #expect(mapping.nearNamesByRole[.drafts] == "Brouillons")

        let directory = try TemporaryDirectory(prefix: "ferrymail-restore-account")
        let state = try StateStore.open(at: directory.path + "/state.sqlite")
        defer { try? state.close() }
        var copied: [Int] = []
        for _ in 0..<2 {
            let outcome = try await Self.accountRestore(from: source, into: target, state: state, mapping: mapping)
            #expect(outcome.succeeded, "\(outcome.errors)")
            copied.append(outcome.copiedToTarget)
        }
        #expect(copied == [13, 0], "the first restore copies every message, the second none")

        let renamed = ["Sent": "Sent Items", "Trash": "Deleted Items", "Drafts": "Brouillons"]
        let after = try target.checkedTree()
        expectSameMail(after, before, renamed: renamed)
        for name in ["Sent", "Trash", "Drafts"] {
            #expect(after[name] == nil, "the target got a folder \(name) beside its own folder of that role")
        }
        let sourceDates = try source.checkedDates(), targetDates = try target.checkedDates()
        for (folder, dates) in sourceDates where !dates.isEmpty {
            #expect(targetDates[renamed[folder] ?? folder] == dates, "INTERNALDATEs (file mtimes) of \(folder)")
        }
        // INTERNALDATEs as Dovecot itself reports them.
        func received(_ account: ServerAccount) async throws -> [String] {
            try await account.doveadm(["-f", "flow", "fetch", "-u", account.user.name, "date.received", "ALL"])
                .split(separator: "\n").map(String.init).sorted()
        }
        let sourceReceived = try await received(source)
        #expect(sourceReceived.count == 13)
        #expect(try await received(target) == sourceReceived)

        // Lost state: recognised, not uploaded again.
        let lost = try StateStore.open(at: directory.path + "/fresh-state.sqlite")
        defer { try? lost.close() }
        let fresh = try await Self.accountRestore(from: source, into: target, state: lost, mapping: mapping)
        #expect(fresh.succeeded, "\(fresh.errors)")
        #expect(fresh.copiedToTarget == 0 && fresh.paired == 13 && fresh.flagChanges == 0)
        expectSameMail(try target.checkedTree(), before, renamed: renamed, "after the rerun with a fresh state:")
        // A pull never touches its source.
        // (Dovecot creates its empty special-use folders at the first login.)
        #expect(try source.checkedTree().filter { !$0.value.isEmpty } == before.filter { !$0.value.isEmpty })
    }
}
