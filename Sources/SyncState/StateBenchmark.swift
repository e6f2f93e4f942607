import Foundation

/// Measurements of the state store that the `ferrymail-bench` executable runs,
/// kept beside the code they measure so they exercise the real open path
/// (lock, WAL, `synchronous = FULL`, migrations).
public enum StateBenchmark {
    public struct Result: Sendable, CustomStringConvertible {
        public var count: Int
        public var batchSize: Int
        public var seconds: Double
        /// Pairs stored per second, commits included.
        public var rate: Double

        public var description: String {
            String(format: "inserted %d pairs in batches of %d: %.3f s, %.0f pairs/s", count, batchSize, seconds, rate)
        }
    }

    /// Inserts `count` message pairs, `batchSize` per transaction, into a new
    /// state file in `directory` (which must not already hold one) — the
    /// shape of an initial sync of a large mailbox — and reports the rate.
    /// The file is left in place for inspection; the caller owns `directory`.
    public static func insertPairs(count: Int = 100_000, batchSize: Int = 5_000, in directory: String) throws -> Result {
        precondition(count > 0 && batchSize > 0, "count and batchSize must be positive")
        let store = try StateStore.open(at: directory + "/state.sqlite")
        defer { try? store.close() }
        let account = try store.account(named: "bench")
        let mailbox = try store.upsertMailboxPair(account: account.id!, farName: "INBOX", nearName: "INBOX")

        // Built before the clock starts: we measure the store, not the generator.
        let flags: MessageFlags = ["\\Seen"]
        var batches: [[NewPair]] = []
        var batch: [NewPair] = []
        batch.reserveCapacity(batchSize)
        for index in 0..<count {
            let size = Int64(2_000 + index % 50_000)
            let internalDate = Int64(1_700_000_000 + index)
            batch.append(NewPair(
                farUid: UInt32(index + 1), nearName: "1700000000.M\(index)P4242.bench", flags: flags,
                size: size, internalDate: internalDate, messageId: "<\(index).bench@example.org>"))
            if batch.count == batchSize {
                batches.append(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { batches.append(batch) }

        let clock = ContinuousClock()
        let start = clock.now
        for batch in batches {
            try store.recordPairs(batch, in: mailbox.id!)
        }
        let elapsed = clock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Result(count: count, batchSize: batchSize, seconds: seconds, rate: Double(count) / seconds)
    }
}
