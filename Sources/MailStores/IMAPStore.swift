import IMAPClient
import IMAPCodec
import Logging
import NIOCore
import SyncEngine
import SyncState

/// The far side: a `MailStore` over one IMAP connection, keyed by UID.
///
/// The protocol strategy is fixed once per connection from the server's
/// capabilities (`FastPaths`, the same value `ferrymail check` prints):
/// - **Listing**: LIST with `RETURN (SPECIAL-USE STATUS (UIDVALIDITY UIDNEXT
///   MESSAGES HIGHESTMODSEQ))` when LIST-STATUS is offered, else one STATUS
///   per mailbox, pipelined (on Dovecot, INBOX's ahead of the LIST, which is
///   faster there than LIST-STATUS); the engine skips mailboxes whose status
///   equals the committed watermark without selecting them.
/// - **Changes**: with QRESYNC, `UID FETCH 1:* (…) (CHANGEDSINCE m VANISHED)`
///   on the mailbox `select` just opened — the same data `SELECT … (QRESYNC
///   (v m))` would return, without a second SELECT, since the engine selects
///   before it lists; with CONDSTORE only, `UID FETCH … (CHANGEDSINCE m)`
///   pipelined with `UID SEARCH ALL`, whose gaps below the old UIDNEXT are the
///   expunges (a superset; the engine ignores keys it never paired); without
///   either, a full `UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)`.
/// - **Bodies** stream from one `UID FETCH` per batch into the sink; uploads
///   stream from the writer into the APPEND literal, with backpressure both ways.
///
/// Mailbox names are display (Unicode) names; the connection encodes them.
/// Operations that depend on the selected mailbox are serialized; append
/// writers run beside them (APPEND names its mailbox). A connection the
/// server or a cancelled append ended is reopened on the next operation.
public actor IMAPStore: MailStore {
    /// What the store did, for tests and `--verbose` summaries.
    public struct Statistics: Sendable, Hashable {
        public var selects = 0
        public var fetchedBodies = 0
        public var appends = 0
        public var reconnects = 0
        /// Parts of a mailbox listed (`messages(in:after:limit:)`).
        public var listedPages = 0
    }

    public nonisolated let capabilities: StoreCapabilities
    /// APPENDs in flight at once: enough to cover a round trip plus the
    /// server's fsync of the previous messages on a fast link, few enough
    /// that a failure leaves little to find again.
    static let appendWindow = 16
    public nonisolated let account: String
    /// The strategy chosen from the server's capabilities.
    public nonisolated let fastPaths: FastPaths
    public private(set) var statistics = Statistics()

    private let configuration: IMAPConfiguration
    private let serverCapabilities: Set<Capability>
    private let logger: Logger
    private var session: IMAPSession
    private var selected: (name: String, uidValidity: UInt32?, exists: UInt32, uidNext: UInt32?)?
    /// PERMANENTFLAGS `\*` per mailbox, from its last SELECT; a mailbox not
    /// yet selected is assumed to keep keywords.
    private var keywordsByMailbox: [String: Bool] = [:]
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    private init(configuration: IMAPConfiguration, account: String, session: IMAPSession, serverCapabilities: Set<Capability>,
                 fastPaths: FastPaths, logger: Logger) {
        self.configuration = configuration
        self.account = account
        self.session = session
        self.serverCapabilities = serverCapabilities
        self.fastPaths = fastPaths
        self.logger = logger
        // MOVE is always offered to the engine: without the MOVE extension the
        // store copies and expunges on the server, which beats downloading and
        // uploading the message again.
        // Keywords: decided per mailbox from the PERMANENTFLAGS of its SELECT
        // (`MailboxStatus.keywords`); nothing is selected up front.
        capabilities = StoreCapabilities(keyKind: .uid, move: true, keysSurviveMove: false, keywords: true,
                                         appendWindow: Self.appendWindow)
    }

    /// Connects, authenticates and reads what the server offers. Nothing is
    /// selected: a run that finds every mailbox unchanged in LIST-STATUS
    /// never opens one.
    public static func open(configuration: IMAPConfiguration, account: String? = nil,
                            logger: Logger = Logger(label: "ferrymail.imapstore")) async throws -> IMAPStore {
        let account = account ?? configuration.accountName ?? configuration.credentials?.user ?? configuration.host
        let session: IMAPSession
        do {
            session = try await IMAPSession.open(configuration)
        } catch {
            throw MailStoreError.imap(account: account, mailbox: nil, operation: "connecting to \(configuration.host):\(configuration.port)", cause: "\(error)")
        }
        let connection = session.connection
        let capabilities = await connection.capabilities
        let fastPaths = FastPaths(capabilities: capabilities, enabled: await connection.enabledExtensions,
                                  compressionActive: await connection.isCompressionActive,
                                  serverName: await connection.serverID?["name"])
        return IMAPStore(configuration: configuration, account: account, session: session, serverCapabilities: capabilities,
                         fastPaths: fastPaths, logger: logger)
    }

    // MARK: - Mailboxes

    public func listMailboxes() async throws -> [MailboxInfo] {
        try await exclusively(nil, "LIST") { connection in
            var items: [StatusAttribute] = [.uidValidity, .uidNext, .messages]
            if self.fastPaths.changeLoading != .fullFlags { items.append(.highestModSeq) }
            let listed = try await connection.list(pattern: "*", options: ListOptions(returnSpecialUse: true, returnStatus: items),
                                                   inboxStatusFirst: self.fastPaths.folderStatus == .inboxStatusFirst)
            return listed.map { entry in
                let selectable = !entry.attributes.contains(.noSelect) && !entry.attributes.contains(.nonExistent)
                let name = entry.name.uppercased() == "INBOX" ? "INBOX" : entry.name
                let status = entry.status.map { status in
                    EngineMailboxStatus(uidValidity: status.uidValidity, uidNext: status.uidNext,
                                        highestModSeq: status.highestModSeq.map(Self.modSeq),
                                        messageCount: status.messages.map(Int.init))
                }
                return MailboxInfo(name: name, role: entry.specialUse.map { SpecialUse(rawValue: $0.rawValue) },
                                   delimiter: entry.entry.delimiter, selectable: selectable, status: selectable ? status : nil)
            }
        }
    }

    public func createMailbox(_ name: String, role: SpecialUse?) async throws {
        try await exclusively(name, "CREATE") { connection in
            do {
                try await connection.create(name, specialUse: role.map { [MailboxAttribute($0.rawValue)] } ?? [])
            } catch IMAPClientError.commandFailed(_, _, _, .alreadyExists?) {
                return
            }
            // Mail clients that show subscribed folders only should see it too.
            try? await connection.subscribe(name)
        }
    }

    public func deleteMailbox(_ name: String) async throws {
        try await exclusively(name, "DELETE") { connection in
            if self.selected?.name == name {
                try await connection.unselect()
                self.selected = nil
            }
            do {
                try await connection.delete(name)
            } catch IMAPClientError.commandFailed(_, _, _, .nonExistent?) {
                return
            }
            try? await connection.unsubscribe(name)
        }
    }

    public func select(_ mailbox: String) async throws -> EngineMailboxStatus {
        try await exclusively(mailbox, "SELECT") { connection in
            try await self.open(mailbox, connection)
        }
    }

    @discardableResult
    private func open(_ mailbox: String, _ connection: IMAPConnection) async throws -> EngineMailboxStatus {
        let info = try await connection.select(mailbox, parameters: SelectParameters(condStore: fastPaths.changeLoading != .fullFlags))
        selected = (mailbox, info.uidValidity, info.exists, info.uidNext)
        statistics.selects += 1
        // Read-write SELECT: EXAMINE would report no permanent flags at all.
        let keywords = info.permanentFlags.contains(.wildcard)
        keywordsByMailbox[mailbox] = keywords
        return EngineMailboxStatus(uidValidity: info.uidValidity, uidNext: info.uidNext,
                                   highestModSeq: info.highestModSeq.map(Self.modSeq), messageCount: Int(info.exists),
                                   keywords: keywords)
    }

    private func ensureSelected(_ mailbox: String, _ connection: IMAPConnection) async throws {
        if selected?.name != mailbox { try await open(mailbox, connection) }
    }

    // MARK: - Listing messages

    private static let listingItems: [FetchItem] = [.uid, .flags, .rfc822Size, .internalDate]
    /// Beyond this many UID gaps a CONDSTORE-only delta is not worth it: a
    /// full listing is smaller than the "vanished" superset.
    private static let maximumGaps = 100_000
    /// The most messages a `UID SEARCH ALL` without ESEARCH is asked to
    /// list: at up to 11 bytes a UID, its line stays within 64 KB.
    private static let largestPlainSearch: UInt32 = 5_000
    /// EXISTS only sizes the listing's first allocation: a server claiming
    /// billions of messages must not make it reserve gigabytes.
    private static let maximumReserved = 100_000

    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        try await exclusively(mailbox, "UID FETCH (listing)") { connection in
            try await self.ensureSelected(mailbox, connection)
            if let watermark, let since = watermark.highestModSeq, since > 0,
               let validity = self.selected?.uidValidity, watermark.uidValidity == validity {
                switch self.fastPaths.changeLoading {
                case .qresync:
                    let listing = ListingCollector(expected: 0)
                    let result = try await connection.uidFetch(.all, items: Self.listingItems, changedSince: UInt64(since), vanished: true,
                                                               sink: listing, retainingMessages: false)
                    return .delta(changed: await listing.taken(), vanished: result.vanished.map { MessageKey.uid($0) })
                case .condStore:
                    // Without ESEARCH, UID SEARCH ALL answers with one line of
                    // every UID, which passes the parser's 64 KB line limit
                    // from about 13,000 messages: such a folder is listed whole.
                    guard self.serverCapabilities.contains(.esearch) || self.serverCapabilities.contains(.imap4rev2)
                        || (self.selected?.exists ?? 0) <= Self.largestPlainSearch else { break }
                    // Both commands go out before either answer is awaited.
                    let listing = ListingCollector(expected: 0)
                    async let changed = connection.uidFetch(.all, items: Self.listingItems, changedSince: UInt64(since),
                                                            sink: listing, retainingMessages: false)
                    async let present = connection.uidSearch(.all)
                    let (_, search) = try await (changed, present)
                    let limit = watermark.uidNext.map { $0 > 0 ? $0 - 1 : 0 } ?? search.uids.max ?? 0
                    if let gaps = Self.gaps(in: search.uids, upTo: limit) {
                        return .delta(changed: await listing.taken(), vanished: gaps.map { MessageKey.uid($0) })
                    }
                case .fullFlags:
                    break
                }
            }
            let listing = ListingCollector(expected: min(Int(self.selected?.exists ?? 0), Self.maximumReserved))
            _ = try await connection.uidFetch(.all, items: Self.listingItems, sink: listing, retainingMessages: false)
            return .full(await listing.taken())
        }
    }

    /// `UID FETCH a:b` of windows of UIDs, up to the UIDNEXT of the SELECT,
    /// until one holds messages. A window spans as many UIDs as hold `limit`
    /// messages at the mailbox's average density (UIDs in use per message),
    /// at most 8 × `limit`, so a page holds at most that many entries
    /// whatever the server sends. No `UID SEARCH`: without ESEARCH its
    /// answer is one line of every UID, over the parser's 64 KB line limit
    /// from about 13,000 messages. By UID, not message number, so an expunge
    /// by another client between two pages skips nothing. A UID space so
    /// sparse that it would take more than four windows a page (plus 16) is
    /// not paged: nil, and the engine lists the mailbox whole.
    public func messages(in mailbox: String, after key: MessageKey?, limit: Int) async throws -> [MessageInfo]? {
        let first: UInt32
        switch key {
        case nil: first = 1
        case .uid(let uid) where uid < UInt32.max: first = uid + 1
        case .uid: return []
        case .name(let name): throw MailStoreError.wrongKeyKind(account: account, mailbox: mailbox, key: .name(name))
        }
        let limit = max(1, limit)
        return try await exclusively(mailbox, "UID FETCH (listing)") { connection in
            try await self.ensureSelected(mailbox, connection)
            guard let selected = self.selected, let uidNext = selected.uidNext else { return nil }
            let used = max(1, Int(uidNext) - 1), messages = max(1, Int(selected.exists))
            let span = min(8 * limit, max(limit, Int((Double(limit) * Double(used) / Double(messages)).rounded(.up))))
            if key == nil, used / span > 4 * (messages / limit + 1) + 16 { return nil }
            var start = UInt64(first)
            while start < UInt64(uidNext) {
                let end = min(start + UInt64(span) - 1, UInt64(uidNext) - 1)
                self.statistics.listedPages += 1
                let listing = ListingCollector(expected: 0)
                _ = try await connection.uidFetch(UIDSet(UInt32(start)...UInt32(end)), items: Self.listingItems, sink: listing,
                                                  retainingMessages: false)
                var page = await listing.taken()
                if !page.isEmpty {
                    if !zip(page, page.dropFirst()).allSatisfy({ $0.key < $1.key }) { page.sort { $0.key < $1.key } }
                    return page
                }
                start = end + 1
            }
            return []
        }
    }

    /// UIDs in `1...limit` missing from `present`, or nil when there are too many.
    static func gaps(in present: UIDSet, upTo limit: UInt32) -> [UInt32]? {
        var gaps: [UInt32] = []
        var next: UInt32 = 1
        for range in present.ranges {
            guard next <= limit else { break }
            if range.lowerBound > next {
                let end = min(range.lowerBound - 1, limit)
                if gaps.count + Int(end - next) + 1 > maximumGaps { return nil }
                gaps.append(contentsOf: next...end)
            }
            if range.upperBound == UInt32.max { return gaps }
            next = max(next, range.upperBound + 1)
        }
        if next <= limit {
            if gaps.count + Int(limit - next) + 1 > maximumGaps { return nil }
            gaps.append(contentsOf: next...limit)
        }
        return gaps
    }

    static func info(_ message: FetchedMessage) -> MessageInfo? {
        guard let uid = message.uid else { return nil }
        return MessageInfo(key: .uid(uid), flags: Self.syncFlags(message.flags ?? []), size: Int64(message.rfc822Size ?? 0),
                           internalDate: message.internalDate?.secondsSinceEpoch)
    }

    public func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        let set = try uidSet(keys, mailbox)
        guard !set.isEmpty else { return [:] }
        return try await exclusively(mailbox, "UID FETCH (Message-ID)") { connection in
            try await self.ensureSelected(mailbox, connection)
            let collector = HeaderCollector()
            _ = try await connection.uidFetch(set, items: [.uid, .headerFields(["MESSAGE-ID"])], sink: collector)
            return await collector.messageIds
        }
    }

    // MARK: - Bodies

    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        let set = try uidSet(keys, mailbox)
        guard !set.isEmpty else { return }
        try await exclusively(mailbox, "UID FETCH (bodies)") { connection in
            try await self.ensureSelected(mailbox, connection)
            // UID is asked first so it precedes the literal: `begin` needs the key.
            let result = try await connection.uidFetch(set, items: [.uid, .body(specifier: "", peek: true)],
                                                       sink: SinkBridge(target: sink))
            self.statistics.fetchedBodies += result.messages.count
        }
    }

    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        let connection = try await wrap(mailbox, "APPEND") { try await self.liveConnection() }
        let pipe = AppendPipe()
        let message = AppendMessage(flags: imapFlags(envelope.flags, in: mailbox),
                                    internalDate: envelope.internalDate.map { InternalDate(secondsSinceEpoch: $0, zoneMinutes: 0) },
                                    size: UInt64(max(0, envelope.size)))
        // Queued here, in call order, so pipelined appends keep the order the
        // engine streams their bodies in; the task streams and awaits it.
        let pending = try await wrap(mailbox, "APPEND") { try await connection.beginAppend(to: mailbox, message: message, body: pipe) }
        let task = Task<AppendResult, any Error> {
            do {
                let result = try await pending.result()
                await pipe.close(failure: nil)
                return result
            } catch {
                await pipe.close(failure: error)
                throw error
            }
        }
        statistics.appends += 1
        return IMAPAppendWriter(store: self, mailbox: mailbox, size: envelope.size, pipe: pipe, task: task)
    }

    // MARK: - Changing messages

    public func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {
        var commands: [(UIDSet, StoreOperation, [Flag])] = []
        for change in changes {
            let set = try uidSet(change.keys, mailbox)
            for part in set.chunked(maxRanges: 500) {
                let add = imapFlags(change.add, in: mailbox), remove = imapFlags(change.remove, in: mailbox)
                if !add.isEmpty { commands.append((part, .add, add)) }
                if !remove.isEmpty { commands.append((part, .remove, remove)) }
            }
        }
        guard !commands.isEmpty else { return }
        try await exclusively(mailbox, "UID STORE") { connection in
            try await self.ensureSelected(mailbox, connection)
            // Pipelined: every STORE is on the wire before the first answer.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (set, operation, flags) in commands {
                    group.addTask { _ = try await connection.uidStore(set, operation, flags: flags, silent: true) }
                }
                try await group.waitForAll()
            }
        }
    }

    public func expunge(_ keys: [MessageKey], in mailbox: String) async throws {
        let set = try uidSet(keys, mailbox)
        guard !set.isEmpty else { return }
        try await exclusively(mailbox, "EXPUNGE") { connection in
            try await self.ensureSelected(mailbox, connection)
            try await self.expunge(set, mailbox, connection)
        }
    }

    /// With UIDPLUS exactly `set` is expunged. Without it, EXPUNGE would also
    /// remove messages another client flagged `\Deleted` but chose to keep,
    /// so it is issued only when no such message exists; otherwise ours stay
    /// flagged `\Deleted` (hidden by most clients) and a warning says why.
    private func expunge(_ set: UIDSet, _ mailbox: String, _ connection: IMAPConnection) async throws {
        for part in set.chunked(maxRanges: 500) {
            _ = try await connection.uidStore(part, .add, flags: [.deleted], silent: true)
        }
        if fastPaths.expunge == .uidExpunge {
            for part in set.chunked(maxRanges: 500) { try await connection.uidExpunge(part) }
            return
        }
        let flagged = try await connection.uidSearch(.deleted)
        let foreign = flagged.uids.filter { !set.contains($0) }
        if foreign.isEmpty {
            _ = try await connection.expunge()
        } else {
            logger.warning("server has no UIDPLUS and other messages in the mailbox are flagged \\Deleted; messages removed by the sync stay flagged \\Deleted until the mailbox is expunged by a mail client", metadata: [
                    "ferrymail.account": "\(account)", "ferrymail.mailbox": "\(mailbox)",
                    "ferrymail.flagged": "\(set)", "ferrymail.others": "\(foreign.count)"])
        }
    }

    public func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        let set = try uidSet(keys, source)
        guard !set.isEmpty else { return [:] }
        return try await exclusively(source, "MOVE to \(destination)") { connection in
            try await self.ensureSelected(source, connection)
            var moved: [MessageKey: MessageKey] = [:]
            for part in set.chunked(maxRanges: 500) {
                let result: CopyResult
                if self.fastPaths.move == .move || self.fastPaths.expunge == .uidExpunge {
                    // The client falls back to COPY + \Deleted + UID EXPUNGE without MOVE.
                    result = try await connection.uidMove(part, to: destination)
                } else {
                    result = try await connection.uidCopy(part, to: destination)
                    try await self.expunge(part, source, connection)
                }
                if self.fastPaths.appendUID, let from = result.source, let to = result.destination {
                    // RFC 4315: the two sets correspond in order.
                    for (old, new) in zip(from, to) { moved[.uid(old)] = .uid(new) }
                }
            }
            return moved
        }
    }

    /// An APPEND is durable on the server once it answered OK, which
    /// `finish()` already waited for.
    public func flush(_ mailbox: String) async throws {}

    public func close() async {
        await session.close()
    }

    // MARK: - Flags

    /// IMAP flags as the sync state spells them; `\Recent` belongs to one
    /// session and is never synced.
    static func syncFlags(_ flags: [Flag]) -> SyncState.MessageFlags {
        FlagMerge.normalized(SyncState.MessageFlags(flags.filter { $0 != .recent && $0 != .wildcard }.map(\.rawValue)))
    }

    /// Flags to send; keywords are left out when the server cannot keep them.
    func imapFlags(_ flags: SyncState.MessageFlags, in mailbox: String) -> [Flag] {
        let keywords = keywordsByMailbox[mailbox] ?? true
        return flags.names.map(Flag.init).filter { flag in
            flag != .recent && flag != .wildcard && (keywords || !flag.isKeyword)
        }
    }

    private static func modSeq(_ value: UInt64) -> Int64 { Int64(exactly: value) ?? Int64.max }

    // MARK: - Plumbing

    private nonisolated func uidSet(_ keys: [MessageKey], _ mailbox: String) throws -> UIDSet {
        var uids: [UInt32] = []
        uids.reserveCapacity(keys.count)
        for key in keys {
            guard case .uid(let uid) = key else { throw MailStoreError.wrongKeyKind(account: account, mailbox: mailbox, key: key) }
            uids.append(uid)
        }
        return UIDSet(uids)
    }

    /// The connection, reopened when the previous one ended (server BYE,
    /// network loss, an append cancelled inside its literal).
    private func liveConnection() async throws -> IMAPConnection {
        if await session.connection.terminationError == nil { return session.connection }
        await session.close()
        logger.info("reconnecting", metadata: ["ferrymail.account": "\(account)"])
        session = try await IMAPSession.open(configuration)
        selected = nil
        statistics.reconnects += 1
        return session.connection
    }

    /// Runs `body` alone among the store's operations (the selected mailbox
    /// is shared state), mapping errors to `MailStoreError`.
    private func exclusively<T: Sendable>(_ mailbox: String?, _ operation: String,
                                          _ body: (IMAPConnection) async throws -> T) async throws -> T {
        if busy {
            await withCheckedContinuation { waiters.append($0) }
        } else {
            busy = true
        }
        defer {
            if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
        }
        return try await wrap(mailbox, operation) {
            let connection = try await self.liveConnection()
            return try await body(connection)
        }
    }

    private func wrap<T>(_ mailbox: String?, _ operation: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as MailStoreError {
            throw error
        } catch {
            throw MailStoreError.imap(account: account, mailbox: mailbox, operation: operation, cause: "\(error)")
        }
    }

    nonisolated func appendFailed(_ mailbox: String, _ error: any Error) -> MailStoreError {
        if let error = error as? MailStoreError { return error }
        return .imap(account: account, mailbox: mailbox, operation: "APPEND", cause: "\(error)")
    }
}

/// Forwards a streamed UID FETCH into the engine's sink, message by message.
struct SinkBridge: FetchSink {
    let target: any MessageSink

    func bodyBegin(message: FetchedMessage, section: BodySection, size: UInt64) async throws {
        guard let uid = message.uid else {
            throw BridgeError.uidAfterBody(sequenceNumber: message.sequenceNumber)
        }
        try await target.begin(.uid(uid), size: Int64(size))
    }

    func bodyBytes(_ bytes: ByteBuffer) async throws {
        try await target.write(Array(bytes.readableBytesView))
    }

    func bodyEnd() async throws {
        try await target.end()
    }

    enum BridgeError: Error, CustomStringConvertible {
        case uidAfterBody(sequenceNumber: UInt32)
        var description: String {
            "the server sent message \(sequenceNumber)'s body before its UID, so it cannot be attributed; "
                + "this server's FETCH response order is not supported"
        }
        private var sequenceNumber: UInt32 { if case .uidAfterBody(let n) = self { n } else { 0 } }
    }
}

/// Turns each FETCH response of a listing into its entry as it arrives. The
/// client then keeps no raw responses, so a 60,000-message listing is held
/// once (about 5 MB), not also as `FetchedMessage`s with their flag arrays;
/// and reserving the mailbox's EXISTS up front saves the doublings' copies.
actor ListingCollector: FetchSink {
    private var messages: [MessageInfo] = []

    init(expected: Int) { messages.reserveCapacity(expected) }

    func messageFinished(_ message: FetchedMessage) async throws {
        if let info = IMAPStore.info(message) { messages.append(info) }
    }

    /// The listing, handed over: the collector keeps no reference to it.
    func taken() -> [MessageInfo] {
        defer { messages = [] }
        return messages
    }
}

/// Collects the Message-IDs of `HEADER.FIELDS (MESSAGE-ID)` sections per
/// UID, each read as its section ends, so that only the IDs are held, not
/// every section's bytes until the last one arrives. The UID is taken from
/// `bodyBegin` (it is requested before the section, so it precedes it), not
/// from `messageFinished`, whose metadata currently lags one message behind
/// in the client.
actor HeaderCollector: FetchSink {
    private(set) var messageIds: [MessageKey: String] = [:]
    private var current: [UInt8] = []
    private var uid: UInt32?

    func bodyBegin(message: FetchedMessage, section: BodySection, size: UInt64) async throws {
        uid = message.uid
        current.removeAll(keepingCapacity: true)
    }
    func bodyBytes(_ bytes: ByteBuffer) async throws { current += bytes.readableBytesView }
    func bodyEnd() async throws {
        if let uid, let id = HeaderFields.value(of: "Message-ID", in: current) { messageIds[.uid(uid)] = id }
        uid = nil
        current.removeAll(keepingCapacity: true)
    }
}

/// Bridges the engine pushing chunks (`AppendWriter.write`) to the client
/// pulling them (`AppendBodySource.nextChunk`) while it writes the literal.
/// At most `limit` bytes wait in between, so a fast source waits for the
/// socket instead of filling memory.
actor AppendPipe: AppendBodySource {
    private let limit = 256 * 1024
    private var chunks: [ByteBuffer] = []
    private var buffered = 0
    private var ended = false
    private var closed = false
    private var failure: (any Error)?
    private var reader: CheckedContinuation<ByteBuffer?, any Error>?
    private var writers: [CheckedContinuation<Void, Never>] = []

    func push(_ bytes: [UInt8]) async throws {
        while buffered >= limit, !closed {
            await withCheckedContinuation { writers.append($0) }
        }
        if let failure { throw failure }
        if closed { throw CancellationError() }
        let chunk = ByteBuffer(bytes: bytes)
        if let reader {
            self.reader = nil
            reader.resume(returning: chunk)
        } else {
            chunks.append(chunk)
            buffered += bytes.count
        }
    }

    /// No more chunks: the reader gets nil once the buffer is drained.
    func end() {
        ended = true
        if chunks.isEmpty, let reader {
            self.reader = nil
            reader.resume(returning: nil)
        }
    }

    /// The APPEND completed or failed; pending and later pushes return or throw.
    func close(failure: (any Error)?) {
        closed = true
        if self.failure == nil { self.failure = failure }
        if let reader {
            self.reader = nil
            if let failure { reader.resume(throwing: failure) } else { reader.resume(returning: nil) }
        }
        for writer in writers { writer.resume() }
        writers = []
    }

    func nextChunk() async throws -> ByteBuffer? {
        if !chunks.isEmpty {
            let chunk = chunks.removeFirst()
            buffered -= chunk.readableBytes
            if !writers.isEmpty { writers.removeFirst().resume() }
            return chunk
        }
        if let failure { throw failure }
        if ended || closed { return nil }
        return try await withCheckedThrowingContinuation { reader = $0 }
    }
}

/// One APPEND in progress: the command is already submitted and the client
/// pulls the literal from the pipe as `write` fills it.
actor IMAPAppendWriter: AppendWriter {
    private enum Phase {
        case writing
        /// `endBody()` was called; the answer is awaited in `finish()`.
        case bodyEnded
        /// Finished, cancelled, or ended by a failed write.
        case over
    }

    private let store: IMAPStore
    private let mailbox: String
    private let size: Int64
    private let pipe: AppendPipe
    private let task: Task<AppendResult, any Error>
    private var written: Int64 = 0
    private var phase = Phase.writing

    init(store: IMAPStore, mailbox: String, size: Int64, pipe: AppendPipe, task: Task<AppendResult, any Error>) {
        self.store = store
        self.mailbox = mailbox
        self.size = size
        self.pipe = pipe
        self.task = task
    }

    func write(_ chunk: [UInt8]) async throws {
        guard case .writing = phase else { throw MailStoreError.appendFinished(account: store.account, mailbox: mailbox) }
        guard !chunk.isEmpty else { return }
        guard written + Int64(chunk.count) <= size else {
            await cancel()
            throw MailStoreError.appendSizeMismatch(account: store.account, mailbox: mailbox, announced: size, received: written + Int64(chunk.count))
        }
        written += Int64(chunk.count)
        do {
            try await pipe.push(chunk)
        } catch {
            // The APPEND ended early: its own error says why.
            phase = .over
            _ = try await answer()
            throw store.appendFailed(mailbox, error)
        }
    }

    func endBody() async throws {
        guard case .writing = phase else { throw MailStoreError.appendFinished(account: store.account, mailbox: mailbox) }
        guard written == size else {
            await cancel()
            throw MailStoreError.appendSizeMismatch(account: store.account, mailbox: mailbox, announced: size, received: written)
        }
        phase = .bodyEnded
        await pipe.end()
    }

    func finish() async throws -> MessageKey? {
        switch phase {
        case .writing: try await endBody()
        case .bodyEnded: break
        case .over: throw MailStoreError.appendFinished(account: store.account, mailbox: mailbox)
        }
        phase = .over
        let result = try await answer()
        // APPENDUID is trusted only from a server that announced UIDPLUS
        // (RFC 4315); otherwise the engine finds the message by identity.
        if store.fastPaths.appendUID, let uids = result.uids, uids.count == 1, let uid = uids.min { return .uid(uid) }
        return nil
    }

    /// The server's answer; a `NO` concerns this message only (too large,
    /// over quota) and leaves the connection usable.
    private func answer() async throws -> AppendResult {
        do {
            return try await task.value
        } catch IMAPClientError.commandFailed(_, let status, let text, let code) where status == .no {
            throw MessageRejected(reason: code.map { "[\($0)] \(text)" } ?? text)
        } catch {
            throw store.appendFailed(mailbox, error)
        }
    }

    /// Abandons the message. The server is inside the literal by now, which
    /// cannot be ended early: the client drops the connection, so the
    /// message is never stored, and the store reconnects on its next call.
    func cancel() async {
        guard case .writing = phase else { return }
        phase = .over
        await pipe.close(failure: CancellationError())
        _ = try? await task.value
    }
}
