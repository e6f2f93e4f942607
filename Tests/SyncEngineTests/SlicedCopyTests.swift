@testable import SyncEngine
import SyncState
import Testing

/// New messages on one side only (a first download, a first upload to an
/// empty server, a day's mail) are planned and copied a slice at a time
/// (`MailboxSync.setAsideNewMessages`), and the run ends as a whole plan
/// would have ended it.
@Suite struct SlicedCopyTests {
    /// Slices of `heldMessages / 4` = 3 messages.
    static var small: SyncOptions {
        var options = SyncOptions()
        options.heldMessages = 12
        return options
    }

    /// The mailbox's body fetches from `side`, each a list of keys.
    static func fetches(_ world: World, from side: Side, in mailbox: String = "INBOX") async -> [[MessageKey]] {
        await world.store(side).reads.compactMap { read in
            if case .bodies(let keys, mailbox) = read { return keys }
            return nil
        }
    }

    @Test(arguments: Side.allCases)
    func aOneSidedBatchIsCopiedASliceAtATimeInKeyOrder(origin: Side) async throws {
        let sliced = try World(), whole = try World()
        for world in [sliced, whole] {
            for index in 0..<10 { await world.store(origin).deliver(body("m\(index)"), to: "INBOX", flags: index % 3 == 0 ? ["\\Seen", "$Label1"] : []) }
        }
        let report = try await sliced.sync(Self.small)
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.mailbox("INBOX")?.copied[origin.opposite] == 10)

        let fetches = await Self.fetches(sliced, from: origin)
        #expect(fetches.map(\.count) == [3, 3, 3, 1], "one fetch per slice")
        let keys = fetches.flatMap { $0 }
        #expect(keys == keys.sorted(), "copied in key order")
        #expect(Set(keys).count == 10)

        // The default budget's slice holds all ten: one fetch, same result.
        try await whole.sync()
        #expect(await Self.fetches(whole, from: origin).count == 1)
        #expect(await sliced.snapshot() == whole.snapshot())
        expectNothingChanged(try await sliced.sync(Self.small))
    }

    /// A first download from a store that lists part of a mailbox is never
    /// listed whole: a page in phase 2, then page after page as they are
    /// copied. A Maildir-like source is listed whole and sliced.
    @Test func aFirstDownloadIsListedAPageAtATime() async throws {
        let world = try World()
        for index in 0..<10 { await world.far.deliver(body("m\(index)"), to: "INBOX") }
        let report = try await world.sync(Self.small)
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.mailbox("INBOX")?.copied.near == 10)
        #expect(await world.far.listingCount["INBOX"] == nil, "never listed whole")
        // One page to load it, then 3 + 3 + 3 + 1 and an empty one to copy it.
        #expect(await world.far.pageCount["INBOX"] == 6)
        #expect(await Self.fetches(world, from: .far).map(\.count) == [3, 3, 3, 1])
        expectNothingChanged(try await world.sync(Self.small))
        #expect(await world.far.pageCount["INBOX"] == 6, "a mailbox with pairs is not paged")
    }

    /// A message moved on the server into a folder whose first download is
    /// paged is found page by page, and renamed locally, not downloaded.
    @Test(arguments: [true, false])
    func aServerMoveIntoAPagedFirstDownloadIsStillARename(serverHasMove: Bool) async throws {
        var far = MemoryStore.Configuration.imap
        far.move = serverHasMove
        let world = try World(far: far, mailboxes: ["INBOX": nil, "Archive": nil])
        for index in 0..<4 { await world.far.deliver(body("m\(index)"), to: "INBOX") }
        try await world.sync(Self.small)
        let nearKey = await world.key("m2", on: .near)
        for index in 0..<9 { await world.far.deliver(body("a\(index)"), to: "Archive") }
        await world.far.relocate(try #require(await world.key("m2", on: .far)), from: "INBOX", to: "Archive")

        let report = try await world.sync(Self.small)
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.moves.map(\.movedOn) == [.far])
        #expect(await world.key("m2", on: .near, in: "Archive") == nearKey, "renamed keeping the base name, not downloaded again")
        #expect(report.mailbox("Archive")?.copied.near == 9)
        #expect(await world.far.pageCount["Archive"] ?? 0 >= 4, "looked for page by page")
        let snapshot = await world.snapshot()
        for side in Side.allCases {
            #expect(snapshot[side]["Archive"]?.count == 10, "\(side)")
            #expect(snapshot[side]["INBOX"]?.count == 3, "\(side)")
        }
        expectNothingChanged(try await world.sync(Self.small))
    }

    /// Beside existing pairs with flag changes: the pairs are reconciled
    /// as before, the new messages sliced.
    @Test func newMessagesBesideChangedPairsAreSlicedAndThePairsReconciled() async throws {
        let world = try World()
        for index in 0..<4 { await world.far.deliver(body("old\(index)"), to: "INBOX") }
        try await world.sync(Self.small)
        for index in 0..<7 { await world.far.deliver(body("new\(index)"), to: "INBOX") }
        await world.setFlags("old1", on: .near, in: "INBOX", to: ["\\Flagged"])
        await world.delete("old2", on: .near)

        let report = try await world.sync(Self.small)
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.mailbox("INBOX")?.copied.near == 7)
        #expect(report.mailbox("INBOX")?.deleted.far == 1)
        let snapshot = await world.snapshot()
        for side in Side.allCases {
            #expect(snapshot[side]["INBOX"]?.count == 10, "\(side)")
            #expect(snapshot[side]["INBOX"]?["old1"] == [["\\Flagged"]], "\(side)")
            #expect(snapshot[side]["INBOX"]?["old2"] == nil, "\(side)")
        }
        expectNothingChanged(try await world.sync(Self.small))
    }

    /// Set-aside messages still count as their side's messages: 13 of 34
    /// is under half, 13 of the 24 paired ones would be over it.
    @Test func setAsideMessagesCountForTheMassDeletionGuard() async throws {
        let world = try World()
        for index in 0..<24 { await world.far.deliver(body("m\(index)"), to: "INBOX") }
        try await world.sync(Self.small)
        for index in 0..<10 { await world.far.deliver(body("new\(index)"), to: "INBOX") }
        for index in 0..<13 { await world.delete("m\(index)", on: .near) }

        let report = try await world.sync(Self.small)
        #expect(report.mailbox("INBOX")?.error == nil)
        #expect(report.mailbox("INBOX")?.deleted.far == 13)
        #expect(report.mailbox("INBOX")?.copied.near == 10)
    }

    /// The isync-style case: interrupted after any durable step of a sliced
    /// first download, the next run ends with every message once.
    @Test func aSlicedFirstDownloadResumesAfterACrashAtAnyStep() async throws {
        try await checkCase("sliced first download", options: Self.small) { world in
            for index in 0..<8 { await world.far.deliver(body("m\(index)"), to: "INBOX", flags: index.isMultiple(of: 2) ? ["\\Seen"] : []) }
        } expected: { snapshot in
            for side in Side.allCases { #expect(snapshot[side]["INBOX"]?.count == 8, "\(side)") }
        }
    }

    /// A run interrupted right after it adopted a new far UIDVALIDITY leaves
    /// pairs without far UIDs and no invalidation to see: the far messages
    /// are unpaired, the near ones paired. They must be re-paired by
    /// identity, never set aside as new and downloaded a second time.
    @Test func pairsMissingTheirKeyAreRepairedNotCopiedAgain() async throws {
        let world = try World()
        for index in 0..<8 { await world.far.deliver(body("m\(index)"), to: "INBOX") }
        try await world.sync(Self.small)
        await world.far.renumber("INBOX")
        let validity = try #require(try await world.far.select("INBOX").uidValidity)
        let account = try world.state.account(named: "test")
        let mailbox = try #require(try world.state.mailboxPairs(account: account.id!).first { $0.farName == "INBOX" })
        _ = try world.state.resetFarUidValidity(mailbox: mailbox.id!, newValidity: validity)

        let report = try await world.sync(Self.small)
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.mailbox("INBOX")?.copied.near == 0)
        let snapshot = await world.snapshot()
        for side in Side.allCases {
            #expect(snapshot[side]["INBOX"]?.count == 8, "\(side)")
            #expect(snapshot[side]["INBOX"]?.values.allSatisfy { $0.count == 1 } == true, "\(side): no duplicates")
        }
        expectNothingChanged(try await world.sync(Self.small))
    }

    /// A dry run shows the whole plan, not a slice of it.
    @Test func aDryRunPlansTheWholeBatch() async throws {
        let world = try World()
        for index in 0..<10 { await world.far.deliver(body("m\(index)"), to: "INBOX") }
        var options = Self.small
        options.dryRun = true
        let report = try await world.sync(options)
        #expect(report.mailbox("INBOX")?.plan?.copies.near.count == 10)
        #expect(await world.snapshot().near["INBOX"]?.isEmpty ?? true)
    }
}
