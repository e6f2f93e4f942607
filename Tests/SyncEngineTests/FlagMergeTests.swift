import SyncEngine
import SyncState
import Testing

@Suite("Flag merge")
struct FlagMergeTests {
    /// Every combination of (state has flag, far has flag, near has flag).
    @Test(arguments: [false, true], [false, true])
    func mergeOfEveryCombination(inFar: Bool, inNear: Bool) {
        for inBase in [false, true] {
            let flag = "\\Flagged"
            let merged = FlagMerge.merge(
                base: inBase ? [flag] : .none, far: inFar ? [flag] : .none, near: inNear ? [flag] : .none)
            // Additions from either side win; removals apply where the other
            // side left the flag alone (or removed it too).
            let expected = inBase ? (inFar && inNear) : (inFar || inNear)
            #expect(merged.contains(flag) == expected, "base \(inBase) far \(inFar) near \(inNear)")
        }
    }

    /// The same eight combinations at once through the reconciler: one
    /// message carries one flag per combination, so the plan must update
    /// each side by exactly the flags the rule gives.
    @Test func reconcilerAppliesTheMergeToEachFlag() throws {
        var base: [String] = [], far: [String] = [], near: [String] = []
        var expected: [String] = []
        for combination in 0..<8 {
            let name = "$c\(combination)"
            let (b, f, n) = (combination & 4 != 0, combination & 2 != 0, combination & 1 != 0)
            if b { base.append(name) }
            if f { far.append(name) }
            if n { near.append(name) }
            if b ? (f && n) : (f || n) { expected.append(name) }
        }
        let pair = StatePair(id: 1, keys: Sides(far: .uid(1), near: .name("a")), flags: MessageFlags(base), size: 10)
        let input = ReconcileInput(
            account: "test", mailbox: "INBOX", pairs: [pair],
            listings: Sides(far: .full([MessageInfo(key: .uid(1), flags: MessageFlags(far), size: 10)]),
                            near: .full([MessageInfo(key: .name("a"), flags: MessageFlags(near), size: 10)])))
        let plan = try Reconciler.reconcile(input)
        #expect(plan.agreedFlags[1] == MessageFlags(expected))
        let farChange = try #require(plan.flagChanges.far.first)
        #expect(farChange.add == MessageFlags(expected.filter { !far.contains($0) }))
        #expect(farChange.remove == MessageFlags(far.filter { !expected.contains($0) }))
        let nearChange = try #require(plan.flagChanges.near.first)
        #expect(nearChange.add == MessageFlags(expected.filter { !near.contains($0) }))
        #expect(nearChange.remove == MessageFlags(near.filter { !expected.contains($0) }))
        #expect(plan.conflicts.count == 1, "both sides changed differently")
    }

    @Test func recentIsNeverSyncedAndSystemFlagCaseIsIgnored() throws {
        let pair = StatePair(id: 1, keys: Sides(far: .uid(1), near: .name("a")), flags: ["\\Seen"], size: 10)
        let input = ReconcileInput(
            account: "test", mailbox: "INBOX", pairs: [pair],
            listings: Sides(far: .full([MessageInfo(key: .uid(1), flags: ["\\SEEN", "\\Recent"], size: 10)]),
                            near: .full([MessageInfo(key: .name("a"), flags: ["\\Seen"], size: 10)])))
        #expect(try Reconciler.reconcile(input).isEmpty)
    }

    @Test func sideWithoutKeywordsNeitherAddsNorRemovesThem() throws {
        let pair = StatePair(id: 1, keys: Sides(far: .uid(1), near: .name("a")), flags: ["$Work"], size: 10)
        let input = ReconcileInput(
            account: "test", mailbox: "INBOX", pairs: [pair],
            listings: Sides(far: .full([MessageInfo(key: .uid(1), flags: ["$Work", "\\Seen"], size: 10)]),
                            near: .full([MessageInfo(key: .name("a"), flags: .none, size: 10)])),
            keywords: Sides(far: true, near: false))
        let plan = try Reconciler.reconcile(input)
        #expect(plan.flagChanges.far.isEmpty)
        #expect(plan.flagChanges.near == [FlagChange(keys: [.name("a")], add: ["\\Seen"], remove: .none)])
        #expect(plan.agreedFlags[1] == ["$Work", "\\Seen"])
    }
}
