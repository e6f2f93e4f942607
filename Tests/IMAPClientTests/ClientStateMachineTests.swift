import IMAPCodec
import NIOCore
import Testing

@testable import IMAPClient

/// Event → action tables for the sans-I/O core: no sockets, no clocks.
@Suite struct ClientStateMachineTests {
    private func line(_ s: String) -> CommandChunk { .bytes(ByteBuffer(string: s)) }
    private func ok(_ tag: String, _ code: ResponseCode? = nil) -> ResponseEvent {
        .tagged(TaggedResponse(tag: tag, status: .ok, text: ResponseText(code: code, text: "done")))
    }

    @Test func greetingIsReported() {
        var sm = ClientStateMachine()
        let greeting = UntaggedCondition(status: .ok, text: ResponseText(code: .capability([.imap4rev1, .startTLS]), text: "ready"))
        #expect(sm.receive(.greeting(greeting)) == [.greeting(greeting)])
        #expect(sm.greetingReceived)
    }

    @Test func pipelinedCommandsAreWrittenAtOnceAndCompletedByTag() {
        var sm = ClientStateMachine()
        let a = CommandID(1), b = CommandID(2)
        #expect(sm.enqueue(id: a, tag: "A1", role: .fetch(UIDSet(1...10)), chunks: [line("A1 UID FETCH 1:10 (UID)\r\n")])
            == [.write(ByteBuffer(string: "A1 UID FETCH 1:10 (UID)\r\n"))])
        #expect(sm.enqueue(id: b, tag: "A2", role: .fetch(UIDSet(11...20)), chunks: [line("A2 UID FETCH 11:20 (UID)\r\n")])
            == [.write(ByteBuffer(string: "A2 UID FETCH 11:20 (UID)\r\n"))])
        // Completion out of order is routed by tag.
        #expect(sm.receive(ok("A2")) == [.completed(b, TaggedResponse(tag: "A2", status: .ok, text: ResponseText(text: "done")))])
        #expect(sm.outstandingCommands == [a])
        #expect(sm.receive(ok("A1")).count == 1)
        #expect(!sm.hasOutstandingCommands)
    }

    @Test func fetchResponsesAreRoutedByUID() {
        var sm = ClientStateMachine()
        let a = CommandID(1), b = CommandID(2)
        _ = sm.enqueue(id: a, tag: "A1", role: .fetch(UIDSet(1...10)), chunks: [line("x\r\n")])
        _ = sm.enqueue(id: b, tag: "A2", role: .fetch(UIDSet(11...20)), chunks: [line("y\r\n")])
        #expect(sm.receive(.fetch(.start(sequenceNumber: 12))).isEmpty)  // owner unknown until UID
        #expect(sm.receive(.fetch(.attribute(.uid(15)))) == [.fetch(b, .start(sequenceNumber: 12)), .fetch(b, .attribute(.uid(15)))])
        #expect(sm.receive(.fetch(.bodyBegin(BodySection(kind: .body), size: 3))) == [.fetch(b, .bodyBegin(BodySection(kind: .body), size: 3))])
        #expect(sm.receive(.fetch(.finish)) == [.fetch(b, .finish)])
        // A FETCH without UID (flag change by someone else) is unsolicited.
        _ = sm.receive(.fetch(.start(sequenceNumber: 1)))
        _ = sm.receive(.fetch(.attribute(.flags([.seen]))))
        #expect(sm.receive(.fetch(.finish)) == [.fetch(nil, .start(sequenceNumber: 1)), .fetch(nil, .attribute(.flags([.seen]))), .fetch(nil, .finish)])
    }

    @Test func synchronizingLiteralHoldsBackLaterCommands() {
        var sm = ClientStateMachine()
        let append = CommandID(1), noop = CommandID(2)
        let actions = sm.enqueue(id: append, tag: "A1", role: .generic,
                                 chunks: [line("A1 APPEND INBOX {5}\r\n"), .waitForContinuation, .appendBody(index: 0, size: 5), line("\r\n")])
        #expect(actions == [.write(ByteBuffer(string: "A1 APPEND INBOX {5}\r\n"))])
        // NOOP must not be written into the middle of the literal.
        #expect(sm.enqueue(id: noop, tag: "A2", role: .generic, chunks: [line("A2 NOOP\r\n")]).isEmpty)
        #expect(sm.receive(.continuation("go ahead")) == [.streamAppendBody(append, index: 0, size: 5)])
        #expect(sm.appendBodyWritten(append) == [.write(ByteBuffer(string: "\r\n")), .write(ByteBuffer(string: "A2 NOOP\r\n"))])
    }

    @Test func literalRejectedWithNoReleasesTheQueue() {
        var sm = ClientStateMachine()
        _ = sm.enqueue(id: CommandID(1), tag: "A1", role: .generic,
                       chunks: [line("A1 APPEND INBOX {999999999}\r\n"), .waitForContinuation, .appendBody(index: 0, size: 999_999_999)])
        _ = sm.enqueue(id: CommandID(2), tag: "A2", role: .generic, chunks: [line("A2 NOOP\r\n")])
        let no = ResponseEvent.tagged(TaggedResponse(tag: "A1", status: .no, text: ResponseText(code: .overQuota, text: "too big")))
        let actions = sm.receive(no)
        #expect(actions.first == .completed(CommandID(1), TaggedResponse(tag: "A1", status: .no, text: ResponseText(code: .overQuota, text: "too big"))))
        #expect(actions.last == .write(ByteBuffer(string: "A2 NOOP\r\n")))
    }

    @Test func anEarlyAnswerDoesNotCutANonSynchronizingLiteralShort() {
        var sm = ClientStateMachine()
        let append = CommandID(1), logout = CommandID(2)
        let actions = sm.enqueue(id: append, tag: "A1", role: .generic,
                                 chunks: [line("A1 APPEND INBOX {100000+}\r\n"), .appendBody(index: 0, size: 100_000), line("\r\n")])
        #expect(actions == [.write(ByteBuffer(string: "A1 APPEND INBOX {100000+}\r\n")), .streamAppendBody(append, index: 0, size: 100_000)])
        #expect(sm.enqueue(id: logout, tag: "A2", role: .generic, chunks: [line("A2 LOGOUT\r\n")]).isEmpty)
        // Dovecot refuses an over-size message as soon as it reads the literal's size.
        let no = TaggedResponse(tag: "A1", status: .no, text: ResponseText(code: .other(name: "LIMIT", text: nil), text: "too large"))
        #expect(sm.receive(.tagged(no)) == [.completed(append, no)], "LOGOUT must not be written into the literal")
        // Once the last byte is out, the line is ended and the queue moves on.
        #expect(sm.appendBodyWritten(append) == [.write(ByteBuffer(string: "\r\n")), .write(ByteBuffer(string: "A2 LOGOUT\r\n"))])
        #expect(sm.outstandingCommands == [logout])
    }

    @Test func idleWaitsForContinuationBeforeDone() {
        var sm = ClientStateMachine()
        let idle = CommandID(1)
        #expect(sm.enqueue(id: idle, tag: "A1", role: .idle, chunks: [line("A1 IDLE\r\n")]).count == 1)
        #expect(sm.endIdle(idle).isEmpty)  // DONE before `+` would be a bogus command
        #expect(sm.receive(.continuation("idling")) == [.idleStarted(idle), .write(ClientStateMachine.doneLine)])
        #expect(sm.receive(.untagged(.exists(3))) == [.untagged(nil, .exists(3))])
    }

    @Test func startTLSPausesWritesUntilResumed() {
        var sm = ClientStateMachine()
        _ = sm.enqueue(id: CommandID(1), tag: "A1", role: .startTLS, chunks: [line("A1 STARTTLS\r\n")])
        #expect(sm.enqueue(id: CommandID(2), tag: "A2", role: .capability, chunks: [line("A2 CAPABILITY\r\n")]).isEmpty)
        let actions = sm.receive(ok("A1"))
        #expect(actions.count == 1)  // completion only: CAPABILITY must wait for the TLS handler
        #expect(sm.writesPaused)
        #expect(sm.resumeWrites() == [.write(ByteBuffer(string: "A2 CAPABILITY\r\n"))])
    }

    @Test func untaggedDataGoesToTheCommandThatAskedForIt() {
        var sm = ClientStateMachine()
        _ = sm.enqueue(id: CommandID(1), tag: "A1", role: .list, chunks: [line("l\r\n")])
        let entry = MailboxListEntry(attributes: [], delimiter: "/", name: .inbox)
        #expect(sm.receive(.untagged(.list(entry))) == [.untagged(CommandID(1), .list(entry))])
        #expect(sm.receive(.untagged(.exists(4))) == [.untagged(nil, .exists(4))])
        #expect(sm.receive(.untagged(.capability([.imap4rev1]))) == [.untagged(nil, .capability([.imap4rev1]))])
    }

    @Test func byeAndProtocolViolations() {
        var sm = ClientStateMachine()
        let bye = UntaggedCondition(status: .bye, text: ResponseText(text: "shutting down"))
        #expect(sm.receive(.untagged(.condition(bye))) == [.bye(bye)])
        guard case .protocolViolation? = sm.receive(ok("Z9")).first else {
            Issue.record("unknown tag must be a protocol violation")
            return
        }
        guard case .protocolViolation? = sm.receive(.continuation("?")).first else {
            Issue.record("continuation with nothing waiting must be a protocol violation")
            return
        }
    }

    @Test func saslErrorChallengeIsAnsweredWithEmptyLine() {
        var sm = ClientStateMachine()
        _ = sm.enqueue(id: CommandID(1), tag: "A1", role: .authenticate, chunks: [line("A1 AUTHENTICATE XOAUTH2 abc\r\n")])
        #expect(sm.receive(.continuation("eyJzdGF0dXMiOiI0MDEifQ==")) == [.write(ByteBuffer(string: "\r\n"))])
    }
}

@Suite struct SessionPolicyTests {
    @Test func startTLSRequiredButNotOfferedFailsBeforeCredentials() throws {
        #expect(throws: IMAPClientError.startTLSNotOffered(host: "h")) {
            try SessionPolicy.tlsStep(security: .startTLS, tlsActive: false, capabilities: [.imap4rev1, .auth("PLAIN")], host: "h")
        }
        #expect(try SessionPolicy.tlsStep(security: .startTLS, tlsActive: false, capabilities: [.startTLS], host: "h") == .startTLS)
        #expect(try SessionPolicy.tlsStep(security: .plaintext, tlsActive: false, capabilities: [], host: "h") == .proceed)
    }

    @Test func credentialsAreNeverPlannedOverPlaintextUnlessAllowed() throws {
        let creds = IMAPConfiguration.Credentials.password(user: "u", password: "p")
        #expect(throws: IMAPClientError.insecureAuthRefused(host: "h")) {
            try SessionPolicy.authPlan(credentials: creds, capabilities: [.auth("PLAIN")], encrypted: false, allowInsecureAuth: false, host: "h")
        }
        #expect(try SessionPolicy.authPlan(credentials: creds, capabilities: [.auth("PLAIN"), .saslIR], encrypted: true,
                                           allowInsecureAuth: false, host: "h")
            == .authenticate(mechanism: "PLAIN", initialResponse: "AHUAcA==", inline: true))
        #expect(try SessionPolicy.authPlan(credentials: creds, capabilities: [], encrypted: true, allowInsecureAuth: false, host: "h")
            == .login(user: "u", password: "p"))
        #expect(throws: IMAPClientError.authenticationMechanismUnavailable(host: "h", mechanism: "XOAUTH2")) {
            try SessionPolicy.authPlan(credentials: .xoauth2(user: "u", token: "t"), capabilities: [.auth("PLAIN")],
                                       encrypted: true, allowInsecureAuth: false, host: "h")
        }
    }

    @Test func base64MatchesRFC4648Vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors { #expect(SessionPolicy.base64(Array(plain.utf8)) == encoded) }
    }

    @Test func enablesOnlyOfferedExtensions() {
        #expect(SessionPolicy.extensionsToEnable([.enable, .condStore, .utf8Accept]) == [.condStore, .utf8Accept])
        #expect(SessionPolicy.extensionsToEnable([.condStore]).isEmpty)
    }
}
