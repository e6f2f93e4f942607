import Synchronization
import SyncEngine
import SyncState
import Testing

/// Copies that cannot or must not happen for one message — refused by the
/// destination, or above `max_message_size` — and uploads pipelined behind
/// their confirmations.
@Suite("Copies: refusals, size limit, pipelining")
struct CopyFailureTests {
    @Test func aRefusedMessageIsReportedWhileTheOthersAreCopied() async throws {
        var far = MemoryStore.Configuration.imap
        far.appendWindow = 4
        far.maximumAppendSize = 200
        let world = try World(far: far)
        await world.near.deliver(body("a"), to: "INBOX")
        await world.near.deliver(body("big", extra: String(repeating: "x", count: 500)), to: "INBOX")
        await world.near.deliver(body("c"), to: "INBOX", flags: ["\\Seen"])

        let first = try await world.sync()
        #expect(await world.snapshot().far["INBOX"] == ["a": [.none], "c": [["\\Seen"]]])
        #expect(first.mailbox("INBOX")?.copied.far == 2)
        #expect(!first.succeeded, "a refused message makes the run fail, never silently")
        guard case .messageRejected(_, "INBOX", .far, let message, _, let reason)? = first.allErrors.first else {
            Issue.record("expected messageRejected, got \(first.allErrors)")
            return
        }
        #expect(message.contains("big@test"))
        #expect(reason.contains("TOOBIG"))

        // The next run tries the refused one again and copies nothing twice.
        let second = try await world.sync()
        #expect(second.mailbox("INBOX")?.copied.far == 0)
        #expect(second.allErrors.count == 1, "\(second)")
        #expect(await world.snapshot().far["INBOX"]?.count == 2)
    }

    @Test(arguments: Side.allCases)
    func messagesAboveTheSizeLimitAreNotCopiedEitherWay(origin: Side) async throws {
        let world = try World()
        await world.store(origin).deliver(body("small"), to: "INBOX")
        await world.store(origin).deliver(body("large", extra: String(repeating: "y", count: 1_000)), to: "INBOX")

        let report = try await world.sync(SyncOptions(maxMessageSize: 500))
        #expect(await world.snapshot()[origin.opposite]["INBOX"] == ["small": [.none]])
        guard case .messageTooLarge(_, _, let side, let message, let size, 500)? = report.allErrors.first, message.contains("large@test") else {
            Issue.record("expected messageTooLarge, got \(report.allErrors)")
            return
        }
        #expect(side == origin.opposite)
        #expect(size > 1_000)
        #expect(report.allErrors.count == 1)
        // Nothing was deleted because of it, on either side, and every run says so again.
        #expect(await world.snapshot()[origin]["INBOX"]?.count == 2)
        let again = try await world.sync(SyncOptions(maxMessageSize: 500))
        #expect(again.allErrors.count == 1, "\(again.allErrors)")
        #expect(again.mailbox("INBOX")?.copied == Sides(far: 0, near: 0))
    }

    @Test func pipelinedUploadsSurviveACrashAtEveryStep() async throws {
        var far = MemoryStore.Configuration.imap
        far.appendWindow = 4
        let ids = (0..<9).map { "m\($0)" }
        try await checkCase("pipelined uploads", world: { try World(far: far) }) { world in
            for (index, id) in ids.enumerated() {
                await world.near.deliver(body(id), to: "INBOX", flags: index.isMultiple(of: 2) ? ["\\Seen"] : .none)
            }
        } expected: { snapshot in
            for side in Side.allCases {
                #expect(snapshot[side]["INBOX"]?.count == ids.count, "\(side): \(snapshot[side])")
                let duplicated = (snapshot[side]["INBOX"] ?? [:]).filter { $0.value.count != 1 }
                #expect(duplicated.isEmpty, "each message exactly once: \(duplicated)")
            }
        }
    }

    @Test func thePlanObserverHearsEachMailboxsCopiesBeforeTheyStart() async throws {
        let world = try World(mailboxes: ["INBOX": nil, "Sent": nil])
        await world.far.deliver(body("a"), to: "INBOX")
        await world.far.deliver(body("b"), to: "INBOX")
        await world.near.deliver(body("c"), to: "Sent")
        let heard = PlanLog()
        let far = world.far, near = world.near
        _ = try await SyncEngine(account: "test", state: world.state, far: { far }, near: { near }, logger: quietLogger,
                                 planObserver: { heard.add($0) }).run()
        let plans = heard.all.sorted { $0.mailbox < $1.mailbox }
        #expect(plans.map(\.mailbox) == ["INBOX", "Sent"])
        #expect(plans.map(\.messages) == [Sides(far: 0, near: 2), Sides(far: 1, near: 0)])
        #expect(plans[0].bytes.near == Int64(body("a").count + body("b").count))
    }

    @Test func aNoOpRunOpensNoHandleBeyondTheFolderListing() async throws {
        let names = (1...6).map { "Box\($0)" }
        let world = try World(mailboxes: Dictionary(uniqueKeysWithValues: names.map { ($0, nil) }))
        for name in names { await world.far.deliver(body(name), to: name) }
        try await world.sync()
        try await world.sync()  // settles the watermarks the first run could not prove
        let opened = OpenCounter()
        let far = world.far, near = world.near
        let report = try await SyncEngine(
            account: "test", state: world.state,
            far: { await opened.increment(); return far }, near: { near },
            options: SyncOptions(maxConcurrentMailboxes: 4), logger: quietLogger).run()
        let notSkipped = report.mailboxes.filter { !$0.skipped }.map(\.farName)
        #expect(notSkipped.isEmpty, "\(notSkipped)")
        #expect(await opened.count == 1, "only the handle that listed the folders")
    }
}

final class PlanLog: Sendable {
    private let plans = Mutex<[PlannedTransfers]>([])
    func add(_ plan: PlannedTransfers) { plans.withLock { $0.append(plan) } }
    var all: [PlannedTransfers] { plans.withLock { $0 } }
}
