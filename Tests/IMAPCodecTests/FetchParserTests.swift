import IMAPCodec
import NIOCore
import Testing

@Suite("Response parser: streamed FETCH")
struct FetchParserTests {
    @Test func dovecotFlagsAndModSeq() throws {
        #expect(try parseAll("* 1 FETCH (UID 1 MODSEQ (3) FLAGS (\\Seen $Forwarded))\r\n") == [
            .fetch(.start(sequenceNumber: 1)),
            .fetch(.attribute(.uid(1))),
            .fetch(.attribute(.modSeq(3))),
            .fetch(.attribute(.flags([.seen, Flag("$Forwarded")]))),
            .fetch(.finish),
        ])
    }

    @Test func exchangeOrderAndRecentFlag() throws {
        #expect(try parseAll("* 1 FETCH (FLAGS (\\Seen \\Recent) UID 5 )\r\n") == [
            .fetch(.start(sequenceNumber: 1)),
            .fetch(.attribute(.flags([.seen, .recent]))),
            .fetch(.attribute(.uid(5))),
            .fetch(.finish),
        ])
    }

    @Test func bodyLiteralIsStreamedBetweenAttributes() throws {
        let events = try parseAll("* 2 FETCH (UID 7 RFC822.SIZE 12 BODY[] {12}\r\nHello\r\nworld INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n")
        #expect(events == [
            .fetch(.start(sequenceNumber: 2)),
            .fetch(.attribute(.uid(7))),
            .fetch(.attribute(.rfc822Size(12))),
            .fetch(.bodyBegin(BodySection(kind: .body), size: 12)),
            .fetch(.bodyBytes(buffer("Hello\r\nworld"))),
            .fetch(.bodyEnd),
            .fetch(.attribute(.internalDate(InternalDate(year: 1996, month: 7, day: 17, hour: 2, minute: 44, second: 25, zoneMinutes: -420)))),
            .fetch(.finish),
        ])
    }

    @Test func sectionsOriginsBinaryAndRFC822Forms() throws {
        let events = try parseAll("""
            * 3 FETCH (BODY[header.fields (Message-ID)] {21}\r
            Message-ID: <a@b>\r
            \r
             BODY[1]<0> "x\\"y" BINARY[2] ~{3}\r
            abc RFC822.HEADER {0}\r
             RFC822 NIL RFC822.TEXT "")\r

            """)
        #expect(events == [
            .fetch(.start(sequenceNumber: 3)),
            .fetch(.bodyBegin(BodySection(kind: .body, specifier: "HEADER.FIELDS (MESSAGE-ID)"), size: 21)),
            .fetch(.bodyBytes(buffer("Message-ID: <a@b>\r\n\r\n"))),
            .fetch(.bodyEnd),
            .fetch(.bodyBegin(BodySection(kind: .body, specifier: "1", origin: 0), size: 3)),
            .fetch(.bodyBytes(buffer("x\"y"))),
            .fetch(.bodyEnd),
            .fetch(.bodyBegin(BodySection(kind: .binary, specifier: "2"), size: 3)),
            .fetch(.bodyBytes(buffer("abc"))),
            .fetch(.bodyEnd),
            .fetch(.bodyBegin(BodySection(kind: .rfc822Header), size: 0)),
            .fetch(.bodyEnd),
            .fetch(.bodyBegin(BodySection(kind: .rfc822), size: 0)),
            .fetch(.bodyEnd),
            .fetch(.bodyBegin(BodySection(kind: .rfc822Text), size: 0)),
            .fetch(.bodyEnd),
            .fetch(.finish),
        ])
    }

    @Test func unknownItemsAreSkippedIncludingNestedLiterals() throws {
        let events = try parseAll("""
            * 4 FETCH (X-GM-MSGID 1278455344230334865 X-GM-LABELS ("\\\\Inbox" "\\\\Sent" Important) ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" {7}\r
            Sub)ject (("A" NIL "a" "b.c")) NIL NIL NIL NIL NIL NIL "<id>") BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92) BODY ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1) UID 4)\r

            """)
        #expect(events == [
            .fetch(.start(sequenceNumber: 4)),
            .fetch(.attribute(.unknown(name: "X-GM-MSGID"))),
            .fetch(.attribute(.unknown(name: "X-GM-LABELS"))),
            .fetch(.attribute(.unknown(name: "ENVELOPE"))),
            .fetch(.attribute(.unknown(name: "BODYSTRUCTURE"))),
            .fetch(.attribute(.unknown(name: "BODY"))),
            .fetch(.attribute(.uid(4))),
            .fetch(.finish),
        ])
    }

    @Test func literalOfSizeZeroAndFetchFollowedByOtherResponses() throws {
        let events = try parseAll("* 5 FETCH (BODY[] {0}\r\n)\r\n* 6 EXISTS\r\na1 OK done\r\n")
        #expect(events == [
            .fetch(.start(sequenceNumber: 5)),
            .fetch(.bodyBegin(BodySection(kind: .body), size: 0)),
            .fetch(.bodyEnd),
            .fetch(.finish),
            .untagged(.exists(6)),
            .tagged(TaggedResponse(tag: "a1", status: .ok, text: ResponseText(text: "done"))),
        ])
    }

    @Test func bodyBytesAreSlicedToMaxBodyChunk() throws {
        let limits = ParserLimits(maxBodyChunk: 4)
        let events = try parseAll("* 1 FETCH (BODY[] {10}\r\n0123456789)\r\n", limits: limits)
        let chunks = events.compactMap { event -> Int? in
            if case .fetch(.bodyBytes(let b)) = event { return b.readableBytes }
            return nil
        }
        #expect(chunks == [4, 4, 2])
    }

    @Test func needsMoreBytesInsideLiteralAndCRLF() throws {
        var parser = ResponseParser(expectGreeting: false)
        parser.append(buffer("* 1 FETCH (BODY[] {6}\r"))
        // Nothing is reported until the line is complete.
        #expect(try parser.next() == nil)
        parser.append(buffer("\nabc"))
        #expect(try parser.next() == .fetch(.start(sequenceNumber: 1)))
        #expect(try parser.next() == .fetch(.bodyBegin(BodySection(kind: .body), size: 6)))
        #expect(try parser.next() == .fetch(.bodyBytes(buffer("abc"))))
        #expect(try parser.next() == nil)
        parser.append(buffer("def)\r"))
        #expect(try parser.next() == .fetch(.bodyBytes(buffer("def"))))
        #expect(try parser.next() == .fetch(.bodyEnd))
        #expect(try parser.next() == nil)
        parser.append(buffer("\n"))
        #expect(try parser.next() == .fetch(.finish))
        #expect(try parser.next() == nil)
    }

    /// 50 MB body in 64 KB input chunks: no event exceeds maxBodyChunk and the
    /// parser never holds more than a chunk or so of unconsumed input.
    @Test func fiftyMegabyteLiteralIsStreamedInBoundedMemory() throws {
        let bodySize = 50 * 1024 * 1024
        let chunkSize = 64 * 1024
        var parser = ResponseParser(expectGreeting: false)
        parser.append(buffer("* 1 FETCH (UID 9 BODY[] {\(bodySize)}\r\n"))
        var total = 0
        var largestEvent = 0
        var maxBuffered = 0
        var sawEnd = false
        var sawFinish = false
        func drain() throws {
            while let event = try parser.next() {
                switch event {
                case .fetch(.bodyBytes(let bytes)):
                    total += bytes.readableBytes
                    largestEvent = max(largestEvent, bytes.readableBytes)
                case .fetch(.bodyEnd): sawEnd = true
                case .fetch(.finish): sawFinish = true
                default: break
                }
            }
            maxBuffered = max(maxBuffered, parser.bufferedByteCount)
        }
        try drain()
        let chunk = ByteBuffer(repeating: 0x78, count: chunkSize)
        var sent = 0
        while sent < bodySize {
            let n = min(chunkSize, bodySize - sent)
            parser.append(n == chunkSize ? chunk : chunk.getSlice(at: 0, length: n)!)
            sent += n
            try drain()
        }
        parser.append(buffer(")\r\n"))
        try drain()
        #expect(total == bodySize)
        #expect(largestEvent <= ParserLimits.default.maxBodyChunk)
        #expect(maxBuffered <= chunkSize)
        #expect(sawEnd && sawFinish)
    }

    @Test func benchmarkStreamParses() {
        let result = ParserBenchmark.run(totalBytes: 4_000_000)
        #expect(result.seconds > 0)
    }
}
