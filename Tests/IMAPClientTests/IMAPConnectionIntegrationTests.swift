import Foundation
import IMAPCodec
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TestSupport

@testable import IMAPClient

/// Collects a fetch into memory — fine for tests, which need the bytes to compare.
actor CollectingSink: FetchSink {
    var bodies: [UInt32: [UInt8]] = [:]
    private var current: UInt32 = 0
    func bodyBegin(message: FetchedMessage, section: BodySection, size: UInt64) async throws {
        current = message.uid ?? 0
        bodies[current] = []
    }
    func bodyBytes(_ bytes: ByteBuffer) async throws { bodies[current, default: []] += Array(bytes.readableBytesView) }
}

/// swift-log handler that keeps every rendered line, metadata included.
final class MemoryLogHandler: LogHandler, Sendable {
    let lines = Mutex<[String]>([])
    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }
    func log(event: LogEvent) {
        lines.withLock { $0.append("\(event.level) \(event.message) \(event.metadata ?? [:])") }
    }
}

@Suite(.serialized) struct IMAPConnectionIntegrationTests {
    static func configuration(_ server: DovecotServer, security: IMAPConfiguration.Security, compress: Bool,
                              user: Int = 0, tls: IMAPConfiguration.TLS? = nil) -> IMAPConfiguration {
        let account = server.users[user]
        let host = security == .implicitTLS ? server.tlsHost : server.host
        let port = security == .implicitTLS ? server.tlsPort : server.plainPort
        return IMAPConfiguration(host: host, port: port, security: security,
                                 tls: tls ?? .init(caFile: server.caCertificatePath),
                                 credentials: .password(user: account.name, password: account.password),
                                 allowInsecureAuth: security == .plaintext,
                                 timeouts: .init(connect: .seconds(5), command: .seconds(10)), compress: compress)
    }

    /// Every command against one server and transport. Mailbox names are unique per run
    /// so runs over different transports do not interfere.
    static func exerciseCommands(_ server: DovecotServer, _ config: IMAPConfiguration, label: String,
                                 fullFeatured: Bool) async throws {
        try await IMAPConnection.withConnection(configuration: config) { imap in
            #expect(await imap.isTLSActive == (config.security != .plaintext))
            #expect(await imap.isCompressionActive == (config.compress && fullFeatured))
            let box = "Box-\(label)"
            try await imap.create(box)
            try await imap.subscribe(box)
            let listed = try await imap.list(pattern: "*", options: ListOptions(returnSpecialUse: true, returnStatus: [.messages, .uidNext]))
            let entry = try #require(listed.first { $0.name == box })
            #expect(entry.status?.messages == 0)
            if fullFeatured { #expect(listed.contains { $0.specialUse == .sent }) }

            // APPEND three messages (MULTIAPPEND when offered) and read them back byte for byte.
            let originals = (0..<3).map { Corpus.message(index: $0, size: 20_000 + $0 * 50_000, folder: box) }
            let appended = try await imap.append(to: box, messages: originals.map {
                (AppendMessage(flags: [.seen], internalDate: nil, size: UInt64($0.count)), ByteBufferBodySource(ByteBuffer(bytes: $0)) as any AppendBodySource)
            })
            let selected = try await imap.select(box, parameters: SelectParameters(condStore: true))
            #expect(selected.exists == 3)
            #expect(selected.uidValidity != nil)
            if fullFeatured {
                #expect(appended.uids?.count == 3)
                #expect(selected.highestModSeq != nil)
            }
            let sink = CollectingSink()
            let fetched = try await imap.uidFetch(UIDSet.all, items: [.uid, .flags, .rfc822Size, .body()], sink: sink)
            #expect(fetched.messages.count == 3)
            let bodies = await sink.bodies
            for (index, message) in fetched.messages.sorted(by: { $0.uid! < $1.uid! }).enumerated() {
                #expect(bodies[message.uid!] == originals[index], "APPEND then FETCH must return identical bytes")
                #expect(message.flags?.contains(.seen) == true)
            }
            // Concurrent fetches from several tasks are pipelined on one connection.
            let uids = fetched.messages.compactMap(\.uid)
            try await withThrowingTaskGroup(of: Int.self) { group in
                for uid in uids { group.addTask { try await imap.uidFetch(UIDSet(uid...uid), items: [.uid, .rfc822Size]).messages.count } }
                var total = 0
                for try await n in group { total += n }
                #expect(total == 3)
            }

            let search = try await imap.uidSearch(.all)
            #expect(search.uids == UIDSet(uids))
            #expect(search.count == 3)

            let stored = try await imap.uidStore(UIDSet(uids[0]...uids[0]), .add, flags: [.flagged], silent: false)
            #expect(stored.messages.first?.flags?.contains(.flagged) == true)
            if fullFeatured {
                let guarded = try await imap.uidStore(UIDSet(uids[1]...uids[1]), .add, flags: [.answered], unchangedSince: 1)
                #expect(guarded.modified.contains(uids[1]), "UNCHANGEDSINCE 1 must fail for a message modified later")
            }
            let status = try await imap.status(box, items: [.messages, .unseen])
            #expect(status.messages == 3)

            let copied = try await imap.uidCopy(UIDSet(uids[0]...uids[0]), to: "INBOX")
            if fullFeatured { #expect(copied.destination?.count == 1) }
            if fullFeatured {
                _ = try await imap.uidMove(UIDSet(uids[1]...uids[1]), to: "INBOX")
            } else {
                // Without MOVE and UIDPLUS a move could expunge other \Deleted messages: refused.
                await #expect(throws: IMAPClientError.unsupported(host: config.host, what: "MOVE (neither MOVE nor UIDPLUS offered)")) {
                    try await imap.uidMove(UIDSet(uids[1]...uids[1]), to: "INBOX")
                }
                _ = try await imap.uidCopy(UIDSet(uids[1]...uids[1]), to: "INBOX")
                _ = try await imap.uidStore(UIDSet(uids[1]...uids[1]), .add, flags: [.deleted])
                _ = try await imap.expunge()
            }
            #expect(try await imap.uidSearch(.all).uids.count == 2)
            _ = try await imap.uidStore(UIDSet(uids[2]...uids[2]), .add, flags: [.deleted])
            if fullFeatured {
                try await imap.uidExpunge(UIDSet(uids[2]...uids[2]))
            } else {
                _ = try await imap.expunge()
            }
            #expect(try await imap.uidSearch(.all).uids.count == 1)
            try await imap.noop()
            try await imap.unselect()
            _ = try await imap.examine(box)
            try await imap.close()

            try await imap.rename(box, to: box + "-renamed")
            try await imap.unsubscribe(box)
            try await imap.delete(box + "-renamed")
            await #expect(throws: IMAPClientError.self) { try await imap.select(box + "-renamed") }
        }
    }

    @Test func fullFeaturedServerOverEveryTransport() async throws {
        let server = try await DovecotServer.start()
        defer { server.stop() }
        for security in [IMAPConfiguration.Security.plaintext, .startTLS, .implicitTLS] {
            for compress in [false, true] {
                let label = "\(security)-\(compress)"
                try await Self.exerciseCommands(server, Self.configuration(server, security: security, compress: compress),
                                                label: label, fullFeatured: true)
            }
        }

        // Certificate handling on the same server.
        var wrongCA = Self.configuration(server, security: .implicitTLS, compress: false)
        wrongCA.tls = .init(caFile: server.wrongCAPath)
        await #expect { try await IMAPConnection.withConnection(configuration: wrongCA) { _ in } } throws: { error in
            guard case .certificateUntrusted? = error as? IMAPClientError else { return false }
            return true
        }
        var pinned = Self.configuration(server, security: .implicitTLS, compress: false)
        pinned.tls = .init(pinnedSHA256: server.certificateSHA256)
        try await IMAPConnection.withConnection(configuration: pinned) { imap in try await imap.noop() }
        var wrongPin = pinned
        wrongPin.tls = .init(pinnedSHA256: String(repeating: "ab", count: 32))
        await #expect { try await IMAPConnection.withConnection(configuration: wrongPin) { _ in } } throws: { error in
            guard case .fingerprintMismatch(_, let expected, let actual)? = error as? IMAPClientError else { return false }
            return expected == String(repeating: "ab", count: 32) && actual == server.certificateSHA256.lowercased().filter(\.isHexDigit)
        }

        // Wrong password: an authentication error, not retryable.
        var badPassword = Self.configuration(server, security: .startTLS, compress: false)
        badPassword.credentials = .password(user: server.users[0].name, password: "wrong")
        await #expect { try await IMAPConnection.withConnection(configuration: badPassword) { _ in } } throws: { error in
            guard let error = error as? IMAPClientError, case .authenticationFailed = error else { return false }
            return !error.isRetryable
        }

        // IDLE sees a message delivered by another session.
        let config = Self.configuration(server, security: .startTLS, compress: true)
        try await IMAPConnection.withConnection(configuration: config) { imap in
            let before = try await imap.select("INBOX").exists
            let idle = try await imap.idle()
            _ = try server.saveMessage(user: server.users[0].name, bytes: Corpus.message(index: 99))
            var sawExists = false
            for await event in imap.unsolicitedEvents {
                if case .exists(let n) = event, n > before { sawExists = true; break }
            }
            try await idle.done()
            #expect(sawExists)
        }

        // Credentials never reach the log, even with wire tracing at trace level.
        let handler = MemoryLogHandler()
        var traced = Self.configuration(server, security: .plaintext, compress: false)
        traced.wireTrace = true
        traced.logger = Logger(label: "test") { _ in handler }
        traced.logger.logLevel = .trace
        try await IMAPConnection.withConnection(configuration: traced) { imap in try await imap.noop() }
        let log = handler.lines.withLock { $0.joined(separator: "\n") }
        let password = server.users[0].password
        let blob = SessionPolicy.base64(Array("\0\(server.users[0].name)\0\(password)".utf8))
        #expect(log.contains("AUTHENTICATE"), "the trace must show the login happened")
        #expect(!log.contains(password))
        #expect(!log.contains(blob))
    }

    @Test func fallbacksWhenExtensionsAreHidden() async throws {
        let server = try await DovecotServer.start(.init(disabledCapabilities: [
            "QRESYNC", "CONDSTORE", "LITERAL+", "MULTIAPPEND", "UIDPLUS", "MOVE", "COMPRESS=DEFLATE", "ESEARCH",
            "LIST-STATUS", "UNSELECT", "SASL-IR", "SPECIAL-USE", "LIST-EXTENDED",
        ]))
        defer { server.stop() }
        let config = Self.configuration(server, security: .startTLS, compress: true)
        try await Self.exerciseCommands(server, config, label: "fallback", fullFeatured: false)
    }

    @Test func startTLSStrippingStopsBeforeCredentials() async throws {
        // A fake server that never offers STARTTLS and records everything it receives.
        let received = ByteLog()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(RecordingServer(received: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { channel.close(promise: nil) }
        let config = IMAPConfiguration(host: "127.0.0.1", port: channel.localAddress!.port!, security: .startTLS,
                                       credentials: .password(user: "alice", password: "s3cret-stripped"))
        await #expect(throws: IMAPClientError.startTLSNotOffered(host: "127.0.0.1")) {
            try await IMAPConnection.withConnection(configuration: config) { _ in }
        }
        let text = String(decoding: received.bytes.withLock { $0 }, as: UTF8.self)
        #expect(!text.contains("s3cret-stripped"))
        #expect(!text.uppercased().contains("AUTHENTICATE"))
        #expect(!text.uppercased().contains("LOGIN"))
    }
}

/// Greets with a capability list lacking STARTTLS and answers every command OK.
final class RecordingServer: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let received: ByteLog
    init(received: ByteLog) { self.received = received }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] fake\r\n")), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(unwrapInboundIn(data).readableBytesView)
        received.bytes.withLock { $0 += bytes }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\r\n") {
            guard let tag = line.split(separator: " ").first else { continue }
            let reply = line.uppercased().contains("CAPABILITY") ? "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n\(tag) OK done\r\n" : "\(tag) OK done\r\n"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
        }
    }
}

/// Shared between the fake server's event loop and the test.
final class ByteLog: Sendable {
    let bytes = Mutex<[UInt8]>([])
}

@Suite struct InboxStatusFirstTests {
    /// Dovecot answers INBOX's STATUS from its index only while no LIST has
    /// walked the mailbox list, so `inboxStatusFirst` must put it on the wire
    /// first, and must give exactly what LIST-STATUS gives.
    @Test("INBOX's STATUS goes out ahead of the LIST and every status equals LIST-STATUS's")
    func inboxStatusFirstMatchesListStatus() async throws {
        let server = try await DovecotServer.start()
        defer { server.stop() }
        let user = server.users[0].name
        _ = try server.seedMaildir(user: user, messages: (0..<3).map { Corpus.message(index: $0) }, flags: ["\\Seen"])
        _ = try server.seedMaildir(user: user, mailbox: "Lists/swift-dev", messages: (3..<5).map { Corpus.message(index: $0) })
        _ = try server.saveMessage(user: user, mailbox: "INBOX", bytes: Corpus.message(index: 9))

        let handler = MemoryLogHandler()
        var config = IMAPConnectionIntegrationTests.configuration(server, security: .plaintext, compress: false)
        config.wireTrace = true
        config.logger = Logger(label: "test") { _ in handler }
        config.logger.logLevel = .trace
        let items: [StatusAttribute] = [.uidValidity, .uidNext, .messages, .highestModSeq]
        try await IMAPConnection.withConnection(configuration: config) { imap in
            #expect(await imap.serverID?["name"] == "Dovecot")
            #expect(await imap.capabilities.contains(.listStatus))
            handler.lines.withLock { $0.removeAll() }
            let first = try await imap.list(options: ListOptions(returnSpecialUse: true, returnStatus: items), inboxStatusFirst: true)
            let sent = handler.lines.withLock { $0 }.filter { $0.contains("C: ") }
            let statusInbox = try #require(sent.firstIndex { $0.contains("STATUS") && $0.contains("INBOX") })
            let list = try #require(sent.firstIndex { $0.contains(" LIST ") })
            #expect(statusInbox < list)
            #expect(!sent[list].contains("STATUS"), "the LIST must not ask for STATUS: Dovecot would read INBOX's uidlist")

            let listStatus = try await imap.list(options: ListOptions(returnSpecialUse: true, returnStatus: items))
            // Dovecot lists in a different order each time: compared by name.
            #expect(first.map(\.name).sorted() == listStatus.map(\.name).sorted())
            let viaListStatus = Dictionary(uniqueKeysWithValues: listStatus.map { ($0.name, $0) })
            for mailbox in first {
                #expect(mailbox.status == viaListStatus[mailbox.name]?.status, "\(mailbox.name)")
                #expect(mailbox.specialUse == viaListStatus[mailbox.name]?.specialUse, "\(mailbox.name)")
            }
            let inbox = try #require(first.first { $0.name == "INBOX" }?.status)
            #expect(inbox.messages == 4)
            #expect(first.first { $0.name == "Lists/swift-dev" }?.status?.messages == 2)
            #expect(first.contains { $0.status == nil }, "a \\Noselect parent (Lists) has no status")
        }
    }
}
