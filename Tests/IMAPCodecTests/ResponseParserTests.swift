import IMAPCodec
import NIOCore
import Testing

@Suite("Response parser: status, capability and mailbox data")
struct ResponseParserTests {
    @Test func dovecotGreetingCarriesCapabilities() throws {
        let events = try parseAll("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n", greeting: true)
        let expectedCaps = ["IMAP4REV1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "LITERAL+", "STARTTLS", "AUTH=PLAIN"].map(Capability.init)
        #expect(events == [.greeting(UntaggedCondition(status: .ok, text: ResponseText(code: .capability(expectedCaps), text: "Dovecot (Debian) ready.")))])
    }

    @Test(arguments: [
        ("* PREAUTH IMAP4rev1 server logged in as Smith\r\n", ResponseStatus.preauth),
        ("* BYE Autologout; idle for too long\r\n", .bye),
        ("* OK Gimap ready for requests from 192.0.2.1 x1mb12345\r\n", .ok),
        ("* OK The Microsoft Exchange IMAP4 service is ready.\r\n", .ok),
        ("* ok\r\n", .ok),
    ])
    func greetings(line: String, status: ResponseStatus) throws {
        guard case .greeting(let condition)? = try parseAll(line, greeting: true).first else {
            Issue.record("no greeting")
            return
        }
        #expect(condition.status == status)
    }

    @Test func greetingMustBeAStatusResponse() {
        let error = parseError("* 3 EXISTS\r\n", greeting: true)
        #expect(error?.rule.contains("expected greeting") == true)
    }

    @Test func postLoginCapabilities() throws {
        let line = "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE COMPRESS=DEFLATE\r\n"
        guard case .capability(let caps)? = try untagged(line) else { Issue.record("not capability"); return }
        #expect(caps.count == 37)
        #expect(caps.contains(.qresync) && caps.contains(.compressDeflate) && caps.contains(.notify))
    }

    @Test func taggedResponsesWithCodes() throws {
        let events = try parseAll("""
            a1 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r
            a2 NO [TRYCREATE] Mailbox doesn't exist: Foo\r
            a3 OK [APPENDUID 1700000000 42] Append completed.\r
            a4 OK [COPYUID 38505 304,319:320 3956:3958] Done\r
            a5 NO [MODIFIED 7,9] Conditional STORE failed\r
            a6 BAD [PARSE] Bad syntax\r
            a7 OK [CLOSED] Previous mailbox closed.\r
            a8 no [ALERT] Quota exceeded\r
            a9 OK [X-SOMETHING some words] fine\r
            b1 OK [UIDNOTSTICKY]\r
            b2 OK [HIGHESTMODSEQ 5] \r

            """)
        let codes = events.compactMap { event -> ResponseCode? in
            if case .tagged(let t) = event { return t.text.code }
            return nil
        }
        #expect(codes == [
            .readWrite, .tryCreate, .appendUID(uidValidity: 1_700_000_000, uids: UIDSet([42])),
            .copyUID(uidValidity: 38505, source: UIDSet([304, 319, 320]), destination: UIDSet(3956...3958)),
            .modified(UIDSet([7, 9])), .parse, .closed, .alert, .other(name: "X-SOMETHING", text: "some words"),
            .uidNotSticky, .highestModSeq(5),
        ])
        #expect(events[7] == .tagged(TaggedResponse(tag: "a8", status: .no, text: ResponseText(code: .alert, text: "Quota exceeded"))))
        #expect(events[9] == .tagged(TaggedResponse(tag: "b1", status: .ok, text: ResponseText(code: .uidNotSticky, text: ""))))
    }

    @Test func untaggedSelectData() throws {
        let events = try parseAll("""
            * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded NonJunk)\r
            * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded NonJunk \\*)] Flags permitted.\r
            * 3 EXISTS\r
            * 0 RECENT\r
            * OK [UNSEEN 2] First unseen.\r
            * OK [UIDVALIDITY 1700000000] UIDs valid\r
            * OK [UIDNEXT 4] Predicted next UID\r
            * OK [HIGHESTMODSEQ 5] Highest\r
            * OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences\r
            * OK\r
            * 2 EXPUNGE\r

            """)
        #expect(events.count == 11)
        #expect(events[0] == .untagged(.flags([.answered, .flagged, .deleted, .seen, .draft, Flag("$Forwarded"), Flag("NonJunk")])))
        guard case .untagged(.condition(let permanent)) = events[1], case .permanentFlags(let flags)? = permanent.text.code else {
            Issue.record("PERMANENTFLAGS missing")
            return
        }
        #expect(flags.last == .wildcard)
        #expect(events[2] == .untagged(.exists(3)))
        #expect(events[3] == .untagged(.recent(0)))
        #expect(events[5] == .untagged(.condition(UntaggedCondition(status: .ok, text: ResponseText(code: .uidValidity(1_700_000_000), text: "UIDs valid")))))
        #expect(events[6] == .untagged(.condition(UntaggedCondition(status: .ok, text: ResponseText(code: .uidNext(4), text: "Predicted next UID")))))
        #expect(events[7] == .untagged(.condition(UntaggedCondition(status: .ok, text: ResponseText(code: .highestModSeq(5), text: "Highest")))))
        #expect(events[9] == .untagged(.condition(UntaggedCondition(status: .ok, text: ResponseText(text: "")))))
        #expect(events[10] == .untagged(.expunge(sequenceNumber: 2)))
    }

    @Test func listResponses() throws {
        #expect(try untagged("* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n")
            == .list(MailboxListEntry(attributes: [.hasNoChildren, .sent], delimiter: "/", name: name("Sent"))))
        // Gmail: quoted names with brackets and spaces.
        #expect(try untagged("* LIST (\\All \\HasNoChildren) \"/\" \"[Gmail]/All Mail\"\r\n")
            == .list(MailboxListEntry(attributes: [.all, .hasNoChildren], delimiter: "/", name: name("[Gmail]/All Mail"))))
        // Cyrus: "." delimiter, lowercase attribute spelling is canonicalised.
        #expect(try untagged("* LIST (\\noselect \\haschildren) \".\" INBOX.Archive\r\n")
            == .list(MailboxListEntry(attributes: [.noSelect, .hasChildren], delimiter: ".", name: name("INBOX.Archive"))))
        // Flat namespace and a name sent as a literal with 8-bit bytes kept verbatim.
        #expect(try untagged("* LIST () NIL {5}\r\nf\u{e9}\"o\r\n")
            == .list(MailboxListEntry(attributes: [], delimiter: nil, name: MailboxName(wireBytes: Array("fé\"o".utf8)))))
        // RFC 5258 extended data.
        #expect(try untagged("* LIST (\\NonExistent) \"/\" Foo (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n")
            == .list(MailboxListEntry(attributes: [.nonExistent], delimiter: "/", name: name("Foo"), extendedData: ["CHILDINFO": "SUBSCRIBED"])))
        #expect(try untagged("* LIST () \"/\" New (\"OLDNAME\" (\"Old Name\"))\r\n")
            == .list(MailboxListEntry(attributes: [], delimiter: "/", name: name("New"), extendedData: ["OLDNAME": "Old Name"])))
        #expect(try untagged("* LSUB () \"/\" \"Lists/swift\"\r\n")
            == .lsub(MailboxListEntry(attributes: [], delimiter: "/", name: name("Lists/swift"))))
        #expect(try untagged("* XLIST (\\HasNoChildren \\Inbox) \"/\" \"Inbox\"\r\n")
            == .list(MailboxListEntry(attributes: [.hasNoChildren, MailboxAttribute("\\Inbox")], delimiter: "/", name: name("Inbox"))))
    }

    @Test func listNameRoundTripsThroughModifiedUTF7() throws {
        let original = "~peter/mail/台北/日本語"
        let wire = MailboxName(original, encoding: .modifiedUTF7)
        let line = "* LIST () \"/\" \(String(decoding: wire.wireBytes, as: UTF8.self))\r\n"
        guard case .list(let entry)? = try untagged(line) else { Issue.record("not a LIST"); return }
        #expect(entry.name == wire)
        #expect(try entry.name.displayName(encoding: .modifiedUTF7) == original)
    }

    @Test func statusResponses() throws {
        #expect(try untagged("* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1700000000 HIGHESTMODSEQ 7)\r\n")
            == .status(name("INBOX"), MailboxStatus(messages: 3, uidNext: 4, uidValidity: 1_700_000_000, highestModSeq: 7)))
        // Exchange's trailing space, unknown items and SIZE.
        #expect(try untagged("* STATUS \"Sent Items\" (MESSAGES 0 SIZE 123456789012 MAILBOXID (F1234) UNSEEN 0 )\r\n")
            == .status(name("Sent Items"), MailboxStatus(messages: 0, unseen: 0, size: 123_456_789_012)))
    }

    @Test func searchAndESearch() throws {
        #expect(try untagged("* SEARCH 2 84 882\r\n") == .search([2, 84, 882], modSeq: nil))
        #expect(try untagged("* SEARCH\r\n") == .search([], modSeq: nil))
        #expect(try untagged("* SEARCH 2 5 \r\n") == .search([2, 5], modSeq: nil))
        #expect(try untagged("* SEARCH 2 5 6 7 (MODSEQ 917162500)\r\n") == .search([2, 5, 6, 7], modSeq: 917_162_500))
        #expect(try untagged("* ESEARCH (TAG \"A282\") UID MIN 2 COUNT 3 ALL 2,10:11 MODSEQ 99\r\n")
            == .esearch(ESearchResponse(correlator: "A282", uid: true, min: 2, count: 3, all: UIDSet([2, 10, 11]), modSeq: 99)))
        #expect(try untagged("* ESEARCH (TAG \"a5\")\r\n") == .esearch(ESearchResponse(correlator: "a5")))
    }

    @Test func vanished() throws {
        #expect(try untagged("* VANISHED (EARLIER) 1:3,5\r\n") == .vanished(UIDSet([1, 2, 3, 5]), earlier: true))
        #expect(try untagged("* VANISHED 405,407,410:412\r\n") == .vanished(UIDSet([405, 407, 410, 411, 412]), earlier: false))
        #expect(try untagged("* VANISHED 9:7\r\n") == .vanished(UIDSet(7...9), earlier: false))
    }

    @Test func enabledIDAndNamespace() throws {
        #expect(try untagged("* ENABLED CONDSTORE QRESYNC\r\n") == .enabled([.condStore, .qresync]))
        #expect(try untagged("* ENABLED\r\n") == .enabled([]))
        #expect(try untagged("* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n") == .id(["name": "Dovecot"]))
        #expect(try untagged("* ID NIL\r\n") == .id(nil))
        #expect(try untagged("* NAMESPACE ((\"\" \"/\")) ((\"~\" \"/\")) ((\"#shared/\" \"/\")(\"#public/\" \"/\" \"X-PARAM\" (\"FLAG1\" \"FLAG2\")))\r\n")
            == .namespace(NamespaceResponse(personal: [NamespaceDescription(prefix: "", delimiter: "/")],
                                            otherUsers: [NamespaceDescription(prefix: "~", delimiter: "/")],
                                            shared: [NamespaceDescription(prefix: "#shared/", delimiter: "/"),
                                                     NamespaceDescription(prefix: "#public/", delimiter: "/")])))
        #expect(try untagged("* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n")
            == .namespace(NamespaceResponse(personal: [NamespaceDescription(prefix: "INBOX.", delimiter: ".")], otherUsers: [], shared: [])))
    }

    @Test func unknownUntaggedDataIsNamedAndSkipped() throws {
        #expect(try untagged("* QUOTA \"\" (STORAGE 10 512)\r\n") == .unknown(name: "QUOTA"))
    }

    @Test func continuationRequests() throws {
        #expect(try parseAll("+ Ready for literal data\r\n") == [.continuation("Ready for literal data")])
        #expect(try parseAll("+\r\n") == [.continuation("")])
        #expect(try parseAll("+ \r\n") == [.continuation("")])
        #expect(try parseAll("+ dGVzdA==\r\n") == [.continuation("dGVzdA==")])
        // Status text ending in something that looks like a literal header is still one line.
        #expect(try parseAll("a1 NO quota {5}\r\n") == [.tagged(TaggedResponse(tag: "a1", status: .no, text: ResponseText(text: "quota {5}")))])
    }

    @Test func quotedStringEscapesAndEightBitBytes() throws {
        var bytes = Array("* LIST () \"/\" \"a\\\"b\\\\c ".utf8)
        bytes += [0xC3, 0xA9]
        bytes += Array("\"\r\n".utf8)
        let events = try parseChunks([bytes])
        #expect(events == [.untagged(.list(MailboxListEntry(attributes: [], delimiter: "/", name: MailboxName(wireBytes: Array("a\"b\\c é".utf8)))))])
    }

    @Test(arguments: allFixtures)
    func byteByByteFeedingYieldsTheSameEvents(fixture: String) throws {
        let whole = mergingBodyBytes(try parseAll(fixture))
        let bytewise = mergingBodyBytes(try parseByteByByte(fixture))
        #expect(!whole.isEmpty)
        #expect(whole == bytewise)
    }
}

/// Every success fixture, for the chunking test.
let allFixtures: [String] = [
    "* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1700000000] UIDs valid\r\n",
    "* OK [HIGHESTMODSEQ 5] Highest\r\n",
    "* VANISHED (EARLIER) 1:3,5\r\n",
    "* 1 FETCH (UID 1 MODSEQ (3) FLAGS (\\Seen $Forwarded))\r\n",
    "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n",
    "* LIST () NIL {5}\r\nf\u{e9}\"o\r\n",
    "* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1700000000 HIGHESTMODSEQ 7)\r\n",
    "a4 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
    "* 2 FETCH (UID 7 RFC822.SIZE 12 BODY[] {12}\r\nHello\r\nworld INTERNALDATE \" 7-Jul-1996 02:44:25 -0700\")\r\n",
    "* 3 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {21}\r\nMessage-ID: <a@b>\r\n\r\n UID 9 BODY[1]<0> \"x\\\"y\" BINARY[2] ~{3}\r\nabc)\r\n",
    "* 4 FETCH (X-GM-LABELS (\"\\\\Inbox\" foo) ENVELOPE (\"d\" {3}\r\nsub NIL ((NIL NIL \"a\" \"b\")) NIL) UID 4 BODY[] NIL)\r\n",
    "* ESEARCH (TAG \"a1\") UID MIN 1 MAX 9 ALL 1:3,5 COUNT 4\r\n+ go ahead\r\n",
    "* NAMESPACE ((\"\" \"/\")) NIL ((\"Shared/\" \"/\"))\r\n* ID (\"name\" \"Dovecot\")\r\n",
]
