import SyncEngine
import SyncState
import Testing

/// The run's budget of held listing entries (`SyncOptions.heldMessages`):
/// mailboxes beyond it are dropped after loading and listed again when they
/// propagate, and the run decides exactly what it would decide holding them.
@Suite struct ListingBudgetTests {
    static let folders = ["INBOX", "A", "B", "C"]

    /// Room for one ten-message mailbox, not two.
    static var tight: SyncOptions {
        var options = SyncOptions()
        options.heldMessages = 15
        return options
    }

    static func world(_ far: MemoryStore.Configuration = .imap) throws -> World {
        try World(far: far, mailboxes: Dictionary(uniqueKeysWithValues: folders.map { ($0, nil) }))
    }

    static func deliverTen(_ world: World) async {
        for folder in folders {
            for index in 0..<10 { await world.far.deliver(body("\(folder)-\(index)"), to: folder, flags: index % 2 == 0 ? ["\\Seen"] : []) }
        }
    }

    @Test func aRunOverItsBudgetListsTheSpilledMailboxesAgainAndEndsAsOneWithin() async throws {
        let roomy = try Self.world(), tight = try Self.world()
        await Self.deliverTen(roomy)
        await Self.deliverTen(tight)

        let report = try await tight.sync(Self.tight)
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.mailboxes.map { $0.copied.near }.reduce(0, +) == 40)
        // One mailbox is kept; the three others are loaded one at a time and
        // dropped, then listed again to propagate.
        for side in Side.allCases {
            let listings = await tight.store(side).listingCount
            #expect(listings.values.reduce(0, +) == 7, "\(side): \(listings)")
            #expect(listings.values.filter { $0 == 1 }.count == 1, "\(side): \(listings)")
        }
        try await roomy.sync()
        #expect(await tight.snapshot() == roomy.snapshot())
        expectNothingChanged(try await tight.sync(Self.tight))
    }

    @Test func theDefaultBudgetHoldsAnOrdinaryAccountWhole() async throws {
        let world = try Self.world()
        await Self.deliverTen(world)
        try await world.sync()
        for side in Side.allCases {
            #expect(await world.store(side).listingCount.values.allSatisfy { $0 == 1 }, "every mailbox listed once")
        }
    }

    @Test func aFirstSyncOverItsBudgetResumesAfterACrashAtAnyStep() async throws {
        try await checkCase("first sync, spilled", options: Self.tight, world: { try Self.world() }) { world in
            await Self.deliverTen(world)
        } expected: { snapshot in
            for side in Side.allCases {
                for folder in Self.folders { #expect(snapshot[side][folder]?.count == 10, "\(side) \(folder)") }
            }
        }
    }

    /// Both mailboxes of a move hold more than the budget: the source is
    /// kept or spilled depending on which loads first, and the destination's
    /// arrival is found by listing it again.
    @Test func aLocalMoveBetweenSpilledMailboxesIsStillAMove() async throws {
        try await checkCase("near move, spilled", options: Self.tight, world: { try Self.world() }) { world in
            await Self.deliverTen(world)
            try await world.sync()
            await world.near.relocate(try #require(await world.key("INBOX-0", on: .near)), from: "INBOX", to: "C")
            // Enough changes in every mailbox that none fits beside another.
            for folder in Self.folders {
                for index in 1..<10 { await world.setFlags("\(folder)-\(index)", on: .near, in: folder, to: ["\\Flagged"]) }
            }
        } expected: { snapshot in
            for side in Side.allCases {
                #expect(snapshot[side]["INBOX"]?["INBOX-0"] == nil)
                #expect(snapshot[side]["C"]?["INBOX-0"] == [["\\Seen"]])
                #expect(snapshot[side]["C"]?["C-1"] == [["\\Flagged"]])
            }
        }

        let world = try Self.world()
        await Self.deliverTen(world)
        try await world.sync()
        await world.near.relocate(try #require(await world.key("INBOX-0", on: .near)), from: "INBOX", to: "C")
        for folder in Self.folders {
            for index in 1..<10 { await world.setFlags("\(folder)-\(index)", on: .near, in: folder, to: ["\\Flagged"]) }
        }
        let before = await world.near.listingCount
        let report = try await world.sync(Self.tight)
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.moves.map(\.movedOn) == [.near])
        #expect(report.mailboxes.allSatisfy { $0.copied == Sides(far: 0, near: 0) && $0.deleted == Sides(far: 0, near: 0) },
                "a move, not an upload and a delete")
        let listed = await world.near.listingCount.map { $0.value - (before[$0.key] ?? 0) }
        #expect(listed.contains { $0 > 1 }, "some mailbox was spilled and listed again: \(listed)")
    }

    /// On the far side a move is matched by Message-ID and size, which a
    /// spilled mailbox's listing reads again (deferred) before matching.
    @Test(arguments: [true, false])
    func aServerMoveIntoASpilledMailboxIsStillARename(serverHasMove: Bool) async throws {
        var far = MemoryStore.Configuration.imap
        far.move = serverHasMove
        let world = try Self.world(far)
        await Self.deliverTen(world)
        try await world.sync()
        let nearKey = await world.key("INBOX-0", on: .near)
        await world.far.relocate(try #require(await world.key("INBOX-0", on: .far)), from: "INBOX", to: "C")
        for folder in Self.folders {
            for index in 1..<10 { await world.setFlags("\(folder)-\(index)", on: .far, in: folder, to: ["\\Answered"]) }
        }
        let report = try await world.sync(Self.tight)
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.moves.map(\.movedOn) == [.far])
        #expect(await world.key("INBOX-0", on: .near, in: "C") == nearKey, "renamed keeping the base name, not downloaded again")
        #expect(report.mailboxes.allSatisfy { $0.copied == Sides(far: 0, near: 0) })
        expectNothingChanged(try await world.sync(Self.tight))
    }
}
