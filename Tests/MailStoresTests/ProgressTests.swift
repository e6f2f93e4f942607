@testable import MailStores
import SyncEngine
import Testing

@Suite("Transfer progress")
struct ProgressTests {
    @Test func timeLeftFollowsTheAverageRateOverThePlannedBytes() {
        var snapshot = TransferProgress.Snapshot()
        snapshot.plannedBytes = 1_000
        #expect(snapshot.remaining == nil, "nothing moved yet: no rate")
        snapshot.bytes = 250
        snapshot.elapsed = .seconds(10)
        #expect(snapshot.remaining == .seconds(30))
        snapshot.bytes = 1_000
        #expect(snapshot.remaining == nil, "nothing left")
    }

    @Test func plansAddUp() async throws {
        let progress = TransferProgress()
        progress.observe(PlannedTransfers(mailbox: "INBOX", messages: Sides(far: 2, near: 3), bytes: Sides(far: 200, near: 300)))
        progress.observe(PlannedTransfers(mailbox: "Sent", messages: Sides(far: 0, near: 1), bytes: Sides(far: 0, near: 50)))
        var current = await progress.current()
        for _ in 0..<100 where current.plannedMessages < 6 {
            try await Task.sleep(for: .milliseconds(10))
            current = await progress.current()
        }
        #expect(current.plannedMessages == 6)
        #expect(current.plannedBytes == 550)
    }
}
