import SyncEngine
import SyncState
import Testing

@Suite("Sync rules")
struct EngineRuleTests {
    // MARK: Mass-deletion guard

    @Test(arguments: [(21, 11, true), (21, 10, false), (20, 20, false)])
    func massDeletionGuard(messages: Int, deleted: Int, refused: Bool) async throws {
        let world = try World()
        for index in 0..<messages { await world.far.deliver(body("m\(index)"), to: "INBOX") }
        try await world.sync()
        for index in 0..<deleted { await world.delete("m\(index)", on: .near) }
        let report = try await world.sync()
        let error = report.mailbox("INBOX")?.error
        if refused {
            #expect(error == .massDeletion(account: "test", mailbox: "INBOX", side: .far, deletions: deleted, messages: messages, share: 0.5))
            #expect(await world.snapshot().far["INBOX"]?.count == messages, "nothing deleted on the far side")
            // The user confirms: the deletion goes through.
            let confirmed = try await world.sync(SyncOptions(massDeletion: MassDeletionGuard(allow: true)))
            #expect(confirmed.mailbox("INBOX")?.deleted.far == deleted)
        } else {
            #expect(error == nil)
            #expect(report.mailbox("INBOX")?.deleted.far == deleted)
        }
        #expect(await world.snapshot().far["INBOX"]?.count == messages - deleted)
    }

    // MARK: UIDVALIDITY

    @Test func farUidValidityChangeRepairsWithoutDownloadingAgain() async throws {
        try await checkCase("far UIDVALIDITY change") { world in
            for id in ["a", "b"] { await world.far.deliver(body(id), to: "INBOX", flags: ["\\Seen"]) }
            try await world.sync()
            await world.far.renumber("INBOX")
        } expected: { snapshot in
            for side in Side.allCases { #expect(snapshot[side]["INBOX"] == ["a": [["\\Seen"]], "b": [["\\Seen"]]]) }
        }

        let world = try World()
        for id in ["a", "b"] { await world.far.deliver(body(id), to: "INBOX") }
        try await world.sync()
        let nearKeys = await world.near.contents()["INBOX"]?.map(\.key)
        await world.far.renumber("INBOX")
        await world.setFlags("a", on: .near, to: ["\\Flagged"])
        let report = try await world.sync()
        #expect(report.mailbox("INBOX")?.copied == Sides(far: 0, near: 0), "nothing copied again")
        #expect(report.mailbox("INBOX")?.deleted == Sides(far: 0, near: 0), "nothing deleted")
        #expect(await world.near.contents()["INBOX"]?.map(\.key) == nearKeys)
        #expect(await world.snapshot().far["INBOX"]?["a"] == [["\\Flagged"]], "agreed flags survive the re-pairing")
        expectNothingChanged(try await world.sync())
    }

    @Test func uidValidityChangeOnBothSidesFailsThatMailboxOnly() async throws {
        var near = MemoryStore.Configuration.maildir
        near.reportsUidValidity = true
        let world = try World(near: near, mailboxes: ["INBOX": nil, "Work": nil])
        await world.far.deliver(body("a"), to: "INBOX")
        try await world.sync()
        await world.far.renumber("INBOX")
        await world.near.renumber("INBOX")
        await world.far.deliver(body("w"), to: "Work")
        let report = try await world.sync()
        #expect(report.mailbox("INBOX")?.error == .uidValidityChangedOnBothSides(account: "test", mailbox: "INBOX"))
        #expect(report.mailbox("Work")?.copied.near == 1, "the other mailboxes continue")
        #expect(await world.snapshot().near["INBOX"] == ["a": [.none]], "nothing changed in the refused mailbox")
        // The documented recovery: reset the mailbox's state, sync again.
        try SyncEngine.resetMailboxState(state: world.state, account: "test", farName: "INBOX")
        let recovered = try await world.sync()
        #expect(recovered.allErrors.isEmpty)
        #expect(await world.snapshot().near["INBOX"] == ["a": [.none]])
        #expect(await world.snapshot().far["INBOX"] == ["a": [.none]])
    }

    // MARK: Moves

    @Test func localMoveBecomesAFarMove() async throws {
        try await checkCase("near move", world: { try World(mailboxes: ["INBOX": nil, "Archive": nil]) }) { world in
            await world.far.deliver(body("a"), to: "INBOX", flags: ["\\Seen"])
            await world.far.deliver(body("b"), to: "INBOX")
            try await world.sync()
            let key = try #require(await world.key("a", on: .near))
            await world.near.relocate(key, from: "INBOX", to: "Archive")
        } expected: { snapshot in
            for side in Side.allCases {
                #expect(snapshot[side]["INBOX"] == ["b": [.none]])
                #expect(snapshot[side]["Archive"] == ["a": [["\\Seen"]]])
            }
        }

        let world = try World(mailboxes: ["INBOX": nil, "Archive": nil])
        await world.far.deliver(body("a"), to: "INBOX")
        try await world.sync()
        await world.near.relocate(try #require(await world.key("a", on: .near)), from: "INBOX", to: "Archive")
        let report = try await world.sync()
        #expect(report.moves.map(\.movedOn) == [.near])
        #expect(report.mailboxes.allSatisfy { $0.copied == Sides(far: 0, near: 0) && $0.deleted == Sides(far: 0, near: 0) },
                "a move, not an upload and a delete")
        #expect(report.mailbox("Archive")?.movedIn == 1)
        #expect(report.mailbox("INBOX")?.movedIn == 0)
    }

    @Test(arguments: [true, false])
    func farMoveBecomesALocalRename(serverHasMove: Bool) async throws {
        var far = MemoryStore.Configuration.imap
        far.move = serverHasMove
        try await checkCase("far move", world: { try World(far: far, mailboxes: ["INBOX": nil, "Archive": nil]) }) { world in
            await world.far.deliver(body("a"), to: "INBOX", flags: ["\\Seen"])
            try await world.sync()
            await world.far.relocate(try #require(await world.key("a", on: .far)), from: "INBOX", to: "Archive")
        } expected: { snapshot in
            for side in Side.allCases {
                #expect(snapshot[side]["INBOX"] == [:])
                #expect(snapshot[side]["Archive"] == ["a": [["\\Seen"]]])
            }
        }

        let world = try World(far: far, mailboxes: ["INBOX": nil, "Archive": nil])
        await world.far.deliver(body("a"), to: "INBOX")
        try await world.sync()
        let nearKey = await world.key("a", on: .near)
        await world.far.relocate(try #require(await world.key("a", on: .far)), from: "INBOX", to: "Archive")
        let report = try await world.sync()
        #expect(report.moves.map(\.movedOn) == [.far])
        #expect(await world.key("a", on: .near, in: "Archive") == nearKey, "renamed keeping the base name, not downloaded again")
    }

    @Test func messageIdsAreReadOnlyForMessagesTheyCanMatch() async throws {
        let world = try World(mailboxes: ["INBOX": nil, "Archive": nil])
        await world.far.deliver(body("a"), to: "INBOX")
        try await world.sync()
        let firstRun = await world.far.reads.count
        let original = try #require(await world.key("a", on: .far))
        let moved = try #require(await world.far.relocate(original, from: "INBOX", to: "Archive"))
        let other = await world.far.deliver(body("other", extra: String(repeating: "x", count: 100)), to: "Archive")

        let report = try await world.sync()
        #expect(report.moves.map(\.movedOn) == [.far])
        let reads = await world.far.reads.dropFirst(firstRun)
        // Only the new message of the vanished pair's size is asked for before
        // the moves are found; the other one's Message-ID is read with its body.
        #expect(Array(reads) == [.messageIds([moved], mailbox: "Archive"), .messageIds([other], mailbox: "Archive"),
                                 .bodies([other], mailbox: "Archive")])
        // The pair made by that download keeps the Message-ID for later moves.
        _ = await world.far.relocate(other, from: "Archive", to: "INBOX")
        #expect(try await world.sync().moves.map(\.movedOn) == [.far])
    }

    // MARK: Full listings compared with the state

    /// Stores that list every message on every run, as a Maildir does in a
    /// new process and an IMAP server without CONDSTORE does.
    static func fullListingWorld() throws -> World {
        var far = MemoryStore.Configuration.imap, near = MemoryStore.Configuration.maildir
        far.delta = false
        near.delta = false
        return try World(far: far, near: near)
    }

    @Test func fullListingsThatDifferInAFewMessagesLoadOnlyTheirRows() async throws {
        let world = try Self.fullListingWorld()
        for index in 0..<40 { await world.far.deliver(body("m\(index)"), to: "INBOX") }
        #expect(try await world.sync().mailbox("INBOX")?.pairsLoaded == 0, "a first sync has no rows")

        await world.setFlags("m3", on: .near, to: ["\\Seen"])
        await world.setFlags("m7", on: .near, to: ["\\Flagged"])
        await world.delete("m9", on: .near)
        await world.setFlags("m20", on: .far, to: ["\\Answered"])
        await world.far.deliver(body("new"), to: "INBOX")
        let report = try #require(try await world.sync().mailbox("INBOX"))
        #expect(report.error == nil)
        #expect(report.pairsLoaded == 4, "the rows of m3, m7, m9 and m20; the new message has none")
        #expect(report.flagsChanged == Sides(far: 2, near: 1))
        #expect(report.deleted == Sides(far: 1, near: 0))
        #expect(report.copied == Sides(far: 0, near: 1))
        let snapshot = await world.snapshot()
        #expect(snapshot.far == snapshot.near)
        #expect(snapshot.far["INBOX"]?.count == 40)
        #expect(snapshot.far["INBOX"]?["m7"] == [["\\Flagged"]])
        #expect(snapshot.far["INBOX"]?["m20"] == [["\\Answered"]])
        #expect(snapshot.far["INBOX"]?["m9"] == nil)

        let quiet = try await world.sync()
        expectNothingChanged(quiet)
        #expect(quiet.mailbox("INBOX")?.pairsLoaded == 0)
    }

    @Test func fullListingsThatDifferInMostMessagesSyncEveryChange() async throws {
        let world = try Self.fullListingWorld()
        // More than the 1,024 keys a delta may always mention, and more
        // than a quarter of the rows.
        let count = 1200
        for index in 0..<count { await world.far.deliver(body("m\(index)"), to: "INBOX") }
        try await world.sync()
        for message in await world.near.contents()["INBOX"] ?? [] {
            await world.near.replaceFlags(of: message.key, in: "INBOX", with: ["\\Seen"])
        }

        let report = try #require(try await world.sync().mailbox("INBOX"))
        #expect(report.pairsLoaded == count)
        #expect(report.flagsChanged == Sides(far: count, near: 0))
        #expect(await world.snapshot().far["INBOX"]?.values.allSatisfy { $0 == [["\\Seen"]] } == true)
    }

    // MARK: Modes

    @Test func dryRunChangesNothing() async throws {
        let world = try World()
        await world.far.deliver(body("a"), to: "INBOX")
        await world.near.deliver(body("b"), to: "INBOX")
        await world.far.addMailbox("Work")
        let before = await world.snapshot()
        let report = try await world.sync(SyncOptions(dryRun: true))
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.mailbox("INBOX")?.plan?.copies.map(\.count) == Sides(far: 1, near: 1))
        #expect(report.folderChanges == [.created(side: .near, name: "Work")])
        #expect(await world.snapshot() == before)
        #expect(try world.state.accounts().isEmpty, "the state is untouched")
    }

    @Test func pullAndPushRestrictTheDirection() async throws {
        let world = try World()
        await world.far.deliver(body("a"), to: "INBOX")
        await world.near.deliver(body("b"), to: "INBOX")
        try await world.sync(SyncOptions(direction: .pull))
        #expect(await world.snapshot().far["INBOX"] == ["a": [.none]], "pull never writes far")
        #expect(await world.snapshot().near["INBOX"] == ["a": [.none], "b": [.none]])

        await world.setFlags("a", on: .near, to: ["\\Seen"])
        await world.setFlags("a", on: .far, to: ["\\Flagged"])
        try await world.sync(SyncOptions(direction: .pull))
        #expect(await world.snapshot().far["INBOX"]?["a"] == [["\\Flagged"]])
        #expect(await world.snapshot().near["INBOX"]?["a"] == [["\\Flagged", "\\Seen"]])

        try await world.sync(SyncOptions(direction: .push))
        #expect(await world.snapshot().far["INBOX"] == ["a": [["\\Flagged", "\\Seen"]], "b": [.none]],
                "what pull left behind is pushed later")
        expectNothingChanged(try await world.sync())
    }

    // MARK: Folders

    @Test func foldersAreCreatedBothWaysWithRoleMapping() async throws {
        let mapping = MailboxMapping(nearNamesByRole: [.sent: "Sent"])
        let world = try World()
        await world.far.addMailbox("[Gmail]/Sent Mail", role: .sent)
        await world.far.deliver(body("s"), to: "[Gmail]/Sent Mail")
        await world.near.addMailbox("Projects/Ferry")
        await world.near.deliver(body("p"), to: "Projects/Ferry")
        let report = try await world.sync(SyncOptions(mapping: mapping))
        #expect(Set(report.folderChanges) == [.created(side: .near, name: "Sent"), .created(side: .far, name: "Projects/Ferry")])
        #expect(await world.snapshot().near["Sent"] == ["s": [.none]])
        #expect(await world.snapshot().far["Projects/Ferry"] == ["p": [.none]])
        expectNothingChanged(try await world.sync(SyncOptions(mapping: mapping)))
    }

    @Test func folderDeletionPropagatesOnlyWhenNothingIsUnsynced() async throws {
        let world = try World(mailboxes: ["INBOX": nil, "Old": nil, "Busy": nil])
        await world.far.deliver(body("o"), to: "Old")
        await world.far.deliver(body("b"), to: "Busy")
        try await world.sync()

        await world.near.removeMailbox("Old")
        await world.near.removeMailbox("Busy")
        await world.far.deliver(body("new"), to: "Busy")
        let report = try await world.sync()
        #expect(Set(report.folderChanges) == [.deleted(side: .far, name: "Old"), .recreated(side: .near, name: "Busy")])
        #expect(await world.far.mailboxNames().contains("Old") == false)
        #expect(await world.snapshot().near["Busy"] == ["b": [.none], "new": [.none]])
        expectNothingChanged(try await world.sync())
    }

    @Test func unchangedMailboxesAreSkippedWithoutSelect() async throws {
        let world = try World(mailboxes: ["INBOX": nil, "Quiet": nil])
        await world.far.deliver(body("a"), to: "INBOX")
        await world.far.deliver(body("q"), to: "Quiet")
        try await world.sync()
        try await world.sync()
        let selects = await (world.far.selectCount["Quiet"], world.near.selectCount["Quiet"])
        await world.far.deliver(body("b"), to: "INBOX")
        let report = try await world.sync()
        #expect(report.mailbox("Quiet")?.skipped == true)
        #expect(await world.far.selectCount["Quiet"] == selects.0)
        #expect(await world.near.selectCount["Quiet"] == selects.1)
        #expect(report.mailbox("INBOX")?.copied.near == 1)
    }

    @Test func aSideTheRunDidNotWriteToIsNotSelectedAgainToProveItsStatus() async throws {
        // IMAP on both sides: the near side proves its own changes by
        // MODSEQ, so a run that leaves both sides settled is seen as such.
        let world = try World(far: .imap, near: .imap)
        await world.far.deliver(body("a"), to: "INBOX")
        try await world.sync()
        await world.far.deliver(body("b"), to: "INBOX")
        let farSelects = await world.far.selectCount["INBOX"] ?? 0
        let report = try await world.sync()
        #expect(report.mailbox("INBOX")?.copied.near == 1)
        #expect(await world.far.selectCount["INBOX"] == farSelects + 1, "selected to be listed, and not again")
        // The status the listing was taken at is committed: the next run
        // finds both sides where this one left them.
        let next = try await world.sync()
        #expect(next.mailbox("INBOX")?.skipped == true)
        #expect(await world.far.selectCount["INBOX"] == farSelects + 1)
    }

    @Test func mailboxPairsRunConcurrentlyOnAtMostNHandles() async throws {
        let names = (1...6).map { "Box\($0)" }
        let world = try World(mailboxes: Dictionary(uniqueKeysWithValues: names.map { ($0, nil) }))
        for name in names { await world.far.deliver(body(name), to: name) }
        let opened = OpenCounter()
        let far = world.far, near = world.near
        let engine = SyncEngine(
            account: "test", state: world.state,
            far: { await opened.increment(); return far }, near: { near },
            options: SyncOptions(maxConcurrentMailboxes: 2), logger: quietLogger)
        let report = try await engine.run()
        #expect(report.allErrors.isEmpty)
        #expect(report.mailboxes.map(\.copied.near) == Array(repeating: 1, count: 6))
        #expect(await opened.count <= 2, "one far handle per concurrent mailbox, reused")
    }

    @Test func bodiesAreCopiedByteForByte() async throws {
        let world = try World()
        let original = body("x", extra: String(repeating: "\u{00E9}line\r\n", count: 100))
        await world.far.deliver(original, to: "INBOX")
        try await world.sync()
        #expect(await world.near.contents()["INBOX"]?.first?.body == original)
    }
}

actor OpenCounter {
    private(set) var count = 0
    func increment() { count += 1 }
}
