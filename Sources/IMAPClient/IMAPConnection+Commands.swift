import IMAPCodec
import NIOCore

/// The typed command API. Each method issues its command(s), waits for the tagged
/// response and returns the parsed data routed to it; a `NO`/`BAD` throws
/// `IMAPClientError.commandFailed` naming the (redacted) command.
extension IMAPConnection {
    /// Converts a display name to the wire form this connection uses (modified UTF-7,
    /// or UTF-8 once UTF8=ACCEPT is enabled).
    public func mailboxName(_ name: String) -> MailboxName {
        MailboxName(name, encoding: mailboxEncoding)
    }

    /// Decodes a wire name for display; falls back to the raw bytes if the server sent an invalid name.
    public func displayName(_ name: MailboxName) -> String {
        (try? name.displayName(encoding: mailboxEncoding)) ?? name.description
    }

    public func capability() async throws -> Set<Capability> {
        try await refreshCapabilities()
        return capabilities
    }

    public func noop() async throws {
        _ = try await run(.noop)
    }

    public func logout() async throws {
        _ = try await run(.logout, role: .logout)
    }

    public func namespace() async throws -> NamespaceResponse? {
        let outcome = try await run(.namespace, role: .namespace)
        for case .namespace(let ns) in outcome.untagged { return ns }
        return nil
    }

    // MARK: Mailboxes

    /// LIST with the RFC 5258/5819/6154 options the server supports. Asked-for STATUS
    /// items are fetched with LIST-STATUS when offered, else with one STATUS per
    /// selectable mailbox (pipelined), so callers get the same result either way.
    ///
    /// `inboxStatusFirst` asks INBOX's STATUS ahead of the LIST, in the same
    /// flight, and every other mailbox's after it, instead of LIST-STATUS.
    /// Dovecot (with its default `mailbox_list_index = yes`) answers that
    /// STATUS from INBOX's index, but once a LIST has walked the mailbox list
    /// it re-reads INBOX's whole Maildir uidlist for every STATUS of it. With a
    /// 60,000-message INBOX the listing took 37–69 ms with LIST-STATUS and
    /// 1–9 ms this way, measured. It costs one more round trip than LIST-STATUS.
    public func list(reference: String = "", pattern: String = "*", options: ListOptions = ListOptions(),
                     inboxStatusFirst: Bool = false) async throws -> [ListedMailbox] {
        var wireOptions = options
        let extended = capabilities.contains(.listExtended)
        if !extended {
            wireOptions = ListOptions()
        } else {
            if !capabilities.contains(.specialUse) { wireOptions.returnSpecialUse = false; wireOptions.selectSpecialUse = false }
            if !capabilities.contains(.listStatus) || inboxStatusFirst { wireOptions.returnStatus = [] }
        }
        let statusItems = askable(options.returnStatus)
        let inboxFirst = inboxStatusFirst && !statusItems.isEmpty
            ? try submit(.status(.inbox, statusItems), role: .status) : nil
        let outcome = try await run(.list(reference: try mailboxName(reference), pattern: try mailboxName(pattern), options: wireOptions),
                                    role: .list)
        var statuses: [MailboxName: MailboxStatus] = [:]
        var result: [ListedMailbox] = []
        for response in outcome.untagged {
            switch response {
            case .list(let entry): result.append(ListedMailbox(entry: entry, name: displayName(entry.name), status: nil))
            case .status(let name, let status): statuses[name] = status
            default: break
            }
        }
        var inboxStatus: MailboxStatus?
        if let inboxFirst {
            let outcome = try await completion(of: inboxFirst, throwOnNo: false)
            for case .status(_, let status) in outcome.untagged { inboxStatus = status }
        }
        if !statusItems.isEmpty && wireOptions.returnStatus.isEmpty {
            var pending: [(MailboxName, CommandID)] = []
            for entry in result where !entry.attributes.contains(.noSelect) && !entry.attributes.contains(.nonExistent)
                && !(inboxFirst != nil && entry.entry.name.isInbox) {
                pending.append((entry.entry.name, try submit(.status(entry.entry.name, statusItems), role: .status)))
            }
            for (name, id) in pending {
                let outcome = try await completion(of: id, throwOnNo: false)
                for case .status(_, let status) in outcome.untagged { statuses[name] = status }
            }
        }
        for index in result.indices {
            let name = result[index].entry.name
            result[index].status = inboxFirst != nil && name.isInbox ? inboxStatus : statuses[name]
        }
        return result
    }

    /// STATUS items this server can answer: HIGHESTMODSEQ only with CONDSTORE.
    private func askable(_ items: [StatusAttribute]) -> [StatusAttribute] {
        items.filter { $0 != .highestModSeq || capabilities.contains(.condStore) }
    }

    public func status(_ mailbox: String, items: [StatusAttribute]) async throws -> MailboxStatus {
        let items = askable(items)
        let outcome = try await run(.status(try mailboxName(mailbox), items), role: .status)
        for case .status(_, let status) in outcome.untagged { return status }
        return MailboxStatus()
    }

    public func select(_ mailbox: String, parameters: SelectParameters = SelectParameters()) async throws -> SelectedMailboxInfo {
        try await open(mailbox, parameters: parameters, readOnly: false)
    }

    public func examine(_ mailbox: String, parameters: SelectParameters = SelectParameters()) async throws -> SelectedMailboxInfo {
        try await open(mailbox, parameters: parameters, readOnly: true)
    }

    private func open(_ mailbox: String, parameters: SelectParameters, readOnly: Bool) async throws -> SelectedMailboxInfo {
        var parameters = parameters
        // Only send what was ENABLEd (QRESYNC must be enabled first, RFC 7162 §3.2.3).
        if !enabledExtensions.contains(.qresync) { parameters.qresync = nil }
        if !capabilities.contains(.condStore) { parameters.condStore = false }
        let name = try mailboxName(mailbox)
        let command: Command = readOnly ? .examine(name, parameters) : .select(name, parameters)
        let id = try submit(command, role: .select)
        let outcome = try await completion(of: id)
        var info = SelectedMailboxInfo()
        info.readOnly = readOnly
        info.changed = outcome.messages
        func apply(_ code: ResponseCode?) {
            switch code {
            case .uidValidity(let v)?: info.uidValidity = v
            case .uidNext(let v)?: info.uidNext = v
            case .unseen(let v)?: info.unseen = v
            case .permanentFlags(let f)?: info.permanentFlags = f
            case .highestModSeq(let v)?: info.highestModSeq = v
            case .noModSeq?: info.noModSeq = true
            case .readOnly?: info.readOnly = true
            case .readWrite?: info.readOnly = false
            default: break
            }
        }
        for response in outcome.untagged {
            switch response {
            case .exists(let n): info.exists = n
            case .recent(let n): info.recent = n
            case .flags(let f): info.flags = f
            case .vanished(let set, _): info.vanished = info.vanished.union(set)
            case .condition(let condition): apply(condition.text.code)
            default: break
            }
        }
        apply(outcome.tagged.text.code)
        return info
    }

    /// CREATE, with RFC 6154 `USE (\Sent)` when a role is given and CREATE-SPECIAL-USE is offered.
    public func create(_ mailbox: String, specialUse: [MailboxAttribute] = []) async throws {
        let use = capabilities.contains(Capability("CREATE-SPECIAL-USE")) ? specialUse : []
        _ = try await run(.create(try mailboxName(mailbox), specialUse: use))
    }

    public func delete(_ mailbox: String) async throws {
        _ = try await run(.delete(try mailboxName(mailbox)))
    }

    public func rename(_ from: String, to: String) async throws {
        _ = try await run(.rename(from: try mailboxName(from), to: try mailboxName(to)))
    }

    public func subscribe(_ mailbox: String) async throws {
        _ = try await run(.subscribe(try mailboxName(mailbox)))
    }

    public func unsubscribe(_ mailbox: String) async throws {
        _ = try await run(.unsubscribe(try mailboxName(mailbox)))
    }

    /// CLOSE: expunges `\Deleted` messages (unless read-only) and deselects.
    public func close() async throws {
        _ = try await run(.close)
    }

    /// Deselects without expunging. Without UNSELECT, EXAMINE of a name that cannot
    /// exist does the same (a failed SELECT/EXAMINE leaves no mailbox selected, RFC 3501 §6.3.1).
    public func unselect() async throws {
        if capabilities.contains(.unselect) || capabilities.contains(.imap4rev2) {
            _ = try await run(.unselect)
        } else {
            _ = try await run(.examine(MailboxName(wireBytes: Array("ferrymail-unselect-nonexistent".utf8)),
                                       SelectParameters()), throwOnNo: false)
        }
    }

    // MARK: Messages

    public func expunge() async throws -> UIDSet {
        let outcome = try await run(.expunge)
        var vanished = UIDSet()
        for case .vanished(let set, _) in outcome.untagged { vanished = vanished.union(set) }
        return vanished
    }

    /// UID EXPUNGE (UIDPLUS): expunges only the given `\Deleted` messages.
    public func uidExpunge(_ uids: UIDSet) async throws {
        guard capabilities.contains(.uidPlus) || capabilities.contains(.imap4rev2) else {
            throw IMAPClientError.unsupported(host: configuration.host, what: "UID EXPUNGE (UIDPLUS)")
        }
        _ = try await run(.uidExpunge(uids))
    }

    /// UID FETCH, streamed: bodies go to `sink` chunk by chunk as they arrive, and the
    /// socket is not read while the sink is busy. Long UID sets are split into several
    /// commands that are all sent at once (pipelined), keeping each line short.
    /// `changedSince`/`vanished` need CONDSTORE / an ENABLEd QRESYNC.
    /// With `retainingMessages: false` the result's `messages` stay empty: a
    /// sink that keeps what it needs from `messageFinished` then holds a large
    /// listing once, not also as every raw response.
    public func uidFetch(_ uids: UIDSet, items: [FetchItem], changedSince: UInt64? = nil, vanished: Bool = false,
                         sink: (any FetchSink)? = nil, retainingMessages: Bool = true) async throws -> FetchResult {
        if changedSince != nil, !capabilities.contains(.condStore) {
            throw IMAPClientError.unsupported(host: configuration.host, what: "FETCH CHANGEDSINCE (CONDSTORE)")
        }
        if vanished, !enabledExtensions.contains(.qresync) {
            throw IMAPClientError.unsupported(host: configuration.host, what: "FETCH VANISHED (QRESYNC not enabled)")
        }
        var ids: [CommandID] = []
        for part in uids.chunked(maxRanges: 1000) {
            ids.append(try submit(.uidFetch(part, items, changedSince: changedSince, vanished: vanished),
                                  role: .fetch(part), sink: sink, retainingMessages: retainingMessages))
        }
        var result = FetchResult(messages: [], vanished: UIDSet())
        var firstError: (any Error)?
        for id in ids {
            do {
                let outcome = try await completion(of: id)
                result.messages += outcome.messages
                for case .vanished(let set, _) in outcome.untagged { result.vanished = result.vanished.union(set) }
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
        return result
    }

    /// UID SEARCH, using ESEARCH (`RETURN (ALL COUNT …)`) when offered so the result
    /// arrives as compact ranges.
    public func uidSearch(_ key: SearchKey, returning: [SearchReturnOption] = [.all]) async throws -> SearchResult {
        let esearch = capabilities.contains(.esearch) || capabilities.contains(.imap4rev2)
        let outcome = try await run(.uidSearch(key, returnOptions: esearch ? returning : nil), role: .search(tag: ""))
        var result = SearchResult(uids: UIDSet(), min: nil, max: nil, count: nil, modSeq: nil)
        for response in outcome.untagged {
            switch response {
            case .esearch(let e):
                result.uids = e.all ?? result.uids
                result.min = e.min
                result.max = e.max
                result.count = e.count
                result.modSeq = e.modSeq
            case .search(let numbers, let modSeq):
                result.uids = result.uids.union(UIDSet(numbers))
                result.modSeq = modSeq ?? result.modSeq
            default: break
            }
        }
        // Derive what the server was not asked for (or cannot say) from the full set.
        if !esearch || returning.contains(.all) {
            result.count = result.count ?? UInt32(result.uids.count)
            result.min = result.min ?? result.uids.min
            result.max = result.max ?? result.uids.max
        }
        return result
    }

    /// UID STORE; with `unchangedSince` (CONDSTORE) returns the `[MODIFIED]` UIDs that were not changed.
    public func uidStore(_ uids: UIDSet, _ operation: StoreOperation, flags: [Flag], silent: Bool = true,
                         unchangedSince: UInt64? = nil) async throws -> StoreResult {
        if unchangedSince != nil, !capabilities.contains(.condStore) {
            throw IMAPClientError.unsupported(host: configuration.host, what: "STORE UNCHANGEDSINCE (CONDSTORE)")
        }
        let outcome = try await run(.uidStore(uids, operation, flags, silent: silent, unchangedSince: unchangedSince),
                                    role: .store(uids))
        var modified = UIDSet()
        if case .modified(let set)? = outcome.tagged.text.code { modified = set }
        return StoreResult(messages: outcome.messages, modified: modified)
    }

    public func uidCopy(_ uids: UIDSet, to mailbox: String) async throws -> CopyResult {
        let outcome = try await run(.uidCopy(uids, try mailboxName(mailbox)))
        return Self.copyResult(outcome)
    }

    /// UID MOVE; without MOVE, COPY + STORE \Deleted + UID EXPUNGE (needs UIDPLUS, so
    /// other messages already marked `\Deleted` are not expunged by accident).
    public func uidMove(_ uids: UIDSet, to mailbox: String) async throws -> CopyResult {
        let name = try mailboxName(mailbox)
        if capabilities.contains(.move) || capabilities.contains(.imap4rev2) {
            let outcome = try await run(.uidMove(uids, name), role: .move)
            if case .copyUID? = outcome.tagged.text.code { return Self.copyResult(outcome) }
            for case .condition(let condition) in outcome.untagged {
                if case .copyUID(let validity, let source, let destination)? = condition.text.code {
                    return CopyResult(uidValidity: validity, source: source, destination: destination)
                }
            }
            return CopyResult()
        }
        guard capabilities.contains(.uidPlus) else {
            throw IMAPClientError.unsupported(host: configuration.host, what: "MOVE (neither MOVE nor UIDPLUS offered)")
        }
        let copy = try await run(.uidCopy(uids, name))
        _ = try await run(.uidStore(uids, .add, [.deleted], silent: true, unchangedSince: nil), role: .store(uids))
        _ = try await run(.uidExpunge(uids))
        return Self.copyResult(copy)
    }

    private static func copyResult(_ outcome: Outcome) -> CopyResult {
        if case .copyUID(let validity, let source, let destination)? = outcome.tagged.text.code {
            return CopyResult(uidValidity: validity, source: source, destination: destination)
        }
        return CopyResult()
    }

    /// APPEND; several messages go in one MULTIAPPEND when offered (atomic, one round
    /// trip), else as pipelined APPENDs. Bodies are pulled from their sources while
    /// writing, never loaded whole.
    public func append(to mailbox: String, messages: [(message: AppendMessage, body: any AppendBodySource)]) async throws -> AppendResult {
        let name = try mailboxName(mailbox)
        guard !messages.isEmpty else { return AppendResult() }
        var ids: [CommandID] = []
        if messages.count > 1, capabilities.contains(.multiAppend) {
            ids.append(try submit(.append(name, messages.map(\.message)), role: .generic, appendSources: messages.map(\.body)))
        } else {
            for message in messages {
                ids.append(try submit(.append(name, [message.message]), role: .generic, appendSources: [message.body]))
            }
        }
        var result = AppendResult()
        var firstError: (any Error)?
        for id in ids {
            do {
                let one = try await appendResult(id)
                if let uids = one.uids {
                    result.uidValidity = one.uidValidity
                    result.uids = (result.uids ?? UIDSet()).union(uids)
                }
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
        return result
    }

    /// Queues one APPEND and returns as soon as it is on its way, so the
    /// caller can queue the next before this one is answered (pipelining).
    /// Commands go on the wire in the order they are queued; the body is
    /// pulled from `body` while the returned handle's `result()` is awaited,
    /// so someone must await it.
    public func beginAppend(to mailbox: String, message: AppendMessage, body: any AppendBodySource) throws -> PendingAppend {
        let name = try mailboxName(mailbox)
        return PendingAppend(connection: self, id: try submit(.append(name, [message]), role: .generic, appendSources: [body]))
    }

    func appendResult(_ id: CommandID) async throws -> AppendResult {
        let outcome = try await completion(of: id)
        var result = AppendResult()
        if case .appendUID(let validity, let uids)? = outcome.tagged.text.code {
            result.uidValidity = validity
            result.uids = uids
        }
        return result
    }

    /// Convenience for one message whose bytes are already in memory.
    public func append(to mailbox: String, message: ByteBuffer, flags: [Flag] = [], internalDate: InternalDate? = nil) async throws -> AppendResult {
        try await append(to: mailbox, messages: [(AppendMessage(flags: flags, internalDate: internalDate, size: UInt64(message.readableBytes)),
                                                  ByteBufferBodySource(message))])
    }

    // MARK: IDLE / NOTIFY

    /// Starts IDLE and returns once the server confirmed it. Events arrive on
    /// `unsolicitedEvents`; the IDLE is silently re-issued every `idleReissue`
    /// (25 min) to stay under server limits. Call `done()` on the handle to end it.
    public func idle() async throws -> IdleHandle {
        guard capabilities.contains(.idle) || capabilities.contains(.imap4rev2) else {
            throw IMAPClientError.unsupported(host: configuration.host, what: "IDLE")
        }
        let id = try submit(.idle, role: .idle)
        while true {
            switch try await nextSignal(id) {
            case .idleStarted: return IdleHandle(connection: self, id: id)
            case .completed(let tagged):
                discardRecord(id)
                throw IMAPClientError.commandFailed(command: "IDLE", status: tagged.status, text: tagged.text.text, code: tagged.text.code)
            case .streamBody: continue
            }
        }
    }

    func endIdle(_ id: CommandID) async throws {
        await perform(state.endIdle(id))
        _ = try await completion(of: id)
    }

    /// NOTIFY SET (RFC 5465), or NOTIFY NONE with no groups. Events arrive on `unsolicitedEvents`.
    public func notify(status: Bool = false, _ groups: [NotifyEventGroup]) async throws {
        guard capabilities.contains(.notify) else {
            throw IMAPClientError.unsupported(host: configuration.host, what: "NOTIFY")
        }
        _ = try await run(.notify(status: status, groups: groups))
    }
}

/// An APPEND queued by `beginAppend`.
public struct PendingAppend: Sendable {
    let connection: IMAPConnection
    let id: CommandID
    /// Streams the body when its turn comes and waits for the tagged answer.
    public func result() async throws -> AppendResult {
        try await connection.appendResult(id)
    }
}

/// An active IDLE. `done()` ends it and waits for the server's tagged OK.
public struct IdleHandle: Sendable {
    let connection: IMAPConnection
    let id: CommandID
    public func done() async throws {
        try await connection.endIdle(id)
    }
}

/// An APPEND body already in memory (small messages, tests).
public actor ByteBufferBodySource: AppendBodySource {
    private var buffer: ByteBuffer?
    private let chunkSize: Int
    public init(_ buffer: ByteBuffer, chunkSize: Int = 64 * 1024) {
        self.buffer = buffer
        self.chunkSize = chunkSize
    }
    public func nextChunk() async throws -> ByteBuffer? {
        guard var remaining = buffer, remaining.readableBytes > 0 else { return nil }
        let chunk = remaining.readSlice(length: min(chunkSize, remaining.readableBytes))
        buffer = remaining
        return chunk
    }
}
