import IMAPCodec
import NIOCore
import Testing

/// Renders chunks as text with markers for pauses, so expectations read like a transcript.
func transcript(_ encoded: EncodedCommand) -> String {
    encoded.chunks.map { chunk in
        switch chunk {
        case .bytes(let b): return String(buffer: b)
        case .waitForContinuation: return "<wait>"
        case .appendBody(let index, let size): return "<body \(index) \(size)>"
        }
    }.joined()
}

let plainServer = CommandEncoder(capabilities: [.imap4rev1])
let literalPlusServer = CommandEncoder(capabilities: [.imap4rev1, .literalPlus, .multiAppend, .saslIR])
let literalMinusServer = CommandEncoder(capabilities: [.imap4rev1, .literalMinus])

func wire(_ command: Command, _ encoder: CommandEncoder = plainServer, tag: IMAPCodec.Tag = "a1") throws -> String {
    transcript(try encoder.encode(command, tag: tag))
}

@Suite("Command encoder")
struct CommandEncoderTests {
    @Test func simpleCommands() throws {
        #expect(try wire(.capability) == "a1 CAPABILITY\r\n")
        #expect(try wire(.noop) == "a1 NOOP\r\n")
        #expect(try wire(.logout) == "a1 LOGOUT\r\n")
        #expect(try wire(.startTLS) == "a1 STARTTLS\r\n")
        #expect(try wire(.namespace) == "a1 NAMESPACE\r\n")
        #expect(try wire(.compress) == "a1 COMPRESS DEFLATE\r\n")
        #expect(try wire(.idle) == "a1 IDLE\r\n")
        #expect(try wire(.done) == "DONE\r\n")
        #expect(try wire(.close) == "a1 CLOSE\r\n")
        #expect(try wire(.unselect) == "a1 UNSELECT\r\n")
        #expect(try wire(.expunge) == "a1 EXPUNGE\r\n")
        #expect(try wire(.enable([.condStore, .qresync])) == "a1 ENABLE CONDSTORE QRESYNC\r\n")
    }

    @Test func loginChoosesAtomQuotedOrLiteralAndRedactsThePassword() throws {
        let simple = try plainServer.encode(.login(username: "alice", password: "s3cret"), tag: "a1")
        #expect(transcript(simple) == "a1 LOGIN alice s3cret\r\n")
        #expect(simple.logDescription == "a1 LOGIN alice ***")
        #expect(try wire(.login(username: "alice smith", password: "p\"w\\d")) == "a1 LOGIN \"alice smith\" \"p\\\"w\\\\d\"\r\n")
        let eightBit = try plainServer.encode(.login(username: "alice", password: "pässword"), tag: "a1")
        #expect(transcript(eightBit) == "a1 LOGIN alice {9}\r\n<wait>pässword\r\n")
        #expect(eightBit.logDescription == "a1 LOGIN alice ***")
        #expect(!eightBit.logDescription.contains("pässword"))
        #expect(try wire(.login(username: "alice", password: "pässword"), literalPlusServer) == "a1 LOGIN alice {9+}\r\npässword\r\n")
        #expect(try wire(.login(username: "alice", password: "pässword"), literalMinusServer) == "a1 LOGIN alice {9+}\r\npässword\r\n")
        #expect(try wire(.login(username: "a\r\nb", password: "x"), literalPlusServer) == "a1 LOGIN {4+}\r\na\r\nb x\r\n")
    }

    @Test func literalMinusFallsBackToSynchronizingAbove4096Bytes() throws {
        let long = String(repeating: "é", count: 2100) // 4200 bytes
        #expect(try wire(.login(username: "u", password: long), literalMinusServer) == "a1 LOGIN u {4200}\r\n<wait>\(long)\r\n")
        #expect(try wire(.login(username: "u", password: long), literalPlusServer) == "a1 LOGIN u {4200+}\r\n\(long)\r\n")
    }

    @Test func authenticate() throws {
        let ir = try literalPlusServer.encode(.authenticate(mechanism: "PLAIN", initialResponse: "AGFsaWNlAHNlY3JldA=="), tag: "a1")
        #expect(transcript(ir) == "a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n")
        #expect(ir.logDescription == "a1 AUTHENTICATE PLAIN [credentials]")
        #expect(try wire(.authenticate(mechanism: "EXTERNAL", initialResponse: ""), literalPlusServer) == "a1 AUTHENTICATE EXTERNAL =\r\n")
        #expect(try wire(.authenticate(mechanism: "XOAUTH2", initialResponse: nil)) == "a1 AUTHENTICATE XOAUTH2\r\n")
        #expect(throws: IMAPEncodeError.self) { try plainServer.encode(.authenticate(mechanism: "PLAIN", initialResponse: "AA=="), tag: "a1") }
        let response = try plainServer.encodeAuthenticationResponse("dXNlcg==")
        #expect(transcript(response) == "dXNlcg==\r\n")
        #expect(response.logDescription == "[credentials]")
    }

    @Test func idAndMailboxCommands() throws {
        #expect(try wire(.id([("name", "ferrymail"), ("version", "0.1")])) == "a1 ID (\"name\" \"ferrymail\" \"version\" \"0.1\")\r\n")
        #expect(try wire(.id(nil)) == "a1 ID NIL\r\n")
        #expect(try wire(.select(.inbox, SelectParameters(condStore: true))) == "a1 SELECT INBOX (CONDSTORE)\r\n")
        #expect(try wire(.select(name("box"), SelectParameters(qresync: QResyncParameters(uidValidity: 1, modSeq: 2, knownUIDs: UIDSet(1...10)))))
            == "a1 SELECT box (QRESYNC (1 2 1:10))\r\n")
        #expect(try wire(.examine(name("Sent Items"), SelectParameters())) == "a1 EXAMINE \"Sent Items\"\r\n")
        #expect(try wire(.create(name("box"), specialUse: [.sent])) == "a1 CREATE box (USE (\\Sent))\r\n")
        #expect(try wire(.delete(name("a%b"))) == "a1 DELETE \"a%b\"\r\n")
        #expect(try wire(.rename(from: name("a"), to: name("b"))) == "a1 RENAME a b\r\n")
        #expect(try wire(.subscribe(name("[Gmail]/Sent"))) == "a1 SUBSCRIBE [Gmail]/Sent\r\n")
        #expect(try wire(.unsubscribe(name("x"))) == "a1 UNSUBSCRIBE x\r\n")
        #expect(try wire(.status(.inbox, [.messages, .uidNext, .uidValidity, .highestModSeq]))
            == "a1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n")
        #expect(try wire(.select(MailboxName("台北", encoding: .modifiedUTF7), SelectParameters())) == "a1 SELECT &U,BTFw-\r\n")
    }

    @Test func list() throws {
        let options = ListOptions(selectSpecialUse: true, returnSpecialUse: true, returnStatus: [.messages, .uidNext])
        #expect(try wire(.list(reference: name(""), pattern: name("*"), options: options))
            == "a1 LIST (SPECIAL-USE) \"\" \"*\" RETURN (SPECIAL-USE STATUS (MESSAGES UIDNEXT))\r\n")
        #expect(try wire(.list(reference: name(""), pattern: name("%"), options: ListOptions())) == "a1 LIST \"\" \"%\"\r\n")
        #expect(try wire(.lsub(reference: name(""), pattern: name("*"))) == "a1 LSUB \"\" \"*\"\r\n")
    }

    @Test func fetchStoreCopyMove() throws {
        #expect(try wire(.uidFetch(UIDSet.all, [.flags], changedSince: 12, vanished: true)) == "a1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12 VANISHED)\r\n")
        #expect(try wire(.uidFetch(UIDSet([1, 2, 3, 7]), [.uid, .flags, .internalDate, .rfc822Size, .modSeq, .body(), .headerFields(["MESSAGE-ID", "DATE"]), .body(specifier: "1", peek: false, partial: 0...1023), .binary(specifier: "2")], changedSince: nil, vanished: false))
            == "a1 UID FETCH 1:3,7 (UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)] BODY[1]<0.1024> BINARY.PEEK[2])\r\n")
        #expect(try wire(.uidStore(UIDSet(1...3), .add, [.seen], silent: true, unchangedSince: 5)) == "a1 UID STORE 1:3 (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Seen)\r\n")
        #expect(try wire(.uidStore(UIDSet([4]), .remove, [.flagged, Flag("$Forwarded")], silent: false, unchangedSince: nil)) == "a1 UID STORE 4 -FLAGS (\\Flagged $Forwarded)\r\n")
        #expect(try wire(.uidStore(UIDSet([4]), .replace, [], silent: true, unchangedSince: nil)) == "a1 UID STORE 4 FLAGS.SILENT ()\r\n")
        #expect(try wire(.uidCopy(UIDSet([5, 6]), name("Archive"))) == "a1 UID COPY 5:6 Archive\r\n")
        #expect(try wire(.uidMove(UIDSet([5]), name("Trash"))) == "a1 UID MOVE 5 Trash\r\n")
        #expect(try wire(.uidExpunge(UIDSet([3, 9]))) == "a1 UID EXPUNGE 3,9\r\n")
    }

    @Test func search() throws {
        #expect(try wire(.uidSearch(.all, returnOptions: nil)) == "a1 UID SEARCH ALL\r\n")
        #expect(try wire(.uidSearch(.and([.uid(UIDSet(5...UInt32.max)), .modSeq(7), .undeleted]), returnOptions: [.all, .count]))
            == "a1 UID SEARCH RETURN (ALL COUNT) UID 5:* MODSEQ 7 UNDELETED\r\n")
        #expect(try wire(.uidSearch(.or(.and([.seen, .larger(10)]), .not(.since(year: 2024, month: 2, day: 29))), returnOptions: nil))
            == "a1 UID SEARCH OR (SEEN LARGER 10) NOT SINCE 29-Feb-2024\r\n")
        #expect(try wire(.uidSearch(.header(field: "Message-ID", value: "<a b@c>"), returnOptions: nil)) == "a1 UID SEARCH HEADER Message-ID \"<a b@c>\"\r\n")
        #expect(try wire(.uidSearch(.header(field: "Subject", value: "café"), returnOptions: nil), literalPlusServer)
            == "a1 UID SEARCH CHARSET UTF-8 HEADER Subject {5+}\r\ncafé\r\n")
        #expect(throws: IMAPEncodeError.self) { try wire(.uidSearch(.before(year: 2023, month: 2, day: 29), returnOptions: nil)) }
    }

    @Test func appendAndMultiAppend() throws {
        let date = try InternalDate(imapDateTime: "17-Jul-1996 02:44:25 -0700")
        let single = try literalPlusServer.encode(.append(name("box"), [AppendMessage(flags: [.seen], internalDate: date, size: 310)]), tag: "a1")
        #expect(transcript(single) == "a1 APPEND box (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {310+}\r\n<body 0 310>\r\n")
        #expect(single.logDescription == "a1 APPEND box (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {310+} [310 bytes]")
        let multi = try literalPlusServer.encode(.append(.inbox, [AppendMessage(flags: [], internalDate: nil, size: 5),
                                                                  AppendMessage(flags: [.draft], internalDate: nil, size: 7)]), tag: "a2")
        #expect(transcript(multi) == "a2 APPEND INBOX {5+}\r\n<body 0 5> (\\Draft) {7+}\r\n<body 1 7>\r\n")
        let sync = CommandEncoder(capabilities: [.multiAppend])
        #expect(try wire(.append(.inbox, [AppendMessage(flags: [], internalDate: nil, size: 5), AppendMessage(flags: [], internalDate: nil, size: 6)]), sync)
            == "a1 APPEND INBOX {5}\r\n<wait><body 0 5> {6}\r\n<wait><body 1 6>\r\n")
        #expect(try wire(.append(.inbox, [AppendMessage(flags: [], internalDate: nil, size: 5000)]), literalMinusServer)
            == "a1 APPEND INBOX {5000}\r\n<wait><body 0 5000>\r\n")
        #expect(throws: IMAPEncodeError.self) {
            try plainServer.encode(.append(.inbox, [AppendMessage(flags: [], internalDate: nil, size: 1), AppendMessage(flags: [], internalDate: nil, size: 1)]), tag: "a1")
        }
    }

    @Test func notify() throws {
        let groups = [
            NotifyEventGroup(filter: .selected, events: [.messageNew, .messageExpunge, .flagChange], messageNewFetch: [.uid, .flags]),
            NotifyEventGroup(filter: .personal, events: [.messageNew, .messageExpunge, .flagChange, .mailboxName]),
        ]
        #expect(try wire(.notify(status: true, groups: groups))
            == "a1 NOTIFY SET STATUS (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge FlagChange MailboxName))\r\n")
        #expect(try wire(.notify(status: false, groups: [])) == "a1 NOTIFY NONE\r\n")
        #expect(try wire(.notify(status: false, groups: [NotifyEventGroup(filter: .subtree([name("Lists")]), events: [])])) == "a1 NOTIFY SET (SUBTREE (Lists) NONE)\r\n")
    }

    @Test(arguments: [
        Command.enable([Capability("BAD CAP")]),
        .uidStore(UIDSet([1]), .add, [Flag("not valid")], silent: true, unchangedSince: nil),
        .uidStore(UIDSet([1]), .add, [.recent], silent: true, unchangedSince: nil),
        .uidFetch(UIDSet(), [.flags], changedSince: nil, vanished: false),
        .uidFetch(UIDSet([1]), [.flags], changedSince: nil, vanished: true),
        .uidFetch(UIDSet([1]), [.headerFields(["X\r\nY"])], changedSince: nil, vanished: false),
        .select(MailboxName(wireBytes: []), SelectParameters()),
        .login(username: "a\u{0}b", password: "x"),
        .status(.inbox, []),
        .append(.inbox, []),
    ])
    func unencodableCommandsThrow(command: Command) {
        #expect(throws: IMAPEncodeError.self) { try plainServer.encode(command, tag: "a1") }
    }

    @Test func invalidTagIsRejected() {
        #expect(throws: IMAPEncodeError.self) { try plainServer.encode(.noop, tag: "a+1") }
        #expect(throws: IMAPEncodeError.self) { try plainServer.encode(.noop, tag: "") }
    }

    @Test func utf8AcceptSendsQuotedUTF8() throws {
        let encoder = CommandEncoder(capabilities: [.imap4rev1], mailboxNameEncoding: .utf8)
        #expect(try wire(.select(MailboxName("台北", encoding: .utf8), SelectParameters()), encoder) == "a1 SELECT \"台北\"\r\n")
        #expect(try wire(.uidSearch(.header(field: "Subject", value: "café"), returnOptions: nil), encoder) == "a1 UID SEARCH HEADER Subject \"café\"\r\n")
    }

    @Test func encodedLiteralRoundTripsThroughTheParser() throws {
        // A server echoing a name we sent as a literal gives us the same wire bytes back.
        let odd = MailboxName(wireBytes: Array("line\r\nbreak".utf8))
        let encoded = try wire(.select(odd, SelectParameters()), literalPlusServer)
        let literal = encoded.dropFirst("a1 SELECT ".count).dropLast(1) // "\r\n" is one Character
        guard case .list(let entry)? = try untagged("* LIST () \"/\" \(literal)\r\n") else { Issue.record("no LIST"); return }
        #expect(entry.name == odd)
    }
}
