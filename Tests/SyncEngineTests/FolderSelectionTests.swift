import SyncEngine
import SyncState
import Testing

/// `ferrymail sync --folder`: `SyncOptions.onlyFolders` limits a run to the
/// named mailbox pairs and leaves every other mailbox as it is.
@Suite("Sync --folder")
struct FolderSelectionTests {
    static let everything: [String: SpecialUse?] = ["INBOX": nil, "Work": nil, "Old": nil, "Gone": nil]

    /// After a full sync: new mail in INBOX and Work, `Old` and `Gone` deleted
    /// locally (each would be deleted on the server by a full run), a new
    /// server mailbox and a new local folder (each would be created).
    static func diverge(_ world: World) async throws {
        for name in everything.keys { await world.far.deliver(body("first-\(name)"), to: name) }
        try await world.sync()
        await world.far.deliver(body("inbox-new"), to: "INBOX")
        await world.far.deliver(body("work-new"), to: "Work")
        await world.near.removeMailbox("Old")
        await world.near.removeMailbox("Gone")
        await world.far.addMailbox("ServerOnly")
        await world.far.deliver(body("s"), to: "ServerOnly")
        await world.near.addMailbox("LocalOnly")
        await world.near.deliver(body("l"), to: "LocalOnly")
    }

    @Test func onlyTheNamedPairIsSynced() async throws {
        let options = SyncOptions(onlyFolders: ["Work"])
        try await checkCase("--folder Work", options: options, world: { try World(mailboxes: Self.everything) },
                            setup: Self.diverge) { snapshot in
            #expect(snapshot.near["Work"] == ["first-Work": [.none], "work-new": [.none]], "the named pair is synced")
            #expect(snapshot.near["INBOX"] == ["first-INBOX": [.none]], "another pair is not synced")
            #expect(snapshot.far["Old"] == ["first-Old": [.none]], "another folder's deletion is not propagated")
            #expect(snapshot.near["ServerOnly"] == nil, "another server folder is not created locally")
            #expect(snapshot.far["LocalOnly"] == nil, "another local folder is not created on the server")
        }

        let world = try World(mailboxes: Self.everything)
        try await Self.diverge(world)
        let report = try await world.sync(options)
        #expect(report.mailboxes.map(\.farName) == ["Work"])
        #expect(report.folderChanges.isEmpty)
        // The folders left out are untouched, not forgotten: a full run then
        // does what it would have done.
        let full = try await world.sync()
        #expect(Set(full.folderChanges) == [.deleted(side: .far, name: "Old"), .deleted(side: .far, name: "Gone"),
                                            .created(side: .near, name: "ServerOnly"), .created(side: .far, name: "LocalOnly")])
        #expect(full.mailbox("INBOX")?.copied.near == 1)
        #expect(full.mailbox("Work")?.copied == Sides(far: 0, near: 0))
        expectNothingChanged(try await world.sync())
    }

    @Test func aNamedFolderDeletionIsPropagated() async throws {
        let world = try World(mailboxes: Self.everything)
        try await Self.diverge(world)
        let report = try await world.sync(SyncOptions(onlyFolders: ["Old"]))
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        #expect(report.folderChanges == [.deleted(side: .far, name: "Old")])
        #expect(report.mailboxes.isEmpty)
        #expect(await world.far.mailboxNames() == ["Gone", "INBOX", "ServerOnly", "Work"], "only the named folder is deleted")
        // Gone from both sides now, so naming it again is the usage error.
        await #expect(throws: SyncError.self) { try await world.sync(SyncOptions(onlyFolders: ["Old"])) }
    }

    /// Either side's name selects the pair, and the named folder is created
    /// on the side that lacks it: the local `Sent` is Gmail's
    /// `[Gmail]/Sent Mail`, `inbox` is `INBOX`.
    @Test(arguments: ["Sent", "[Gmail]/Sent Mail", "inbox", "Projects/Ferry"])
    func eitherNameSelects(folder: String) async throws {
        let mapping = MailboxMapping(nearNamesByRole: [.sent: "Sent"])
        let world = try World()
        await world.far.deliver(body("i"), to: "INBOX")
        await world.far.addMailbox("[Gmail]/Sent Mail", role: .sent)
        await world.far.deliver(body("s"), to: "[Gmail]/Sent Mail")
        await world.near.addMailbox("Projects/Ferry")
        await world.near.deliver(body("p"), to: "Projects/Ferry")
        let report = try await world.sync(SyncOptions(mapping: mapping, onlyFolders: [folder]))
        #expect(report.allErrors.isEmpty, "\(report.allErrors)")
        let expected: (far: String, near: String) = switch folder {
        case "inbox": ("INBOX", "INBOX")
        case "Projects/Ferry": ("Projects/Ferry", "Projects/Ferry")
        default: ("[Gmail]/Sent Mail", "Sent")
        }
        #expect(report.mailboxes.map(\.farName) == [expected.far])
        let snapshot = await world.snapshot()
        #expect(snapshot.far[expected.far] == snapshot.near[expected.near] && snapshot.far[expected.far]?.count == 1)
        #expect(Set(snapshot.far.keys) == ["INBOX", "[Gmail]/Sent Mail", expected.far], "no other folder created")
        #expect(Set(snapshot.near.keys) == ["INBOX", "Projects/Ferry", expected.near], "no other folder created")
        if folder != "inbox" { #expect(report.folderChanges.count == 1, "\(report.folderChanges)") }
    }

    @Test func aNameMatchingNoFolderIsAnErrorAndNothingIsSynced() async throws {
        let world = try World(mailboxes: ["INBOX": nil, "Work": nil])
        await world.far.deliver(body("a"), to: "INBOX")
        await world.far.addMailbox("ServerOnly")
        let before = await world.snapshot()
        let expected = SyncError.noSuchFolder(account: "test", folders: ["work", "Nope"],
                                              existing: ["INBOX", "ServerOnly", "Work"])
        await #expect(throws: expected) {
            try await world.sync(SyncOptions(onlyFolders: ["INBOX", "work", "Nope"]))
        }
        #expect(await world.snapshot() == before, "nothing created or copied, not even for the valid name")
        #expect(expected.description.contains("account test") && expected.description.contains("\"Nope\"")
                    && expected.description.contains("INBOX, ServerOnly, Work"))
    }
}
