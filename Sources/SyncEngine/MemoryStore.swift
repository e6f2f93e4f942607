import SyncState

/// A complete `MailStore` in memory, for table tests of the engine and for
/// the adapters' contract tests.
///
/// Capabilities are switches, so every fallback path of the engine can be
/// exercised: UID keys (IMAP-like) or name keys that survive moves
/// (Maildir-like), delta listings on or off (QRESYNC), keys returned by
/// append on or off (UIDPLUS), MOVE on or off, keywords on or off. Bodies are
/// kept as bytes and handed out in small chunks, so streaming is exercised too.
public actor MemoryStore: MailStore {
    public struct Configuration: Sendable, Hashable {
        public var keyKind: MessageKeyKind
        /// Delta listings since a watermark (QRESYNC-like).
        public var delta: Bool
        /// `finish()` of an append returns the new key (UIDPLUS-like).
        public var appendReturnsKeys: Bool
        public var move: Bool
        public var keywords: Bool
        /// Reports a UIDVALIDITY (IMAP does; Maildir does not).
        public var reportsUidValidity: Bool
        /// Keeps the engine's transfer id with appended messages and reports
        /// it (as a Maildir store does in file names).
        public var keepsTransferIds: Bool
        /// LIST carries status (LIST-STATUS / a scan token).
        public var listsStatus: Bool
        /// Listings leave Message-ID out; the engine must ask for it.
        public var lazyMessageIds: Bool
        /// Bytes per chunk handed to a sink.
        public var chunkSize: Int
        /// Lists part of a mailbox (`messages(in:after:limit:)`), as the
        /// IMAP store does.
        public var partialListings: Bool
        /// Appends awaiting confirmation at once (`StoreCapabilities.appendWindow`).
        public var appendWindow: Int
        /// Appends of larger bodies are refused with `MessageRejected`, as an
        /// IMAP server answers `NO [TOOBIG]`.
        public var maximumAppendSize: Int?

        public init(keyKind: MessageKeyKind, delta: Bool = true, appendReturnsKeys: Bool = true, move: Bool = true,
                    keywords: Bool = true, reportsUidValidity: Bool? = nil, keepsTransferIds: Bool? = nil,
                    listsStatus: Bool = true, lazyMessageIds: Bool = true, chunkSize: Int = 16,
                    appendWindow: Int = 1, maximumAppendSize: Int? = nil) {
            self.appendWindow = appendWindow
            self.maximumAppendSize = maximumAppendSize
            self.keyKind = keyKind
            self.delta = delta
            self.appendReturnsKeys = appendReturnsKeys
            self.move = move
            self.keywords = keywords
            self.reportsUidValidity = reportsUidValidity ?? (keyKind == .uid)
            self.keepsTransferIds = keepsTransferIds ?? (keyKind == .name)
            self.listsStatus = listsStatus
            self.lazyMessageIds = lazyMessageIds
            self.chunkSize = max(1, chunkSize)
            self.partialListings = keyKind == .uid
        }

        /// An IMAP server with UIDPLUS, CONDSTORE/QRESYNC and MOVE.
        public static let imap = Configuration(keyKind: .uid)
        /// A Maildir: names survive moves, no UIDVALIDITY.
        public static let maildir = Configuration(keyKind: .name)
    }

    /// A message as the store holds it.
    public struct StoredMessage: Sendable, Hashable {
        public var key: MessageKey
        public var body: [UInt8]
        public var flags: MessageFlags
        public var internalDate: Int64?
        public var transferId: String?
        var modSeq: Int64
    }

    struct Box {
        var role: SpecialUse?
        var uidValidity: UInt32
        var uidNext: UInt32 = 1
        var modSeq: Int64 = 1
        var messages: [MessageKey: StoredMessage] = [:]
        var vanished: [MessageKey: Int64] = [:]
    }

    public nonisolated let capabilities: StoreCapabilities
    public nonisolated let configuration: Configuration
    private var boxes: [String: Box] = [:]
    private var nameCounter = 0
    private var nextValidity: UInt32
    /// SELECTs and scans served, so tests can check the unchanged-mailbox fast path.
    public private(set) var selectCount: [String: Int] = [:]
    /// Message listings served, per mailbox, so tests can see a mailbox
    /// listed again after the `ListingBudget` spilled it.
    public private(set) var listingCount: [String: Int] = [:]
    /// Pages listed (`messages(in:after:limit:)`), per mailbox.
    public private(set) var pageCount: [String: Int] = [:]
    /// Message-ID requests and body fetches, in order, so tests can check
    /// which Message-IDs are read, and when.
    public private(set) var reads: [Read] = []

    public enum Read: Sendable, Hashable {
        case messageIds([MessageKey], mailbox: String)
        case bodies([MessageKey], mailbox: String)
    }

    public init(_ configuration: Configuration, mailboxes: [String: SpecialUse?] = ["INBOX": nil], firstUidValidity: UInt32 = 1000) {
        self.configuration = configuration
        capabilities = StoreCapabilities(
            keyKind: configuration.keyKind, move: configuration.move,
            keysSurviveMove: configuration.keyKind == .name, keywords: configuration.keywords,
            appendWindow: configuration.appendWindow)
        nextValidity = firstUidValidity
        for (name, role) in mailboxes {
            boxes[name] = Box(role: role, uidValidity: nextValidity)
            nextValidity += 1
        }
    }

    // MARK: - Test API: another client acting on the store

    /// Adds a mailbox without going through the engine.
    public func addMailbox(_ name: String, role: SpecialUse? = nil) {
        if boxes[name] == nil { boxes[name] = Box(role: role, uidValidity: allocateValidity()) }
    }

    /// Removes a mailbox and its messages, as another client would.
    public func removeMailbox(_ name: String) {
        boxes[name] = nil
    }

    /// Delivers a message as another client or the MTA would.
    @discardableResult
    public func deliver(_ body: [UInt8], to mailbox: String, flags: MessageFlags = .none, internalDate: Int64? = 1_700_000_000) -> MessageKey {
        addMailbox(mailbox)
        return store(body: body, in: mailbox, flags: flags, internalDate: internalDate, transferId: nil)
    }

    /// Replaces a message's flags, as another client would.
    public func replaceFlags(of key: MessageKey, in mailbox: String, with flags: MessageFlags) {
        guard var message = boxes[mailbox]?.messages[key] else { return }
        message.flags = storable(flags)
        message.modSeq = bump(mailbox)
        boxes[mailbox]!.messages[key] = message
    }

    /// Expunges a message, as another client would.
    public func remove(_ key: MessageKey, from mailbox: String) {
        guard boxes[mailbox]?.messages[key] != nil else { return }
        boxes[mailbox]!.messages[key] = nil
        boxes[mailbox]!.vanished[key] = bump(mailbox)
    }

    /// Moves a message to another mailbox as a mail client would: a Maildir
    /// keeps the base name, IMAP assigns a new UID.
    @discardableResult
    public func relocate(_ key: MessageKey, from source: String, to destination: String) -> MessageKey? {
        guard let message = boxes[source]?.messages[key] else { return nil }
        addMailbox(destination)
        remove(key, from: source)
        return insert(message, in: destination)
    }

    /// A new UIDVALIDITY: every message gets a new key, as after a server
    /// rebuilt its index (or a Maildir's folder was recreated by copying).
    public func renumber(_ mailbox: String) {
        guard var box = boxes[mailbox] else { return }
        let messages = box.messages.values.sorted { $0.key < $1.key }
        box.uidValidity = allocateValidity()
        box.uidNext = 1
        box.messages = [:]
        box.vanished = [:]
        boxes[mailbox] = box
        for var message in messages {
            message.key = newKey(in: mailbox)
            message.modSeq = bump(mailbox)
            boxes[mailbox]!.messages[message.key] = message
        }
    }

    /// Every mailbox's messages, sorted by key.
    public func contents() -> [String: [StoredMessage]] {
        boxes.mapValues { $0.messages.values.sorted { $0.key < $1.key } }
    }

    public func mailboxNames() -> [String] { boxes.keys.sorted() }

    // MARK: - MailStore

    public func listMailboxes() async throws -> [MailboxInfo] {
        boxes.keys.sorted().map { name in
            MailboxInfo(name: name, role: boxes[name]!.role, delimiter: "/",
                        status: configuration.listsStatus ? status(of: name) : nil)
        }
    }

    public func createMailbox(_ name: String, role: SpecialUse?) async throws {
        addMailbox(name, role: role)
    }

    public func deleteMailbox(_ name: String) async throws {
        boxes[name] = nil
    }

    public func select(_ mailbox: String) async throws -> MailboxStatus {
        try requireBox(mailbox)
        selectCount[mailbox, default: 0] += 1
        return status(of: mailbox)
    }

    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        let box = try requireBox(mailbox)
        listingCount[mailbox, default: 0] += 1
        let since = watermark.flatMap { $0.highestModSeq ?? $0.scanToken.flatMap(Self.modSeq(fromToken:)) }
        if configuration.delta, let watermark, let since, watermark.uidValidity == reportedValidity(box) {
            let changed = box.messages.values.filter { $0.modSeq > since }.sorted { $0.key < $1.key }.map(info)
            let vanished = box.vanished.filter { $0.value > since }.keys.sorted()
            return .delta(changed: changed, vanished: vanished)
        }
        return .full(box.messages.values.sorted { $0.key < $1.key }.map(info))
    }

    public func messages(in mailbox: String, after key: MessageKey?, limit: Int) async throws -> [MessageInfo]? {
        guard configuration.partialListings else { return nil }
        let box = try requireBox(mailbox)
        pageCount[mailbox, default: 0] += 1
        return box.messages.values.filter { key == nil || key! < $0.key }.sorted { $0.key < $1.key }.prefix(max(1, limit)).map(info)
    }

    public func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        let box = try requireBox(mailbox)
        reads.append(.messageIds(keys, mailbox: mailbox))
        var result: [MessageKey: String] = [:]
        for key in keys {
            if let message = box.messages[key], let id = Self.messageId(in: message.body) { result[key] = id }
        }
        return result
    }

    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        let box = try requireBox(mailbox)
        reads.append(.bodies(keys, mailbox: mailbox))
        for key in keys {
            guard let message = box.messages[key] else { continue }
            try await sink.begin(key, size: Int64(message.body.count))
            var offset = 0
            while offset < message.body.count {
                let end = min(offset + configuration.chunkSize, message.body.count)
                try await sink.write(Array(message.body[offset..<end]))
                offset = end
            }
            try await sink.end()
        }
    }

    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        try requireBox(mailbox)
        return MemoryAppendWriter(store: self, mailbox: mailbox, envelope: envelope)
    }

    public func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {
        try requireBox(mailbox)
        for change in changes {
            for key in change.keys {
                guard let message = boxes[mailbox]!.messages[key] else { continue }
                let flags = FlagMerge.union(FlagMerge.subtracting(message.flags, change.remove), change.add)
                replaceFlags(of: key, in: mailbox, with: flags)
            }
        }
    }

    public func expunge(_ keys: [MessageKey], in mailbox: String) async throws {
        try requireBox(mailbox)
        for key in keys { remove(key, from: mailbox) }
    }

    public func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        guard configuration.move else { throw MemoryStoreError.unsupported("MOVE") }
        try requireBox(source)
        try requireBox(destination)
        var moved: [MessageKey: MessageKey] = [:]
        for key in keys {
            if let newKey = relocate(key, from: source, to: destination) { moved[key] = newKey }
        }
        return configuration.appendReturnsKeys || configuration.keyKind == .name ? moved : [:]
    }

    /// Memory is as durable as it gets here.
    public func flush(_ mailbox: String) async throws {}

    public func close() async {}

    // MARK: - Internals

    func completeAppend(mailbox: String, envelope: AppendEnvelope, body: [UInt8]) throws -> MessageKey? {
        try requireBox(mailbox)
        guard body.count == envelope.size else {
            throw MemoryStoreError.sizeMismatch(announced: envelope.size, received: body.count)
        }
        let key = store(body: body, in: mailbox, flags: envelope.flags, internalDate: envelope.internalDate,
                        transferId: configuration.keepsTransferIds ? envelope.transferId : nil)
        return configuration.appendReturnsKeys || configuration.keyKind == .name ? key : nil
    }

    @discardableResult
    private func requireBox(_ mailbox: String) throws -> Box {
        guard let box = boxes[mailbox] else { throw MemoryStoreError.noSuchMailbox(mailbox) }
        return box
    }

    private func store(body: [UInt8], in mailbox: String, flags: MessageFlags, internalDate: Int64?, transferId: String?) -> MessageKey {
        insert(StoredMessage(key: .uid(0), body: body, flags: storable(flags), internalDate: internalDate,
                             transferId: transferId, modSeq: 0), in: mailbox)
    }

    private func insert(_ message: StoredMessage, in mailbox: String) -> MessageKey {
        var message = message
        if configuration.keyKind == .uid || message.key == .uid(0) {
            message.key = newKey(in: mailbox)
        }
        message.modSeq = bump(mailbox)
        boxes[mailbox]!.messages[message.key] = message
        boxes[mailbox]!.vanished[message.key] = nil
        return message.key
    }

    private func newKey(in mailbox: String) -> MessageKey {
        switch configuration.keyKind {
        case .uid:
            let uid = boxes[mailbox]!.uidNext
            boxes[mailbox]!.uidNext += 1
            return .uid(uid)
        case .name:
            nameCounter += 1
            return .name("m\(nameCounter)")
        }
    }

    private func bump(_ mailbox: String) -> Int64 {
        boxes[mailbox]!.modSeq += 1
        return boxes[mailbox]!.modSeq
    }

    private func allocateValidity() -> UInt32 {
        defer { nextValidity += 1 }
        return nextValidity
    }

    private func storable(_ flags: MessageFlags) -> MessageFlags {
        configuration.keywords ? flags : FlagMerge.systemFlags(flags)
    }

    private func reportedValidity(_ box: Box) -> UInt32? {
        configuration.reportsUidValidity ? box.uidValidity : nil
    }

    private func status(of mailbox: String) -> MailboxStatus {
        let box = boxes[mailbox]!
        switch configuration.keyKind {
        case .uid:
            return MailboxStatus(uidValidity: reportedValidity(box), uidNext: box.uidNext, highestModSeq: box.modSeq,
                                 messageCount: box.messages.count)
        case .name:
            return MailboxStatus(uidValidity: reportedValidity(box), messageCount: box.messages.count,
                                 scanToken: "\(box.uidValidity):\(box.modSeq)")
        }
    }

    private static func modSeq(fromToken token: String) -> Int64? {
        token.split(separator: ":").last.flatMap { Int64($0) }
    }

    private func info(_ message: StoredMessage) -> MessageInfo {
        MessageInfo(key: message.key, flags: message.flags, size: Int64(message.body.count), internalDate: message.internalDate,
                    messageId: configuration.lazyMessageIds ? nil : Self.messageId(in: message.body),
                    transferId: message.transferId)
    }

    /// The Message-ID header's value, from the header section only.
    static func messageId(in body: [UInt8]) -> String? {
        let text = String(decoding: body, as: UTF8.self)
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = line.hasSuffix("\r") ? line.dropLast() : line
            if line.isEmpty { return nil }
            if line.lowercased().hasPrefix("message-id:") {
                let value = line.dropFirst("message-id:".count).trimmingCharacters(in: .whitespaces)
                return value.isEmpty ? nil : value
            }
        }
        return nil
    }
}

/// Failures of the in-memory store.
public enum MemoryStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case noSuchMailbox(String)
    case unsupported(String)
    case sizeMismatch(announced: Int64, received: Int)

    public var description: String {
        switch self {
        case .noSuchMailbox(let name): "no mailbox \(name)"
        case .unsupported(let what): "\(what) is not supported by this store"
        case let .sizeMismatch(announced, received): "append announced \(announced) bytes but received \(received)"
        }
    }
}

/// Collects one appended message's chunks until `finish`.
actor MemoryAppendWriter: AppendWriter {
    private let store: MemoryStore
    private let mailbox: String
    private let envelope: AppendEnvelope
    private var body: [UInt8] = []
    private var cancelled = false

    init(store: MemoryStore, mailbox: String, envelope: AppendEnvelope) {
        self.store = store
        self.mailbox = mailbox
        self.envelope = envelope
    }

    func write(_ chunk: [UInt8]) async throws {
        body.append(contentsOf: chunk)
    }

    func finish() async throws -> MessageKey? {
        guard !cancelled else { throw MemoryStoreError.unsupported("finishing a cancelled append") }
        if let limit = store.configuration.maximumAppendSize, body.count > limit {
            throw MessageRejected(reason: "[TOOBIG] message of \(body.count) bytes is larger than \(limit)")
        }
        return try await store.completeAppend(mailbox: mailbox, envelope: envelope, body: body)
    }

    func cancel() async {
        cancelled = true
        body = []
    }
}
