import SyncEngine
import SyncState
import Testing

/// Table cases after isync's run-tests.pl: initial far / near / state →
/// expected far / near after a run, each also run twice, crashed after every
/// mutating operation and resumed, and (where the rule is symmetric) with
/// the sides swapped.
@Suite("Sync cases")
struct EngineCaseTests {
    @Test(arguments: Side.allCases)
    func newMessagesAreCopiedBothWays(origin: Side) async throws {
        try await checkCase("new both ways from \(origin)") { world in
            await world.store(origin).deliver(body("a"), to: "INBOX", flags: ["\\Seen"])
            await world.store(origin.opposite).deliver(body("b"), to: "INBOX", flags: ["\\Flagged", "$Work"])
        } expected: { snapshot in
            for side in Side.allCases {
                #expect(snapshot[side]["INBOX"] == ["a": [["\\Seen"]], "b": [["$Work", "\\Flagged"]]])
            }
        }
    }

    @Test(arguments: Side.allCases)
    func flagChangesPropagateBothWaysWithTheMergeRule(changer: Side) async throws {
        try await checkCase("flags from \(changer)") { world in
            await world.store(changer).deliver(body("a"), to: "INBOX", flags: ["\\Seen"])
            await world.store(changer).deliver(body("b"), to: "INBOX", flags: ["\\Seen", "\\Flagged"])
            await world.store(changer).deliver(body("c"), to: "INBOX")
            try await world.sync()
            await world.setFlags("a", on: changer, to: ["\\Seen", "\\Answered"])          // addition
            await world.setFlags("b", on: changer, to: ["\\Seen"])                        // removal
            // Conflict: one side removes \Seen and adds $Work, the other adds \Flagged.
            await world.setFlags("c", on: changer, to: ["$Work"])
            await world.setFlags("c", on: changer.opposite, to: ["\\Flagged"])
        } expected: { snapshot in
            for side in Side.allCases {
                #expect(snapshot[side]["INBOX"]?["a"] == [["\\Answered", "\\Seen"]])
                #expect(snapshot[side]["INBOX"]?["b"] == [["\\Seen"]])
                #expect(snapshot[side]["INBOX"]?["c"] == [["$Work", "\\Flagged"]])
            }
        }
    }

    @Test func conflictingRemovalAndKeepingOfAFlagRemovesIt() async throws {
        try await checkCase("removal where the other side left the flag alone") { world in
            await world.far.deliver(body("a"), to: "INBOX", flags: ["\\Seen", "\\Flagged"])
            try await world.sync()
            await world.setFlags("a", on: .far, to: ["\\Flagged"])
            await world.setFlags("a", on: .near, to: ["\\Seen", "\\Flagged", "\\Answered"])
        } expected: { snapshot in
            #expect(snapshot.far["INBOX"]?["a"] == [["\\Answered", "\\Flagged"]])
            #expect(snapshot.near["INBOX"]?["a"] == [["\\Answered", "\\Flagged"]])
        }
    }

    @Test func deletedIsAnOrdinaryFlagUntilExpunged() async throws {
        try await checkCase("\\Deleted") { world in
            await world.far.deliver(body("a"), to: "INBOX")
            try await world.sync()
            await world.setFlags("a", on: .far, to: ["\\Deleted"])
        } expected: { snapshot in
            #expect(snapshot.near["INBOX"]?["a"] == [["\\Deleted"]])
            #expect(snapshot.far["INBOX"]?["a"] == [["\\Deleted"]])
        }
    }

    @Test(arguments: Side.allCases)
    func expungesPropagate(deleter: Side) async throws {
        try await checkCase("expunge on \(deleter)") { world in
            for id in ["a", "b", "c"] { await world.far.deliver(body(id), to: "INBOX") }
            try await world.sync()
            await world.delete("b", on: deleter)
        } expected: { snapshot in
            for side in Side.allCases {
                #expect(snapshot[side]["INBOX"] == ["a": [.none], "c": [.none]])
            }
        }
    }

    @Test func keepLocalNeverDeletesLocallyButPushesLocalDeletions() async throws {
        let options = SyncOptions(expungePolicy: .keepLocal)
        try await checkCase("keep-local", options: options) { world in
            for id in ["a", "b", "c"] { await world.far.deliver(body(id), to: "INBOX") }
            try await world.sync(options)
            await world.delete("a", on: .far)
            await world.delete("b", on: .near)
        } expected: { snapshot in
            #expect(snapshot.far["INBOX"] == ["c": [.none]])
            #expect(snapshot.near["INBOX"] == ["a": [.none], "c": [.none]])
        }
    }

    @Test func trashPolicyMovesInsteadOfExpunging() async throws {
        let options = SyncOptions(expungePolicy: .trash, mapping: MailboxMapping(nearNamesByRole: [.trash: "Trash"]))
        try await checkCase("trash", options: options, world: {
            try World(mailboxes: ["INBOX": nil, "Trash": .trash])
        }) { world in
            for id in ["a", "b"] { await world.far.deliver(body(id), to: "INBOX") }
            try await world.sync(options)
            await world.delete("a", on: .near)
        } expected: { snapshot in
            #expect(snapshot.far["INBOX"] == ["b": [.none]])
            #expect(snapshot.far["Trash"]?["a"] == [.none])
            #expect(snapshot.near["INBOX"] == ["b": [.none]])
        }
    }

    @Test func firstSyncPairsMessagesPresentOnBothSides() async throws {
        try await checkCase("first sync pairs equal messages") { world in
            await world.far.deliver(body("same"), to: "INBOX", flags: ["\\Seen"], internalDate: 1_700_000_000)
            await world.near.deliver(body("same"), to: "INBOX", flags: ["\\Flagged"], internalDate: 1_700_000_000)
            await world.far.deliver(body("farOnly"), to: "INBOX")
        } expected: { snapshot in
            for side in Side.allCases {
                #expect(snapshot[side]["INBOX"] == ["same": [["\\Flagged", "\\Seen"]], "farOnly": [.none]])
            }
        }
    }

    @Test(arguments: [true, false])
    func appendWithoutReturnedKeysNeverDuplicates(uidPlus: Bool) async throws {
        var far = MemoryStore.Configuration.imap
        far.appendReturnsKeys = uidPlus
        try await checkCase("UIDPLUS \(uidPlus)", world: { try World(far: far) }) { world in
            for id in ["a", "b", "c"] { await world.near.deliver(body(id), to: "INBOX", flags: ["\\Seen"]) }
        } expected: { snapshot in
            #expect(snapshot.far["INBOX"] == ["a": [["\\Seen"]], "b": [["\\Seen"]], "c": [["\\Seen"]]])
        }
    }

    @Test func deltaAndFullListingsGiveTheSameResult() async throws {
        func scenario(_ world: World) async throws {
            for id in ["a", "b", "c", "d"] { await world.far.deliver(body(id), to: "INBOX") }
            try await world.sync()
            await world.setFlags("a", on: .far, to: ["\\Seen"])
            await world.delete("b", on: .far)
            await world.far.deliver(body("e"), to: "INBOX")
            await world.setFlags("c", on: .near, to: ["\\Flagged"])
            await world.delete("d", on: .near)
        }
        var results: [Snapshot] = []
        for delta in [true, false] {
            var far = MemoryStore.Configuration.imap, near = MemoryStore.Configuration.maildir
            far.delta = delta
            near.delta = delta
            try await checkCase("delta \(delta)", world: { try World(far: far, near: near) }, setup: scenario) { results.append($0) }
        }
        #expect(results.count == 2)
        #expect(results.first == results.last)
        #expect(results.first?.far["INBOX"] == ["a": [["\\Seen"]], "c": [["\\Flagged"]], "e": [.none]])
    }

    @Test func keywordsSync() async throws {
        try await checkCase("keywords") { world in
            await world.far.deliver(body("a"), to: "INBOX", flags: ["$Label1"])
            try await world.sync()
            await world.setFlags("a", on: .near, to: ["$Label1", "$Label2"])
            await world.setFlags("a", on: .far, to: .none)
        } expected: { snapshot in
            for side in Side.allCases {
                #expect(snapshot[side]["INBOX"]?["a"] == [["$Label2"]])
            }
        }
    }
}
