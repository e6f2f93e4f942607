import Logging
import SyncEngine
import SyncState
import Testing

/// Engine runs in tests log nothing: the simulated crashes would otherwise
/// print hundreds of expected error lines around the real test output.
let quietLogger = Logger(label: "ferrymail.test") { _ in SwiftLogNoOpLogHandler() }

/// A message body with a Message-ID, so copies can be recognised by content.
func body(_ id: String, extra: String = "") -> [UInt8] {
    Array("Message-ID: <\(id)@test>\r\nSubject: \(id)\r\n\r\nBody of \(id).\(extra)\r\n".utf8)
}

/// One side of a mailbox as tests compare it: message id → flags, with a
/// list so duplicates show.
typealias MailboxContent = [String: [MessageFlags]]

/// Both stores and the state of one account, as the engine leaves them.
struct Snapshot: Equatable, CustomStringConvertible {
    var far: [String: MailboxContent]
    var near: [String: MailboxContent]

    subscript(side: Side) -> [String: MailboxContent] { side == .far ? far : near }

    var description: String { "far: \(far)\nnear: \(near)" }
}

/// The account under test: an IMAP-like far store, a Maildir-like near
/// store and an in-memory sync state.
struct World {
    var far: MemoryStore
    var near: MemoryStore
    var state: StateStore

    init(far: MemoryStore.Configuration = .imap, near: MemoryStore.Configuration = .maildir,
         mailboxes: [String: SpecialUse?] = ["INBOX": nil]) throws {
        self.far = MemoryStore(far, mailboxes: mailboxes, firstUidValidity: 1000)
        self.near = MemoryStore(near, mailboxes: mailboxes, firstUidValidity: 5000)
        self.state = try StateStore.inMemory()
    }

    func store(_ side: Side) -> MemoryStore { side == .far ? far : near }

    /// Runs one sync, optionally with both stores sharing a fault schedule.
    @discardableResult
    func sync(_ options: SyncOptions = SyncOptions(), faults: FaultSchedule? = nil) async throws -> SyncReport {
        let far = self.far, near = self.near
        let farFactory: StoreFactory = {
            if let faults { return FaultInjectingStore(far, schedule: faults) }
            return far
        }
        let nearFactory: StoreFactory = {
            if let faults { return FaultInjectingStore(near, schedule: faults) }
            return near
        }
        let engine = SyncEngine(account: "test", state: state, far: farFactory, near: nearFactory, options: options,
                                logger: quietLogger)
        return try await engine.run()
    }

    func snapshot() async -> Snapshot {
        Snapshot(far: await content(far), near: await content(near))
    }

    private func content(_ store: MemoryStore) async -> [String: MailboxContent] {
        var result: [String: MailboxContent] = [:]
        for (mailbox, messages) in await store.contents() {
            var box: MailboxContent = [:]
            for message in messages {
                let text = String(decoding: message.body, as: UTF8.self)
                let id = text.split(separator: "\r\n").first.map(String.init) ?? text
                box[String(id.dropFirst("Message-ID: <".count).dropLast("@test>".count)), default: []].append(message.flags)
            }
            result[mailbox] = box
        }
        return result
    }

    /// Key of the message with this id in a mailbox.
    func key(_ id: String, on side: Side, in mailbox: String = "INBOX") async -> MessageKey? {
        let messages = await store(side).contents()[mailbox] ?? []
        return messages.first { String(decoding: $0.body, as: UTF8.self).contains("<\(id)@test>") }?.key
    }

    func setFlags(_ id: String, on side: Side, in mailbox: String = "INBOX", to flags: MessageFlags) async {
        guard let key = await key(id, on: side, in: mailbox) else { Issue.record("no message \(id) on \(side)"); return }
        await store(side).replaceFlags(of: key, in: mailbox, with: flags)
    }

    func delete(_ id: String, on side: Side, in mailbox: String = "INBOX") async {
        guard let key = await key(id, on: side, in: mailbox) else { Issue.record("no message \(id) on \(side)"); return }
        await store(side).remove(key, from: mailbox)
    }
}

/// A plan-free second run: nothing copied, flagged, deleted or moved.
func expectNothingChanged(_ report: SyncReport, sourceLocation: SourceLocation = #_sourceLocation) {
    for mailbox in report.mailboxes {
        #expect(mailbox.error == nil, "\(mailbox.farName): \(String(describing: mailbox.error))", sourceLocation: sourceLocation)
        #expect(mailbox.copied == Sides(far: 0, near: 0), "\(mailbox.farName) copied \(mailbox.copied)", sourceLocation: sourceLocation)
        #expect(mailbox.paired == 0, "\(mailbox.farName) paired \(mailbox.paired)", sourceLocation: sourceLocation)
        #expect(mailbox.flagsChanged == Sides(far: 0, near: 0), "\(mailbox.farName) flags \(mailbox.flagsChanged)", sourceLocation: sourceLocation)
        #expect(mailbox.deleted == Sides(far: 0, near: 0), "\(mailbox.farName) deleted \(mailbox.deleted)", sourceLocation: sourceLocation)
    }
    #expect(report.moves.isEmpty, "moves: \(report.moves)", sourceLocation: sourceLocation)
    #expect(report.folderChanges.isEmpty, "folders: \(report.folderChanges)", sourceLocation: sourceLocation)
    #expect(report.errors.isEmpty, "errors: \(report.errors)", sourceLocation: sourceLocation)
}

/// isync's run-tests.pl idea for one case: build the world with `setup`,
/// run, compare with `expected`; run again and require that nothing changes;
/// then, for every mutating store operation k of the clean run, rebuild the
/// world, crash after operation k, resume with a fresh engine over the same
/// state and stores, and require the same end state and a quiet next run.
func checkCase(
    _ name: String,
    options: SyncOptions = SyncOptions(),
    world make: () throws -> World = { try World() },
    setup: (World) async throws -> Void,
    expected: (Snapshot) -> Void,
    crashes: Bool = true,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let clean = try make()
    try await setup(clean)
    let counter = FaultSchedule()
    let first = try await clean.sync(options, faults: counter)
    #expect(first.allErrors.isEmpty, "\(name): \(first.allErrors.map(\.description))", sourceLocation: sourceLocation)
    let result = await clean.snapshot()
    expected(result)
    expectNothingChanged(try await clean.sync(options), sourceLocation: sourceLocation)
    #expect(await clean.snapshot() == result, "\(name): second run changed the stores", sourceLocation: sourceLocation)

    guard crashes else { return }
    let operations = await counter.mutations
    for k in 0..<operations {
        let world = try make()
        try await setup(world)
        let crashed = try await world.sync(options, faults: FaultSchedule(crashAfter: k + 1))
        #expect(!crashed.allErrors.isEmpty, "\(name): crash after operation \(k + 1) did not surface", sourceLocation: sourceLocation)
        let resumed = try await world.sync(options)
        #expect(resumed.allErrors.isEmpty, "\(name) crash \(k + 1): \(resumed.allErrors.map(\.description))", sourceLocation: sourceLocation)
        let after = await world.snapshot()
        #expect(after == result, "\(name): crash after operation \(k + 1) of \(operations) then resume gave\n\(after)\nexpected\n\(result)",
                sourceLocation: sourceLocation)
        expectNothingChanged(try await world.sync(options), sourceLocation: sourceLocation)
    }
}
