import Foundation
import Testing
import SyncState

@Suite("Accounts and mailbox pairs")
struct MailboxTests {
    @Test("an account is created once and found by name afterwards")
    func accountGetOrCreate() throws {
        let store = try StateStore.inMemory()
        let first = try store.account(named: "work")
        let again = try store.account(named: "work")
        let other = try store.account(named: "home")
        #expect(first.id != nil)
        #expect(again.id == first.id)
        #expect(other.id != first.id)
        #expect(try store.accounts().map(\.name) == ["home", "work"])
    }

    @Test("upserting a mailbox pair is idempotent and keeps its near UIDVALIDITY")
    func upsertIsIdempotent() throws {
        let (store, accountId, mailboxId) = try storeWithMailbox()
        let before = try store.mailboxPair(id: mailboxId)
        let after = try store.upsertMailboxPair(account: accountId, farName: "INBOX", nearName: "INBOX", specialUse: nil)
        #expect(after.id == mailboxId)
        #expect(after.nearUidValidity == before.nearUidValidity)
        #expect(after.nearUidValidity != 0)
        #expect(try store.mailboxPairs(account: accountId).count == 1)
    }

    @Test("two far mailboxes cannot share one Maildir folder")
    func nearNameIsUniquePerAccount() throws {
        let (store, accountId, _) = try storeWithMailbox()
        let error = #expect(throws: StateError.self) {
            try store.upsertMailboxPair(account: accountId, farName: "Archive", nearName: "INBOX")
        }
        guard case .conflict(let detail) = error else {
            Issue.record("expected a conflict, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("mailboxPair.accountId, mailboxPair.nearName"))
    }

    @Test("deleting a mailbox pair drops its messages; reappearing reactivates it")
    func deleteAndReactivate() throws {
        let (store, accountId, mailboxId) = try storeWithMailbox()
        try store.recordPairs([pair(1), pair(2)], in: mailboxId)
        try store.commitWatermarks(mailbox: mailboxId, farUidNext: 3, farHighestModSeq: 10, nearScanToken: "t")
        try store.markMailboxPairDeleted(mailboxId)

        #expect(try store.mailboxPairs(account: accountId).isEmpty)
        let deleted = try #require(try store.mailboxPairs(account: accountId, includingDeleted: true).first)
        #expect(deleted.status == .deleted)
        #expect(deleted.farUidNext == nil)
        #expect(try store.pairs(in: mailboxId).isEmpty)

        let back = try store.upsertMailboxPair(account: accountId, farName: "INBOX", nearName: "INBOX")
        #expect(back.id == mailboxId)
        #expect(back.status == .active)
    }

    @Test("forgetting a mailbox pair cascades to its message pairs")
    func forgetCascades() throws {
        let (store, accountId, mailboxId) = try storeWithMailbox()
        try store.recordPairs([pair(1)], in: mailboxId)
        try store.forgetMailboxPair(mailboxId)
        #expect(try store.mailboxPairs(account: accountId, includingDeleted: true).isEmpty)
        #expect(try store.pairs(in: mailboxId).isEmpty)
        #expect(throws: StateError.unknownMailboxPair(mailboxId)) {
            try store.recordPairs([pair(2)], in: mailboxId)
        }
    }

    @Test("watermarks are stored with the time of the sync")
    func watermarks() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        let before = Date().addingTimeInterval(-1)
        try store.commitWatermarks(mailbox: mailboxId, farUidNext: 4242, farHighestModSeq: 9_000_000_000_000, nearScanToken: "cur:1:2;new:3:4")
        let mailbox = try store.mailboxPair(id: mailboxId)
        #expect(mailbox.farUidNext == 4242)
        #expect(mailbox.farHighestModSeq == 9_000_000_000_000)
        #expect(mailbox.nearScanToken == "cur:1:2;new:3:4")
        #expect(try #require(mailbox.lastSyncAt) > before)
    }
}

@Suite("Message pairs")
struct MessagePairTests {
    @Test("the same far UID cannot be paired twice in one mailbox, and the batch is not half-stored")
    func farUidIsUnique() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        try store.recordPairs([pair(1)], in: mailboxId)
        let error = #expect(throws: StateError.self) {
            try store.recordPairs([pair(2), pair(1, "other")], in: mailboxId)
        }
        #expect(error?.description.contains("messagePair.mailboxPairId, messagePair.farUid") == true)
        #expect(try store.pairs(in: mailboxId).map(\.farUid) == [1])
    }

    @Test("the same Maildir name cannot be paired twice in one mailbox")
    func nearNameIsUnique() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        try store.recordPairs([pair(1, "a")], in: mailboxId)
        let error = #expect(throws: StateError.self) {
            try store.recordPairs([pair(2, "a")], in: mailboxId)
        }
        #expect(error?.description.contains("messagePair.mailboxPairId, messagePair.nearName") == true)
    }

    @Test("the same far UID may appear in different mailboxes")
    func uniquenessIsPerMailbox() throws {
        let (store, accountId, inbox) = try storeWithMailbox()
        let sent = try store.upsertMailboxPair(account: accountId, farName: "Sent", nearName: "Sent", specialUse: "\\Sent")
        try store.recordPairs([pair(1, "a")], in: inbox)
        try store.recordPairs([pair(1, "a")], in: sent.id!)
        #expect(try store.pair(in: sent.id!, farUid: 1)?.nearName == "a")
        #expect(try store.pair(in: inbox, nearName: "a")?.farUid == 1)
    }

    @Test("the rows two deltas need: those holding a listed key, plus every keyless or unfinished row, in pairs(in:) order")
    func pairsByKey() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        try store.recordPairs((1...1200).map { pair($0) }, in: mailboxId)
        let toNear = try store.recordPending(copies: [PendingCopy(source: .far(uid: 5000), size: 9)], in: mailboxId)[0]
        let toFar = try store.recordPending(copies: [PendingCopy(source: .near(name: "local"), size: 9)], in: mailboxId)[0]

        // More keys than one query's chunk, on both sides, some unknown.
        let farUids = Array(UInt32(3)...UInt32(700)) + [9999]
        let nearNames = ["msg1100", "msg3", "nowhere"]
        let rows = try store.pairs(in: mailboxId, farUids: farUids, nearNames: nearNames)

        let expected = try store.pairs(in: mailboxId).filter { row in
            row.farUid.map { (3...700).contains($0) } == true || row.nearName == "msg1100"
                || row.farUid == nil || row.nearName == nil
        }
        #expect(rows == expected)
        #expect(rows.count == 698 + 1 + 2)
        #expect(rows.contains { $0.transferId == toNear } && rows.contains { $0.transferId == toFar })
        #expect(try store.pairs(in: mailboxId, farUids: [], nearNames: []).compactMap(\.transferId).sorted() == [toFar, toNear].sorted())
    }

    @Test("a copy to near is pending until completed with its Maildir name")
    func pendingToNearLifecycle() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        let ids = try store.recordPending(copies: [
            PendingCopy(source: .far(uid: 7), flags: ["\\Seen"], size: 512, internalDate: 1_700_000_000, messageId: "<7@x>"),
        ], in: mailboxId)
        let transferId = try #require(ids.first)

        let pending = try store.pendingCopies(in: mailboxId)
        #expect(pending.map(\.transferId) == [transferId])
        #expect(pending.first?.status == .pendingToNear)
        #expect(pending.first?.nearName == nil)

        try store.completeCopy(transferId: transferId, nearName: "1700000000.M1P2.host")
        #expect(try store.pendingCopies(in: mailboxId).isEmpty)
        let paired = try #require(try store.pair(in: mailboxId, farUid: 7))
        #expect(paired.status == .paired)
        #expect(paired.nearName == "1700000000.M1P2.host")
        #expect(paired.transferId == nil)
        #expect(paired.flags.text == "\\Seen")
        #expect(paired.internalDate == 1_700_000_000)

        #expect(throws: StateError.unknownTransfer(transferId)) {
            try store.completeCopy(transferId: transferId, nearName: "again")
        }
    }

    @Test("a batch of copies to far completes with the UIDs the server assigned")
    func pendingToFarBatch() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        let ids = try store.recordPending(copies: (1...3).map {
            PendingCopy(source: .near(name: "n\($0)"), size: Int64($0))
        }, in: mailboxId)
        #expect(Set(ids).count == 3)
        try store.completeCopies(zip(ids, [101, 102, 103] as [UInt32]).map {
            CopyCompletion(transferId: $0, destination: .far(uid: $1))
        })
        #expect(try store.pairs(in: mailboxId).map(\.farUid) == [101, 102, 103])
        #expect(try store.pair(in: mailboxId, farUid: 102)?.nearName == "n2")
    }

    @Test("completing on the wrong side or onto a taken UID rolls back the whole batch")
    func completionConflicts() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        try store.recordPairs([pair(50)], in: mailboxId)
        let ids = try store.recordPending(copies: [
            PendingCopy(source: .near(name: "x"), size: 1),
            PendingCopy(source: .near(name: "y"), size: 1),
        ], in: mailboxId)

        let wrongSide = #expect(throws: StateError.self) {
            try store.completeCopy(transferId: ids[0], nearName: "z")
        }
        #expect(wrongSide?.description.contains("pendingToFar") == true)

        #expect(throws: StateError.self) {
            try store.completeCopies([
                CopyCompletion(transferId: ids[0], destination: .far(uid: 60)),
                CopyCompletion(transferId: ids[1], destination: .far(uid: 50)),
            ])
        }
        #expect(try store.pendingCopies(in: mailboxId).count == 2)
        #expect(try store.pair(in: mailboxId, farUid: 60) == nil)
    }

    @Test("a cancelled copy leaves no trace; cancelling twice is an error")
    func cancel() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        let ids = try store.recordPending(copies: [PendingCopy(source: .far(uid: 1), size: 1)], in: mailboxId)
        try store.cancelCopies(transferIds: ids)
        #expect(try store.pairs(in: mailboxId).isEmpty)
        #expect(throws: StateError.unknownTransfer(ids[0])) { try store.cancelCopies(transferIds: ids) }
    }

    @Test("agreed flags are stored in canonical order")
    func flags() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        let stored = try store.recordPairs([pair(1)], in: mailboxId)
        let id = try #require(stored.first?.id)
        try store.recordFlags([id: MessageFlags(["\\Seen", "$Forwarded", "\\Flagged", "\\Seen"])])
        let flags = try #require(try store.pair(in: mailboxId, farUid: 1)).flags
        #expect(flags.text == "$Forwarded \\Flagged \\Seen")
        #expect(flags == ["\\Flagged", "\\Seen", "$Forwarded"])
        #expect(throws: StateError.unknownMessagePair(999)) { try store.recordFlags([999: .none]) }
    }

    @Test("an expunge is journaled first, then the pair is forgotten, idempotently")
    func expunge() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        let ids = try store.recordPairs([pair(1), pair(2), pair(3)], in: mailboxId).compactMap(\.id)
        try store.recordPendingExpunge([ids[0]], on: .far)
        try store.recordPendingExpunge([ids[1]], on: .near)
        #expect(try store.pendingExpunges(in: mailboxId).map(\.status) == [.pendingExpungeFar, .pendingExpungeNear])
        #expect(try store.pendingCopies(in: mailboxId).isEmpty)

        #expect(try store.recordExpunged([ids[0], ids[1]]) == 2)
        #expect(try store.recordExpunged([ids[0]]) == 0)
        #expect(try store.pairs(in: mailboxId).map(\.farUid) == [3])
    }
}

@Suite("UIDVALIDITY reset")
struct UidValidityTests {
    @Test("a new UIDVALIDITY clears far UIDs, keeps rows for re-pairing and drops far-only copies")
    func resetAndRepair() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        #expect(try store.resetFarUidValidity(mailbox: mailboxId, newValidity: 100).clearedPairs == 0)
        try store.recordPairs([pair(1, messageId: "<a@x>", size: 10), pair(2, messageId: "<b@x>", size: 20)], in: mailboxId)
        let toNear = try store.recordPending(copies: [PendingCopy(source: .far(uid: 3), size: 30)], in: mailboxId)
        let toFar = try store.recordPending(copies: [PendingCopy(source: .near(name: "local"), size: 40, messageId: "<c@x>")], in: mailboxId)
        try store.commitWatermarks(mailbox: mailboxId, farUidNext: 4, farHighestModSeq: 77, nearScanToken: "tok")

        let reset = try store.resetFarUidValidity(mailbox: mailboxId, newValidity: 200)
        #expect(reset.clearedPairs == 2)
        #expect(reset.abandonedTransfers == toNear)

        let mailbox = try store.mailboxPair(id: mailboxId)
        #expect(mailbox.farUidValidity == 200)
        #expect(mailbox.farUidNext == nil)
        #expect(mailbox.farHighestModSeq == nil)
        #expect(mailbox.nearScanToken == "tok")
        let pairs = try store.pairs(in: mailboxId)
        #expect(pairs.count == 3)
        #expect(pairs.allSatisfy { $0.farUid == nil })

        // The server renumbered: <a@x> is now UID 11, the pending append is UID 13.
        let candidates = try store.candidatesForRepair(in: mailboxId, messageId: "<a@x>", size: 10)
        #expect(candidates.map(\.nearName) == ["msg1"])
        #expect(try store.candidatesForRepair(in: mailboxId, messageId: "<a@x>", size: 11).isEmpty)
        let appended = try #require(try store.pendingCopies(in: mailboxId).first)
        try store.attachFarUids([candidates[0].id!: 11, appended.id!: 13])

        #expect(try store.pair(in: mailboxId, nearName: "msg1")?.farUid == 11)
        let completed = try #require(try store.pair(in: mailboxId, farUid: 13))
        #expect(completed.status == .paired)
        #expect(completed.transferId == nil)
        #expect(try store.pendingCopies(in: mailboxId).isEmpty)
        #expect(toFar.count == 1)

        // Seeing the same UIDVALIDITY again must not undo the repair.
        #expect(try store.resetFarUidValidity(mailbox: mailboxId, newValidity: 200).clearedPairs == 0)
        #expect(try store.pair(in: mailboxId, farUid: 11) != nil)
    }

    @Test("attaching a far UID to a row that has one is a conflict")
    func attachRefusesOverwrite() throws {
        let (store, _, mailboxId) = try storeWithMailbox()
        let id = try #require(try store.recordPairs([pair(1)], in: mailboxId).first?.id)
        #expect(throws: StateError.self) { try store.attachFarUids([id: 2]) }
        #expect(try store.pair(in: mailboxId, farUid: 1) != nil)
    }
}

@Suite("Run journal and daemon status")
struct JournalTests {
    @Test("a run is open until finished, and old runs are pruned")
    func runs() throws {
        let (store, accountId, mailboxId) = try storeWithMailbox()
        let run = try store.beginRun(account: accountId, mailbox: mailboxId)
        #expect(try store.recentRuns(account: accountId).first?.finishedAt == nil)

        try store.finishRun(run.id!, counts: RunCounts(fetched: 5, appended: 2, flagsChanged: 1), error: nil)
        let finished = try #require(try store.recentRuns(account: accountId).first)
        #expect(finished.finishedAt != nil)
        #expect(finished.counts == RunCounts(fetched: 5, appended: 2, flagsChanged: 1))

        for _ in 0..<4 {
            let next = try store.beginRun(account: accountId)
            try store.finishRun(next.id!, counts: RunCounts(), error: "connection reset", keepLatest: 3)
        }
        let kept = try store.recentRuns(account: accountId)
        #expect(kept.count == 3)
        #expect(kept.allSatisfy { $0.lastError == "connection reset" })
    }

    @Test("daemon status keeps 'since' while the state holds and remembers the last error")
    func daemonStatus() throws {
        let (store, accountId, _) = try storeWithMailbox()
        _ = try store.account(named: "silent")
        try store.setDaemonStatus(account: accountId, state: .syncing)
        let first = try #require(try store.daemonStatuses().first { $0.account.id == accountId }?.daemon)
        try store.setDaemonStatus(account: accountId, state: .syncing, detail: "INBOX 10/20")
        let second = try #require(try store.daemonStatuses().first { $0.account.id == accountId }?.daemon)
        #expect(second.since == first.since)
        #expect(second.detail == "INBOX 10/20")

        try store.setDaemonStatus(account: accountId, state: .backingOff, error: "login failed")
        try store.setDaemonStatus(account: accountId, state: .idle, succeeded: true)
        let statuses = try store.daemonStatuses()
        #expect(statuses.map(\.account.name) == ["personal", "silent"])
        let idle = try #require(statuses[0].daemon)
        #expect(idle.state == .idle)
        #expect(idle.lastSuccessAt != nil)
        #expect(idle.lastError == "login failed")
        #expect(statuses[1].daemon == nil)
    }
}

@Suite("Helpers")
struct HelperTests {
    @Test("the default path follows XDG_STATE_HOME, ignoring relative values")
    func defaultPath() {
        #expect(StatePaths.defaultDatabasePath(environment: ["XDG_STATE_HOME": "/x/state/", "HOME": "/home/u"])
            == "/x/state/ferrymail/state.sqlite")
        #expect(StatePaths.defaultDatabasePath(environment: ["XDG_STATE_HOME": "rel", "HOME": "/home/u"])
            == "/home/u/.local/state/ferrymail/state.sqlite")
        #expect(StatePaths.defaultDatabasePath(environment: ["HOME": "/home/u"])
            == "/home/u/.local/state/ferrymail/state.sqlite")
        #expect(StatePaths.lockPath(forDatabase: "/a/state.sqlite") == "/a/state.sqlite.lock")
    }

    @Test("flag sets compare equal whatever their order or duplicates")
    func flagCanonicalForm() {
        let flags = MessageFlags(["\\Seen", " ", "\\Answered", "\\Seen"])
        #expect(flags.names == ["\\Answered", "\\Seen"])
        #expect(MessageFlags(text: flags.text) == flags)
        #expect(MessageFlags.none.text.isEmpty)
        // Already canonical, unsorted, duplicated, padded, or with a
        // non-breaking space: always the same canonical form.
        #expect(MessageFlags(["$Label1", "\\Answered", "\\Seen"]).names == ["$Label1", "\\Answered", "\\Seen"])
        #expect(MessageFlags(["\\Seen", "$Label1"]).names == ["$Label1", "\\Seen"])
        #expect(MessageFlags(["\\Answered", "\\Answered"]).names == ["\\Answered"])
        #expect(MessageFlags(["\\Answered", "\\Seen\t"]).names == ["\\Answered", "\\Seen"])
        #expect(MessageFlags(["\\Answered", "\\Seen\u{00A0}"]).names == ["\\Answered", "\\Seen"])
        #expect(MessageFlags(["", "\\Seen"]).names == ["\\Seen"])
    }
}
