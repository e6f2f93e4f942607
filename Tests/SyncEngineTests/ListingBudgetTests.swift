@testable import SyncEngine
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
        // Listed whole: a first download listed a page at a time is spilled
        // for another reason (`SlicedCopyTests`).
        var whole = MemoryStore.Configuration.imap
        whole.partialListings = false
        let roomy = try Self.world(whole), tight = try Self.world(whole)
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

extension ListingBudgetTests {
    /// With the trash policy, the Trash mailbox is propagated after the
    /// others; held meanwhile, it would keep their spilled mailboxes waiting
    /// for ever.
    @Test(.timeLimit(.minutes(1)))
    func theTrashPolicyWithSpilledMailboxesFinishes() async throws {
        var options = SyncOptions(expungePolicy: .trash, mapping: MailboxMapping(nearNamesByRole: [.trash: "Trash"]))
        options.heldMessages = 15
        try await checkCase("trash, spilled", options: options, world: {
            try World(mailboxes: ["INBOX": nil, "A": nil, "B": nil, "Trash": .trash])
        }) { world in
            for folder in ["INBOX", "A", "B", "Trash"] {
                for index in 0..<10 { await world.far.deliver(body("\(folder)-\(index)"), to: folder) }
            }
            try await world.sync(options)
            for folder in ["INBOX", "A", "B", "Trash"] {
                for index in 1..<10 { await world.setFlags("\(folder)-\(index)", on: .far, in: folder, to: ["\\Seen"]) }
            }
            await world.delete("A-0", on: .near, in: "A")
        } expected: { snapshot in
            #expect(snapshot.far["A"]?["A-0"] == nil)
            #expect(snapshot.far["Trash"]?["A-0"] == [.none])
            #expect(snapshot.near["A"]?["A-1"] == [["\\Seen"]])
            #expect(snapshot.near["Trash"]?["Trash-1"] == [["\\Seen"]])
        }
    }
}

/// The budget on its own: who waits, who is kept.
@Suite struct ListingBudgetRules {
    /// Whether `admit` returned within a few turns of the executor.
    private func admitted(_ budget: ListingBudget, _ estimate: Int, untilReleased: Bool = false) async -> (Task<Void, Never>, () async -> Bool) {
        let done = Flag()
        let task = Task {
            await budget.admit(estimate, untilReleased: untilReleased)
            await done.set()
        }
        return (task, {
            for _ in 0..<50 { await Task.yield() }
            return await done.value
        })
    }

    @Test func aLoadBeyondTheBudgetGoesAheadAloneAndIsKeptWhenFirst() async {
        let budget = ListingBudget(limit: 10)
        await budget.admit(25)
        #expect(await budget.loaded(0, estimate: 25, entries: 25), "the first mailbox is kept, whatever its size")
        await budget.admit(5)
        #expect(await budget.loaded(1, estimate: 5, entries: 5) == false, "nothing fits beside 25 entries")
        #expect(await budget.isHeld(0))
        #expect(await budget.isHeld(1) == false)
    }

    @Test func aSecondLoadWaitsUntilTheFirstEnds() async {
        let budget = ListingBudget(limit: 10)
        await budget.admit(6)
        let (second, isAdmitted) = await admitted(budget, 6)
        #expect(await isAdmitted() == false, "6 + 6 is over 10 while the first runs")
        #expect(await budget.loaded(0, estimate: 6, entries: 2))
        await second.value
        #expect(await budget.peak <= 10)
    }

    @Test func propagationWaitsForKeptEntriesToBeReleased() async {
        let budget = ListingBudget(limit: 10)
        await budget.admit(8)
        #expect(await budget.loaded(0, estimate: 8, entries: 8))
        // Loading: nothing runs, so it goes ahead (and would spill).
        let (_, loading) = await admitted(budget, 5)
        #expect(await loading())
        await budget.finished(estimate: 5)
        // Propagating: it waits for the kept mailbox.
        let (reload, propagating) = await admitted(budget, 5, untilReleased: true)
        #expect(await propagating() == false)
        await budget.release(0)
        await reload.value
    }
}

private actor Flag {
    private(set) var value = false
    func set() { value = true }
}
