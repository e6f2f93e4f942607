import SyncEngine
import SyncState
import Testing

/// The reconciler's views and identity index work on listings in the order a
/// store gives them (a Maildir's is the directory's), with duplicate
/// identities and keys that come back after vanishing.
@Suite("Reconciler views and identity matching")
struct ReconcilerIndexTests {
    private func message(_ key: MessageKey, id: String?, size: Int64 = 100, date: Int64? = nil, flags: MessageFlags = .none) -> MessageInfo {
        MessageInfo(key: key, flags: flags, size: size, internalDate: date, messageId: id)
    }

    @Test func unsortedListingsPairByIdentityAndCopyTheRestInKeyOrder() throws {
        // Two far messages share Message-ID and size; the date picks the one.
        let far = [
            message(.uid(9), id: "<dup@x>", date: 2_000),
            message(.uid(3), id: "<only-far@x>"),
            message(.uid(5), id: "<dup@x>", date: 1_000),
            message(.uid(1), id: nil),
        ]
        let near = [
            message(.name("n2"), id: "<only-near@x>"),
            message(.name("n1"), id: "<dup@x>", date: 1_000, flags: ["\\Seen"]),
        ]
        let plan = try Reconciler.reconcile(ReconcileInput(account: "test", mailbox: "INBOX", pairs: [],
                                                           listings: Sides(far: .full(far), near: .full(near))))
        #expect(plan.pairings.map { $0.messages.map(\.key) } == [Sides(far: .uid(5), near: .name("n1"))])
        #expect(plan.copies.near.map(\.source.key) == [.uid(1), .uid(3), .uid(9)], "in UID order, the paired one left out")
        #expect(plan.copies.far.map(\.source.key) == [.name("n2")])
    }

    @Test func equalCandidatesPairLowestKeysFirst() throws {
        let far = [message(.uid(7), id: "<same@x>"), message(.uid(4), id: "<same@x>"), message(.uid(8), id: "<same@x>")]
        let near = [message(.name("b"), id: "<same@x>"), message(.name("a"), id: "<same@x>")]
        let plan = try Reconciler.reconcile(ReconcileInput(account: "test", mailbox: "INBOX", pairs: [],
                                                           listings: Sides(far: .full(far), near: .full(near))))
        #expect(plan.pairings.map { $0.messages.map(\.key) } == [Sides(far: .uid(4), near: .name("a")), Sides(far: .uid(7), near: .name("b"))])
        #expect(plan.copies.near.map(\.source.key) == [.uid(8)])
        #expect(plan.copies.far.isEmpty)
    }

    @Test func nothingUnpairedOnOneSideCopiesEverythingWithoutMatching() throws {
        let far = (1...50).reversed().map { message(.uid(UInt32($0)), id: "<m\($0)@x>") }
        let plan = try Reconciler.reconcile(ReconcileInput(account: "test", mailbox: "INBOX", pairs: [],
                                                           listings: Sides(far: .full(far), near: .full([]))))
        #expect(plan.pairings.isEmpty)
        #expect(plan.copies.near.map(\.source.key) == (1...50).map { .uid(UInt32($0)) })
    }

    @Test func deltaViewDropsVanishedKeysAndTakesChangedOnes() {
        let pairs = [
            StatePair(id: 1, keys: Sides(far: .uid(1), near: .name("a")), flags: ["\\Seen"], size: 10, messageId: "<a@x>"),
            StatePair(id: 2, keys: Sides(far: .uid(2), near: .name("b")), flags: .none, size: 20, messageId: "<b@x>"),
        ]
        let input = ReconcileInput(
            account: "test", mailbox: "INBOX", pairs: pairs,
            listings: Sides(far: .delta(changed: [message(.uid(2), id: nil, size: 20, flags: ["\\FLAGGED"]), message(.uid(3), id: "<c@x>")],
                                        vanished: [.uid(1)]),
                            near: .full([message(.name("b"), id: nil, size: 20), message(.name("b"), id: nil, size: 20, flags: ["\\Seen"])])))
        let views = Reconciler.currentViews(of: input)
        #expect(views.far.count == 2)
        #expect(views.far[.uid(1)] == nil)
        #expect(views.far[.uid(2)]?.flags == ["\\Flagged"], "flags normalized")
        #expect(views.far[.uid(2)]?.messageId == "<b@x>", "Message-ID kept from the state")
        #expect(views.far[.uid(3)]?.size == 100)
        #expect(views.near.count == 1)
        #expect(views.near[.name("b")]?.flags == ["\\Seen"], "a key listed twice keeps its last entry")
        #expect(views.far.messages(where: { _ in true }).map(\.key).sorted() == [.uid(2), .uid(3)])
    }
}
