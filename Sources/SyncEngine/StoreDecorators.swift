import SyncState

/// The crash a `FaultInjectingStore` simulates.
public struct SimulatedCrash: Error, Sendable, Equatable, CustomStringConvertible {
    public var afterOperation: Int
    public var description: String { "simulated crash after mutating operation \(afterOperation)" }
}

/// Counts mutating store operations across the stores that share it and
/// "crashes" after the Nth: that operation completes (its effect is durable
/// in the store) and then every further call on every sharing store throws,
/// as if the process had died right after the server or file system
/// confirmed. Without a limit it only counts, which gives the number of
/// crash points of a clean run.
public actor FaultSchedule {
    public let crashAfter: Int?
    public private(set) var mutations = 0
    public private(set) var crashed = false

    public init(crashAfter: Int? = nil) {
        self.crashAfter = crashAfter
    }

    func checkAlive() throws {
        if crashed { throw SimulatedCrash(afterOperation: mutations) }
    }

    func recordMutation() throws {
        try checkAlive()
        mutations += 1
        if let crashAfter, mutations >= crashAfter {
            crashed = true
            throw SimulatedCrash(afterOperation: mutations)
        }
    }
}

/// A decorator that crashes after the Nth mutating operation (see
/// `FaultSchedule`). An append counts once, when it completes.
public struct FaultInjectingStore: MailStore {
    public let inner: any MailStore
    public let schedule: FaultSchedule

    public init(_ inner: any MailStore, schedule: FaultSchedule) {
        self.inner = inner
        self.schedule = schedule
    }

    public var capabilities: StoreCapabilities { inner.capabilities }

    public func listMailboxes() async throws -> [MailboxInfo] {
        try await schedule.checkAlive()
        return try await inner.listMailboxes()
    }

    public func createMailbox(_ name: String, role: SpecialUse?) async throws {
        try await schedule.checkAlive()
        try await inner.createMailbox(name, role: role)
        try await schedule.recordMutation()
    }

    public func deleteMailbox(_ name: String) async throws {
        try await schedule.checkAlive()
        try await inner.deleteMailbox(name)
        try await schedule.recordMutation()
    }

    public func select(_ mailbox: String) async throws -> MailboxStatus {
        try await schedule.checkAlive()
        return try await inner.select(mailbox)
    }

    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        try await schedule.checkAlive()
        return try await inner.messages(in: mailbox, changedSince: watermark)
    }

    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?, comparedWith recorded: RecordedMessages) async throws
        -> MessageListing {
        try await schedule.checkAlive()
        return try await inner.messages(in: mailbox, changedSince: watermark, comparedWith: recorded)
    }

    public func messages(in mailbox: String, after key: MessageKey?, limit: Int) async throws -> [MessageInfo]? {
        try await schedule.checkAlive()
        return try await inner.messages(in: mailbox, after: key, limit: limit)
    }

    public func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        try await schedule.checkAlive()
        return try await inner.messageIds(for: keys, in: mailbox)
    }

    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        try await schedule.checkAlive()
        try await inner.fetch(keys, in: mailbox, into: sink)
    }

    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        try await schedule.checkAlive()
        return FaultInjectingAppendWriter(inner: try await inner.beginAppend(to: mailbox, envelope), schedule: schedule)
    }

    public func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {
        try await schedule.checkAlive()
        try await inner.setFlags(changes, in: mailbox)
        try await schedule.recordMutation()
    }

    public func expunge(_ keys: [MessageKey], in mailbox: String) async throws {
        try await schedule.checkAlive()
        try await inner.expunge(keys, in: mailbox)
        try await schedule.recordMutation()
    }

    public func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        try await schedule.checkAlive()
        let moved = try await inner.move(keys, from: source, to: destination)
        try await schedule.recordMutation()
        return moved
    }

    public func flush(_ mailbox: String) async throws {
        try await schedule.checkAlive()
        try await inner.flush(mailbox)
    }

    public func settledStatus(of mailbox: String) async throws -> MailboxStatus? {
        try await schedule.checkAlive()
        return try await inner.settledStatus(of: mailbox)
    }

    public func close() async {
        await inner.close()
    }
}

struct FaultInjectingAppendWriter: AppendWriter {
    let inner: any AppendWriter
    let schedule: FaultSchedule

    func write(_ chunk: [UInt8]) async throws {
        try await schedule.checkAlive()
        try await inner.write(chunk)
    }

    /// A simulated crash abandons the inner append, as a real one would
    /// drop its connection.
    func endBody() async throws {
        do { try await schedule.checkAlive() } catch { await inner.cancel(); throw error }
        try await inner.endBody()
    }

    func finish() async throws -> MessageKey? {
        do { try await schedule.checkAlive() } catch { await inner.cancel(); throw error }
        let key = try await inner.finish()
        try await schedule.recordMutation()
        return key
    }

    func cancel() async {
        await inner.cancel()
    }
}

/// The dry-run guard: forwards reads and refuses every mutation with
/// `SyncError.dryRunViolation`. The engine in dry-run mode plans without
/// calling mutations at all; this decorator makes sure a bug cannot turn a
/// dry run into a real one.
public struct ReadOnlyStore: MailStore {
    public let inner: any MailStore
    public let account: String

    public init(_ inner: any MailStore, account: String) {
        self.inner = inner
        self.account = account
    }

    public var capabilities: StoreCapabilities { inner.capabilities }

    public func listMailboxes() async throws -> [MailboxInfo] { try await inner.listMailboxes() }
    public func select(_ mailbox: String) async throws -> MailboxStatus { try await inner.select(mailbox) }
    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        try await inner.messages(in: mailbox, changedSince: watermark)
    }
    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?, comparedWith recorded: RecordedMessages) async throws
        -> MessageListing {
        try await inner.messages(in: mailbox, changedSince: watermark, comparedWith: recorded)
    }
    public func messages(in mailbox: String, after key: MessageKey?, limit: Int) async throws -> [MessageInfo]? {
        try await inner.messages(in: mailbox, after: key, limit: limit)
    }
    public func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        try await inner.messageIds(for: keys, in: mailbox)
    }
    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        try await inner.fetch(keys, in: mailbox, into: sink)
    }
    public func createMailbox(_ name: String, role: SpecialUse?) async throws {
        throw SyncError.dryRunViolation(account: account, operation: "CREATE \(name)")
    }
    public func deleteMailbox(_ name: String) async throws {
        throw SyncError.dryRunViolation(account: account, operation: "DELETE \(name)")
    }
    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        throw SyncError.dryRunViolation(account: account, operation: "APPEND to \(mailbox)")
    }
    public func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {
        throw SyncError.dryRunViolation(account: account, operation: "STORE in \(mailbox)")
    }
    public func expunge(_ keys: [MessageKey], in mailbox: String) async throws {
        throw SyncError.dryRunViolation(account: account, operation: "EXPUNGE in \(mailbox)")
    }
    public func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        throw SyncError.dryRunViolation(account: account, operation: "MOVE from \(source) to \(destination)")
    }
    /// A dry run appends nothing, so there is nothing to make durable.
    public func flush(_ mailbox: String) async throws {}
    public func settledStatus(of mailbox: String) async throws -> MailboxStatus? { try await inner.settledStatus(of: mailbox) }

    public func close() async { await inner.close() }
}
