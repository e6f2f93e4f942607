import IMAPCodec
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One authenticated IMAP session. All protocol state lives in this actor and in
/// its `ClientStateMachine`; the NIO pipeline only moves bytes (TLS, deflate) and
/// provides backpressure. Commands may be issued from many tasks at once: they are
/// pipelined on the wire and each caller gets exactly its own results.
///
/// Open it with `withConnection`, which scopes the reader and watchdog tasks
/// structurally: when the body returns or throws, the session is logged out and
/// every task has ended.
public actor IMAPConnection {
    public nonisolated let configuration: IMAPConfiguration
    /// EXISTS/EXPUNGE/VANISHED/FETCH/BYE and NOTIFY data nobody asked for. Buffered
    /// (newest 10,000 kept) so a caller not listening cannot grow memory without bound.
    public nonisolated let unsolicitedEvents: AsyncStream<UnsolicitedEvent>
    private let unsolicitedContinuation: AsyncStream<UnsolicitedEvent>.Continuation

    /// Capabilities as last advertised (re-read after STARTTLS and authentication).
    public private(set) var capabilities: Set<Capability> = []
    /// Extensions the server confirmed with `* ENABLED`.
    public private(set) var enabledExtensions: Set<Capability> = []
    public internal(set) var isCompressionActive = false
    /// The server's answer to ID (RFC 2971), e.g. `["name": "Dovecot"]`; nil
    /// when not asked or not offered. Only used to pick a faster strategy,
    /// never to decide what is correct.
    public internal(set) var serverID: [String: String]?
    public internal(set) var isTLSActive: Bool
    /// The session ended; further commands fail with this error.
    public private(set) var terminationError: IMAPClientError?

    let channel: any Channel
    let tlsSetup: TLSSetup
    private var logger: Logger
    var state = ClientStateMachine()
    private var parser = ResponseParser()
    var encoder = CommandEncoder(capabilities: [], mailboxNameEncoding: .modifiedUTF7)
    var mailboxEncoding: MailboxNameEncoding = .modifiedUTF7
    private var records: [CommandID: CommandRecord] = [:]
    private var nextCommandID = 0
    var greeting: Result<UntaggedCondition, IMAPClientError>?
    var greetingWaiter: CheckedContinuation<UntaggedCondition, any Error>?
    private var unsolicitedFetch: FetchedMessage?
    private let clock = ContinuousClock()
    private let openedAt: ContinuousClock.Instant
    private var lastInbound: ContinuousClock.Instant
    /// True while a fetch sink runs: time spent there is ours, not the server's.
    private var sinkBusy = false
    private var byeText: String?

    private struct CommandRecord {
        var description: String
        var role: CommandRole
        var sentAt: ContinuousClock.Instant
        var untagged: [UntaggedResponse] = []
        var messages: [FetchedMessage] = []
        var retainsMessages = true
        var current: FetchedMessage?
        var sink: (any FetchSink)?
        var sinkError: (any Error)?
        var appendSources: [any AppendBodySource] = []
        var pendingSignals: [Signal] = []
        var waiter: CheckedContinuation<Signal, any Error>?
        var idleStartedAt: ContinuousClock.Instant?
        var reissuingIdle = false
        var abandoned = false
    }

    enum Signal: Sendable {
        case streamBody(index: Int, size: UInt64)
        case idleStarted
        case completed(TaggedResponse)
    }

    /// Outcome of one tagged command: its tagged status and the untagged data routed to it.
    struct Outcome: Sendable {
        var tagged: TaggedResponse
        var untagged: [UntaggedResponse]
        var messages: [FetchedMessage]
    }

    private init(configuration: IMAPConfiguration, channel: any Channel, tlsSetup: TLSSetup, tlsActive: Bool) {
        self.configuration = configuration
        self.channel = channel
        self.tlsSetup = tlsSetup
        self.isTLSActive = tlsActive
        var logger = configuration.logger
        logger[metadataKey: "ferrymail.host"] = "\(configuration.host)"
        if let account = configuration.accountName { logger[metadataKey: "ferrymail.account"] = "\(account)" }
        self.logger = logger
        (unsolicitedEvents, unsolicitedContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        openedAt = ContinuousClock().now
        lastInbound = openedAt
    }

    // MARK: - Opening and closing

    /// Connects, secures, authenticates and configures a session, runs `body`, then logs out.
    /// The connection never outlives this call.
    public static func withConnection<Result: Sendable>(
        configuration: IMAPConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (IMAPConnection) async throws -> Result
    ) async throws -> Result {
        if configuration.security == .plaintext, configuration.tls.pinnedSHA256 != nil {
            throw IMAPClientError.invalidConfiguration("a certificate pin was given but security is .plaintext")
        }
        let host = configuration.host
        let tlsSetup = TLSSetup(configuration: configuration.tls, host: host)
        let implicitTLS = configuration.security == .implicitTLS
        let asyncChannel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            asyncChannel = try await ClientBootstrap(group: eventLoopGroup)
                .connectTimeout(TimeAmount(configuration.timeouts.connect))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: host, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if implicitTLS { try channel.pipeline.syncOperations.addHandler(tlsSetup.makeHandler()) }
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch ChannelError.connectTimeout(_) {
            throw IMAPClientError.timeout(host: host, command: "connect")
        } catch {
            throw IMAPClientError.connectFailed(host: host, port: configuration.port, reason: "\(error)")
        }
        let connection = IMAPConnection(configuration: configuration, channel: asyncChannel.channel,
                                        tlsSetup: tlsSetup, tlsActive: implicitTLS)
        return try await asyncChannel.executeThenClose { inbound, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await connection.readLoop(inbound) }
                group.addTask { await connection.watchdog() }
                do {
                    try await connection.setUpSession()
                    let result = try await body(connection)
                    await connection.shutdown(sendLogout: true)
                    group.cancelAll()
                    return result
                } catch {
                    await connection.shutdown(sendLogout: false)
                    group.cancelAll()
                    throw error
                }
            }
        }
    }

    /// Sends LOGOUT (if still possible) and closes the socket.
    private func shutdown(sendLogout: Bool) async {
        if sendLogout, terminationError == nil {
            _ = try? await run(.logout, role: .logout)
        }
        fail(.connectionClosed(host: configuration.host))
    }

    private func fail(_ error: IMAPClientError) {
        guard terminationError == nil else { return }
        terminationError = error
        if case .connectionClosed = error {} else { logger.debug("IMAP session ended", metadata: ["ferrymail.error": "\(error)"]) }
        greetingWaiter?.resume(throwing: error)
        greetingWaiter = nil
        for (id, var record) in records {
            if let waiter = record.waiter {
                record.waiter = nil
                waiter.resume(throwing: error)
            }
            records[id] = nil
        }
        unsolicitedContinuation.finish()
        channel.close(promise: nil)
    }

    // MARK: - Reading

    private func readLoop(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) async {
        do {
            for try await buffer in inbound {
                lastInbound = clock.now
                parser.append(buffer)
                while terminationError == nil, let event = try parser.next() {
                    trace(event)
                    await perform(state.receive(event))
                }
                if terminationError != nil { return }
            }
            if let byeText {
                fail(.serverBye(host: configuration.host, text: byeText))
            } else {
                fail(.connectionLost(host: configuration.host, reason: "server closed the connection"))
            }
        } catch let error as IMAPParseError {
            fail(.protocolError(host: configuration.host, description: error.description))
        } catch let error as NIOSSLError {
            fail(tlsSetup.classify(error))
        } catch let error as BoringSSLError {
            fail(tlsSetup.classify(error))
        } catch {
            fail(.connectionLost(host: configuration.host, reason: "\(error)"))
        }
    }

    private func trace(_ event: ResponseEvent) {
        guard configuration.wireTrace else { return }
        switch event {
        case .fetch(.bodyBytes): return
        case .fetch(.bodyBegin(let section, let size)): logger.trace("S: \(section) [\(size) bytes]")
        default: logger.trace("S: \(event)")
        }
    }

    func perform(_ actions: [ClientStateMachine.Action]) async {
        for action in actions {
            switch action {
            case .write(let buffer):
                channel.writeAndFlush(buffer, promise: nil)
            case .streamAppendBody(let id, let index, let size):
                signal(id, .streamBody(index: index, size: size))
            case .greeting(let condition):
                let result: Result<UntaggedCondition, IMAPClientError>
                switch condition.status {
                case .ok, .preauth: result = .success(condition)
                case .bye: result = .failure(.serverBye(host: configuration.host, text: condition.text.text))
                default: result = .failure(.greetingRejected(host: configuration.host, text: condition.text.text))
                }
                greeting = result
                if let waiter = greetingWaiter {
                    greetingWaiter = nil
                    waiter.resume(with: result.mapError { $0 as any Error })
                }
            case .untagged(let owner, let response):
                handleUntagged(owner: owner, response)
            case .fetch(let owner, let event):
                await handleFetch(owner: owner, event)
            case .idleStarted(let id):
                records[id]?.idleStartedAt = clock.now
                if records[id]?.reissuingIdle == true {
                    records[id]?.reissuingIdle = false
                } else {
                    signal(id, .idleStarted)
                }
            case .completed(let id, let response):
                complete(id, response)
            case .bye(let condition):
                byeText = condition.text.text
                unsolicitedContinuation.yield(.bye(condition.text.text))
            case .protocolViolation(let text):
                fail(.protocolError(host: configuration.host, description: text))
            }
        }
    }

    private func handleUntagged(owner: CommandID?, _ response: UntaggedResponse) {
        if case .capability(let caps) = response { applyCapabilities(caps) }
        if case .condition(let c) = response, case .capability(let caps)? = c.text.code { applyCapabilities(caps) }
        if let owner, records[owner] != nil {
            records[owner]?.untagged.append(response)
            return
        }
        let event: UnsolicitedEvent
        switch response {
        case .exists(let n): event = .exists(n)
        case .recent(let n): event = .recent(n)
        case .expunge(let n): event = .expunge(sequenceNumber: n)
        case .vanished(let set, _): event = .vanished(set)
        case .flags(let flags): event = .flags(flags)
        case .status(let name, let status): event = .status(name, status)
        case .list(let entry): event = .list(entry)
        case .condition(let condition): event = .condition(condition)
        case .capability: return
        default: event = .other(response)
        }
        unsolicitedContinuation.yield(event)
    }

    private func handleFetch(owner: CommandID?, _ event: FetchEvent) async {
        // Only what is needed is read out of the record: a local copy of the
        // whole record would share its `messages` buffer, and every append
        // below would then copy all messages so far (quadratic: 30 s for a
        // 60,000-message listing).
        guard let owner, let abandoned = records[owner]?.abandoned, !abandoned else {
            switch event {
            case .start(let seq): unsolicitedFetch = FetchedMessage(sequenceNumber: seq)
            case .attribute(let attribute): unsolicitedFetch?.apply(attribute)
            case .finish:
                if let message = unsolicitedFetch { unsolicitedContinuation.yield(.fetch(message)) }
                unsolicitedFetch = nil
            default: break
            }
            return
        }
        let current = records[owner]?.current
        switch event {
        case .start(let seq):
            records[owner]?.current = FetchedMessage(sequenceNumber: seq)
            return
        case .attribute(let attribute):
            records[owner]?.current?.apply(attribute)
            return
        case .finish:
            guard let current else { return }
            if records[owner]?.retainsMessages == true { records[owner]?.messages.append(current) }
            records[owner]?.current = nil
        default: break
        }
        guard let sink = records[owner]?.sink, records[owner]?.sinkError == nil else { return }
        sinkBusy = true
        defer {
            sinkBusy = false
            lastInbound = clock.now
        }
        do {
            switch event {
            case .bodyBegin(let section, let size):
                try await sink.bodyBegin(message: current ?? FetchedMessage(sequenceNumber: 0), section: section, size: size)
            case .bodyBytes(let bytes): try await sink.bodyBytes(bytes)
            case .bodyEnd: try await sink.bodyEnd()
            case .finish: try await sink.messageFinished(current ?? FetchedMessage(sequenceNumber: 0))
            case .start, .attribute: break
            }
        } catch {
            // Keep reading (the rest of the response must be consumed to stay in sync),
            // but stop feeding the sink and fail the command when it completes.
            records[owner]?.sinkError = error
        }
    }

    private func complete(_ id: CommandID, _ response: TaggedResponse) {
        if case .capability(let caps)? = response.text.code { applyCapabilities(caps) }
        guard let record = records[id] else { return }
        if record.role == .idle, record.reissuingIdle, response.status == .ok {
            // The periodic DONE of a long IDLE was acknowledged: start the next IDLE.
            let tag = state.nextTag()
            if let encoded = try? encoder.encode(.idle, tag: tag) {
                records[id]?.sentAt = clock.now
                for case .write(let buffer) in state.enqueue(id: id, tag: tag, role: .idle, chunks: encoded.chunks) {
                    channel.writeAndFlush(buffer, promise: nil)
                }
                return
            }
        }
        signal(id, .completed(response))
    }

    private func signal(_ id: CommandID, _ signal: Signal) {
        guard var record = records[id] else { return }
        if case .completed = signal, record.abandoned {
            records[id] = nil
            return
        }
        if let waiter = record.waiter {
            record.waiter = nil
            records[id] = record
            waiter.resume(returning: signal)
        } else {
            record.pendingSignals.append(signal)
            records[id] = record
        }
    }

    func discardRecord(_ id: CommandID) { records[id] = nil }

    func nextSignal(_ id: CommandID) async throws -> Signal {
        if let error = terminationError, records[id] == nil { throw error }
        guard var record = records[id] else { throw IMAPClientError.connectionClosed(host: configuration.host) }
        if !record.pendingSignals.isEmpty {
            let signal = record.pendingSignals.removeFirst()
            records[id] = record
            return signal
        }
        return try await withCheckedThrowingContinuation { continuation in
            records[id]?.waiter = continuation
        }
    }

    func applyCapabilities(_ caps: [Capability]) {
        capabilities = Set(caps)
        encoder = CommandEncoder(capabilities: capabilities, mailboxNameEncoding: mailboxEncoding)
    }

    /// Records `* ENABLED`; UTF8=ACCEPT switches both directions to UTF-8 mailbox names (RFC 6855 §3).
    func markEnabled(_ caps: [Capability]) {
        enabledExtensions.formUnion(caps)
        if caps.contains(.utf8Accept) {
            mailboxEncoding = .utf8
            parser.mailboxNameEncoding = .utf8
            encoder = CommandEncoder(capabilities: capabilities, mailboxNameEncoding: .utf8)
        }
    }

    // MARK: - Timers

    /// Checks deadlines four times a second. A task that sleeps is cheaper and simpler
    /// than one scheduled timer per command, and 250 ms of slack is irrelevant next to
    /// timeouts measured in seconds.
    private func watchdog() async {
        while !Task.isCancelled, terminationError == nil {
            try? await Task.sleep(for: .milliseconds(250))
            checkDeadlines()
        }
    }

    private func checkDeadlines() {
        guard terminationError == nil else { return }
        let now = clock.now
        let timeouts = configuration.timeouts
        if greeting == nil {
            if now - openedAt > timeouts.connect { fail(.timeout(host: configuration.host, command: "greeting")) }
            return
        }
        for (id, record) in records where record.role == .idle {
            if state.isIdling(id), let started = record.idleStartedAt, now - started > timeouts.idleReissue {
                records[id]?.reissuingIdle = true
                records[id]?.sentAt = now
                logger.debug("re-issuing IDLE")
                let actions = state.endIdle(id)
                for case .write(let buffer) in actions { channel.writeAndFlush(buffer, promise: nil) }
            }
        }
        guard !sinkBusy else { return }
        let waiting = records.filter { id, record in !record.abandoned && !(record.role == .idle && state.isIdling(id)) }
        guard let oldest = waiting.min(by: { $0.key.rawValue < $1.key.rawValue }) else { return }
        let lastProgress = max(oldest.value.sentAt, lastInbound)
        if now - lastProgress > timeouts.command {
            fail(.timeout(host: configuration.host, command: oldest.value.description))
        }
    }

    // MARK: - Issuing commands

    /// Encodes and queues a command; returns at once. Pipelining comes from calling
    /// this several times before awaiting.
    func submit(_ command: Command, role: CommandRole, sink: (any FetchSink)? = nil, retainingMessages: Bool = true,
                        appendSources: [any AppendBodySource] = [],
                        extraChunks: [CommandChunk] = []) throws -> CommandID {
        if let error = terminationError { throw error }
        nextCommandID += 1
        let id = CommandID(nextCommandID)
        let tag = state.nextTag()
        let encoded: EncodedCommand
        do {
            encoded = try encoder.encode(command, tag: tag)
        } catch {
            throw IMAPClientError.invalidArgument("\(error)")
        }
        if configuration.wireTrace { logger.trace("C: \(encoded.logDescription)") }
        let resolvedRole: CommandRole = if case .search = role { .search(tag: tag) } else { role }
        records[id] = CommandRecord(description: encoded.logDescription, role: resolvedRole, sentAt: clock.now,
                                    retainsMessages: retainingMessages, sink: sink, appendSources: appendSources)
        let actions = state.enqueue(id: id, tag: tag, role: resolvedRole, chunks: encoded.chunks + extraChunks)
        for action in actions {
            switch action {
            case .write(let buffer): channel.writeAndFlush(buffer, promise: nil)
            case .streamAppendBody(let id, let index, let size): signal(id, .streamBody(index: index, size: size))
            default: break
            }
        }
        return id
    }

    /// Waits for the command's tagged response, streaming APPEND bodies when asked.
    func completion(of id: CommandID, throwOnNo: Bool = true) async throws -> Outcome {
        while true {
            let signal: Signal
            do {
                signal = try await nextSignal(id)
            } catch {
                throw error
            }
            switch signal {
            case .streamBody(let index, let size):
                try await streamAppendBody(id, index: index, size: size)
            case .idleStarted:
                continue
            case .completed(let tagged):
                let record = records.removeValue(forKey: id)
                if let sinkError = record?.sinkError {
                    throw IMAPClientError.callerFailed(command: record?.description ?? "", reason: "\(sinkError)")
                }
                if throwOnNo, tagged.status != .ok {
                    throw IMAPClientError.commandFailed(command: record?.description ?? "", status: tagged.status,
                                                        text: tagged.text.text, code: tagged.text.code)
                }
                return Outcome(tagged: tagged, untagged: record?.untagged ?? [], messages: record?.messages ?? [])
            }
        }
    }

    func run(_ command: Command, role: CommandRole = .generic, throwOnNo: Bool = true) async throws -> Outcome {
        let id = try submit(command, role: role)
        return try await completion(of: id, throwOnNo: throwOnNo)
    }

    private func streamAppendBody(_ id: CommandID, index: Int, size: UInt64) async throws {
        guard let source = records[id]?.appendSources[index] else { return }
        var written: UInt64 = 0
        do {
            while written < size, let chunk = try await source.nextChunk() {
                guard chunk.readableBytes > 0 else { continue }
                guard written + UInt64(chunk.readableBytes) <= size else {
                    throw IMAPClientError.invalidArgument("APPEND body source produced more than the declared \(size) bytes")
                }
                written += UInt64(chunk.readableBytes)
                // Awaiting each write keeps at most one chunk queued in the channel.
                try await channel.writeAndFlush(chunk)
                records[id]?.sentAt = clock.now
            }
            guard written == size else {
                throw IMAPClientError.invalidArgument("APPEND body source ended after \(written) of \(size) bytes")
            }
        } catch {
            // The server is now inside a literal we cannot finish: the session is unusable.
            let clientError = (error as? IMAPClientError) ?? .callerFailed(command: "APPEND", reason: "\(error)")
            fail(clientError)
            throw clientError
        }
        await perform(state.appendBodyWritten(id))
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
