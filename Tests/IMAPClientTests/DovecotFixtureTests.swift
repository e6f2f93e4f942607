import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TestSupport

/// Smoke tests for the Dovecot fixture itself, using only raw sockets and the `openssl` CLI so
/// they stay independent of Ferrymail's IMAP client.
@Suite("Dovecot fixture")
struct DovecotFixtureTests {
    static let requiredCapabilities = [
        "IMAP4rev1", "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "NOTIFY", "COMPRESS=DEFLATE", "LIST-STATUS",
        "SPECIAL-USE", "MULTIAPPEND", "LITERAL+", "ENABLE", "ID",
    ]

    /// Logs in over the plain port and returns the post-login CAPABILITY list.
    static func postLoginCapabilities(_ server: DovecotServer, user: DovecotServer.TestUser) throws -> [String] {
        let connection = try RawIMAPConnection(host: server.host, port: server.plainPort)
        defer { connection.close() }
        try connection.ok("LOGIN \(user.name) \(user.password)")
        let capabilities = RawIMAPConnection.capabilities(in: try connection.ok("CAPABILITY"))
        try connection.ok("LOGOUT")
        return capabilities
    }

    /// Runs an IMAP exchange through `openssl s_client` against the implicit-TLS port.
    static func tlsTranscript(_ server: DovecotServer, caFile: String, commands: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "s_client", "-connect", "\(server.tlsHost):\(server.tlsPort)", "-CAfile", caFile,
            "-verify_return_error", "-verify_ip", server.tlsHost, "-quiet", "-ign_eof",
        ]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(commands.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("two servers start in parallel and advertise the full capability set")
    func parallelServers() async throws {
        async let first = DovecotServer.start()
        async let second = DovecotServer.start()
        let servers = try await [first, second]
        defer { servers.forEach { $0.stop() } }

        #expect(servers[0].plainPort != servers[1].plainPort)
        #expect(servers[0].directory != servers[1].directory)
        for server in servers {
            #expect(server.host == "127.0.0.1")
            let alice = try server.testUser(named: "alice")
            let capabilities = try Self.postLoginCapabilities(server, user: alice)
            for required in Self.requiredCapabilities {
                #expect(capabilities.contains(required), "missing \(required) in \(capabilities)")
            }
            #expect(capabilities == server.capabilities, "fixture's expected list drifted from Dovecot's")

            let plain = try RawIMAPConnection(host: server.host, port: server.plainPort)
            #expect(RawIMAPConnection.capabilities(in: [plain.greeting]).contains("STARTTLS"))
            plain.close()

            let tls = try Self.tlsTranscript(server, caFile: server.caCertificatePath,
                                             commands: "a LOGIN alice \(alice.password)\r\nb CAPABILITY\r\nc LOGOUT\r\n")
            #expect(tls.status == 0, "\(tls.output)")
            #expect(tls.output.contains("a OK"), "\(tls.output)")
            #expect(tls.output.contains("QRESYNC"))

            let wrong = try Self.tlsTranscript(server, caFile: server.wrongCAPath, commands: "a LOGOUT\r\n")
            #expect(wrong.status != 0, "a certificate from an unrelated CA must not verify: \(wrong.output)")
            #expect(server.certificateSHA256.count == 64)
        }
    }

    @Test("disabledCapabilities hides exactly those capabilities")
    func disabledCapabilities() async throws {
        let server = try await DovecotServer.start(.init(disabledCapabilities: ["QRESYNC", "condstore"]))
        defer { server.stop() }
        let capabilities = try Self.postLoginCapabilities(server, user: server.users[0])
        #expect(!capabilities.contains("QRESYNC"))
        #expect(!capabilities.contains("CONDSTORE"))
        for kept in ["UIDPLUS", "MOVE", "NOTIFY", "COMPRESS=DEFLATE", "SPECIAL-USE", "LITERAL+"] {
            #expect(capabilities.contains(kept), "\(kept) should survive: \(capabilities)")
        }
        #expect(capabilities == server.capabilities)
    }

    @Test("feature switches turn off COMPRESS, NOTIFY and SPECIAL-USE")
    func featureSwitches() async throws {
        let server = try await DovecotServer.start(.init(compress: false, specialUse: false, notify: false))
        defer { server.stop() }
        let capabilities = try Self.postLoginCapabilities(server, user: server.users[1])
        #expect(!capabilities.contains("COMPRESS=DEFLATE"))
        #expect(!capabilities.contains("NOTIFY"))
        #expect(!capabilities.contains("SPECIAL-USE"))
        #expect(capabilities == server.capabilities)
    }

    @Test("STARTTLS can be withheld and plaintext LOGIN refused")
    func tlsPolicies() async throws {
        let stripped = try await DovecotServer.start(.init(offerSTARTTLS: false))
        defer { stripped.stop() }
        let plain = try RawIMAPConnection(host: stripped.host, port: stripped.plainPort)
        let greetingCapabilities = RawIMAPConnection.capabilities(in: [plain.greeting])
        #expect(!greetingCapabilities.isEmpty)
        #expect(!greetingCapabilities.contains("STARTTLS"))
        plain.close()
        let tls = try Self.tlsTranscript(stripped, caFile: stripped.caCertificatePath, commands: "a LOGOUT\r\n")
        #expect(tls.status == 0, "implicit TLS must still work: \(tls.output)")

        let strict = try await DovecotServer.start(.init(requireTLSForAuth: true))
        defer { strict.stop() }
        let connection = try RawIMAPConnection(host: strict.host, port: strict.plainPort)
        defer { connection.close() }
        let capabilities = RawIMAPConnection.capabilities(in: [connection.greeting])
        #expect(capabilities.contains("LOGINDISABLED"), "\(connection.greeting)")
        #expect(capabilities.contains("STARTTLS"))
        let login = try connection.command("LOGIN alice \(strict.users[0].password)")
        #expect(login.last?.contains(" NO ") == true || login.last?.contains(" BAD ") == true, "\(login)")
    }

    @Test("seeded and saved messages are visible through Dovecot; restart keeps data and ports")
    func seedingAndRestart() async throws {
        let server = try await DovecotServer.start()
        defer { server.stop() }
        let started = Date()
        let files = try await offloadBlocking {
            try server.seedMaildir(user: "alice", mailbox: "Lists/swift",
                                   messages: Corpus.messages(count: 20_000, size: 1_500, folder: "Lists/swift"),
                                   flags: ["\\Seen"])
        }
        let seedSeconds = Date().timeIntervalSince(started)
        #expect(files.count == 20_000)
        #expect(seedSeconds < 30, "seeding 20k messages took \(seedSeconds) s")
        #expect(files[0].path.contains("/Maildir/.Lists.swift/cur/"))
        #expect(files[0].lastPathComponent.hasSuffix(":2,S"))

        try server.seedMaildir(user: "alice", messages: Corpus.messages(count: 3, folder: "INBOX"), placement: .new)
        let uid = try server.saveMessage(user: "alice", mailbox: "Projects/Ferry",
                                         bytes: Corpus.message(index: 99, folder: "Projects/Ferry"),
                                         flags: ["\\Flagged", "$Forwarded"])
        #expect(uid == 1)

        let list = try server.doveadm(["mailbox", "list", "-u", "alice"])
        for name in ["INBOX", "Lists/swift", "Projects/Ferry", "Sent", "Drafts", "Trash", "Junk", "Archive"] {
            #expect(list.split(separator: "\n").contains(Substring(name)), "\(name) missing from \(list)")
        }
        // The first access indexes 20,000 files: seconds of blocking work.
        let status = try await offloadBlocking {
            try server.doveadm(["mailbox", "status", "-u", "alice", "messages unseen", "Lists/swift"])
        }
        #expect(status.contains("messages=20000"), "\(status)")
        #expect(status.contains("unseen=0"), "\(status)")
        let flags = try server.doveadm(["fetch", "-u", "alice", "flags", "mailbox", "Projects/Ferry", "ALL"])
        #expect(flags.contains("\\Flagged") && flags.contains("$Forwarded"), "\(flags)")

        let ports = (server.plainPort, server.tlsPort)
        try await offloadBlocking { try server.restart() }
        #expect(server.isRunning)
        #expect((server.plainPort, server.tlsPort) == ports)
        let inbox = try server.doveadm(["mailbox", "status", "-u", "alice", "messages recent", "INBOX"])
        #expect(inbox.contains("messages=3"), "\(inbox)")
        let connection = try RawIMAPConnection(host: server.host, port: server.plainPort)
        try connection.ok("LOGIN alice \(server.users[0].password)")
        let select = try connection.ok("SELECT Lists/swift")
        #expect(select.contains("* 20000 EXISTS"), "\(select.prefix(10))")
        connection.close()

        server.stop()
        server.stop()
        #expect(!server.isRunning)
        #expect(!server.logTail().isEmpty)
    }

    @Test("fs layout with UTF-8 names stores nested folders as directories")
    func fsLayoutUTF8() async throws {
        let server = try await DovecotServer.start(.init(mailLayout: .fs, utf8Names: true, specialUse: false))
        defer { server.stop() }
        let files = try server.seedMaildir(user: "bob", mailbox: "Grüße/Köln", messages: Corpus.messages(count: 5))
        #expect(files[0].path.contains("/Maildir/Grüße/Köln/cur/"))
        let list = try server.doveadm(["mailbox", "list", "-u", "bob"])
        #expect(list.contains("Grüße/Köln"), "\(list)")
        let status = try server.doveadm(["mailbox", "status", "-u", "bob", "messages", "Grüße/Köln"])
        #expect(status.contains("messages=5"), "\(status)")
    }

    @Test("Maildir++ stores non-ASCII names in modified UTF-7")
    func modifiedUTF7Names() async throws {
        #expect(FixtureModifiedUTF7.encode("Grüße") == "Gr&APwA3w-e")
        #expect(FixtureModifiedUTF7.encode("A&B") == "A&-B")
        let server = try await DovecotServer.start(.init(users: [.init(name: "carol", password: "pw-carol")]))
        defer { server.stop() }
        let files = try server.seedMaildir(user: "carol", mailbox: "Grüße/Ünter", messages: Corpus.messages(count: 2))
        #expect(files[0].path.contains("/Maildir/.Gr&APwA3w-e.&ANw-nter/cur/"))
        let status = try server.doveadm(["mailbox", "status", "-u", "carol", "messages", "Grüße/Ünter"])
        #expect(status.contains("messages=2"), "\(status)")
    }

    @Test("doveadm failures carry stderr")
    func doveadmErrors() async throws {
        let server = try await DovecotServer.start(.init(specialUse: false))
        defer { server.stop() }
        #expect {
            try server.doveadm(["mailbox", "status", "-u", "alice", "messages", "Does/Not/Exist"])
        } throws: { error in
            "\(error)".contains("Does/Not/Exist")
        }
        #expect(throws: FixtureError.self) { try server.testUser(named: "mallory") }
    }

    @Test("OAuth bearer tokens work via XOAUTH2 and OAUTHBEARER; expired ones are refused")
    func oauth() async throws {
        let server = try await DovecotServer.start(.init(specialUse: false, oauth: true))
        defer { server.stop() }
        func authenticate(_ mechanism: String, _ payload: String) throws -> String {
            let connection = try RawIMAPConnection(host: server.host, port: server.plainPort)
            defer { connection.close() }
            let encoded = Data(payload.utf8).base64EncodedString()
            connection.send("a AUTHENTICATE \(mechanism) \(encoded)")
            while true {
                let line = try connection.readLine()
                // On failure the server first sends error details as a continuation request,
                // which the client answers with an empty line (RFC 7628 §3.2.3).
                if line.hasPrefix("+") { connection.send("") }
                if line.hasPrefix("a ") { return line }
            }
        }
        let greeting = try RawIMAPConnection(host: server.host, port: server.plainPort).greeting
        #expect(greeting.contains("AUTH=XOAUTH2") && greeting.contains("AUTH=OAUTHBEARER"), "\(greeting)")

        let token = try server.oauthToken(user: "alice")
        #expect(try authenticate("XOAUTH2", "user=alice\u{1}auth=Bearer \(token)\u{1}\u{1}").contains(" OK "))
        #expect(try authenticate("OAUTHBEARER", "n,a=alice,\u{1}auth=Bearer \(token)\u{1}\u{1}").contains(" OK "))
        let expired = try server.oauthToken(user: "alice", expiresIn: -600)
        #expect(try authenticate("XOAUTH2", "user=alice\u{1}auth=Bearer \(expired)\u{1}\u{1}").contains(" NO "))
        // Password logins keep working next to OAuth.
        let plain = try RawIMAPConnection(host: server.host, port: server.plainPort)
        try plain.ok("LOGIN bob \(server.users[1].password)")
        plain.close()
    }

    @Test("corpus is deterministic, CRLF-only and roughly sized")
    func corpus() {
        #expect(Corpus.message(index: 7, size: 4_000, folder: "X") == Corpus.message(index: 7, size: 4_000, folder: "X"))
        #expect(Corpus.message(index: 7, folder: "X") != Corpus.message(index: 7, folder: "Y"))
        for index in 0..<30 {
            let bytes = Corpus.message(index: index, size: 3_000)
            #expect(abs(bytes.count - 3_000) < 200, "message \(index) has \(bytes.count) octets")
            for (offset, byte) in bytes.enumerated() where byte == 10 {
                #expect(offset > 0 && bytes[offset - 1] == 13, "bare LF in message \(index)")
            }
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.contains("Message-ID: \(Corpus.messageID(index: index))\r\n"))
            #expect(text.contains("=?UTF-8?B?") == (index % 3 == 1))
            #expect(text.contains("Content-Transfer-Encoding: base64") == Corpus.hasAttachment(index: index))
            let header = text.components(separatedBy: "\r\n\r\n")[0]
            #expect(header.unicodeScalars.allSatisfy { $0.isASCII }, "headers must be 7-bit")
        }
        #expect(Corpus.message(index: 0, size: 200_000).count > 199_000)
    }

    @Test("TemporaryDirectory is private and removed")
    func temporaryDirectory() throws {
        let directory = try TemporaryDirectory()
        let attributes = try FileManager.default.attributesOfItem(atPath: directory.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o700)
        try Data("x".utf8).write(to: directory.url.appendingPathComponent("file"))
        directory.remove()
        directory.remove()
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
}

@Suite("Dovecot fixture lifecycle")
struct DovecotFixtureLifecycleTests {
    @Test("dropping the last reference stops the whole process tree and removes the directory")
    func deinitCleansUp() async throws {
        let (master, directory) = try await Self.startAndDrop()
        #expect(kill(master, 0) != 0, "master \(master) still alive")
        #expect(kill(-master, 0) != 0, "process group \(master) still has members")
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    /// Starts a server and lets it go out of scope without calling `stop`.
    private static func startAndDrop() async throws -> (master: Int32, directory: String) {
        let server = try await DovecotServer.start()
        let directory = server.directory.path
        let pidText = try String(contentsOfFile: "\(directory)/run/master.pid", encoding: .utf8)
        let master = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(getpgid(master) == master, "dovecot must lead its own process group")
        #expect(server.isRunning)
        return (master, directory)
    }
}
