import IMAPCodec
import NIOCore
import Testing

@Suite("Response parser: limits and malformed input")
struct ParserFailureTests {
    @Test(arguments: [
        ("* 1 FETCH (UID 99999999999)\r\n", "invalid number in UID"),
        ("* OK [UIDVALIDITY 4294967296] x\r\n", "invalid number in UIDVALIDITY"),
        ("* OK [UIDVALIDITY abc] x\r\n", "invalid number in UIDVALIDITY"),
        ("* 1 FETCH (MODSEQ (99999999999999999999999))\r\n", "invalid number in MODSEQ"),
        ("* 99999999999 EXISTS\r\n", "invalid number in message data"),
        ("a1\tOK done\r\n", "expected SP after tag"),
        ("a1 MAYBE done\r\n", "expected OK, NO or BAD after tag"),
        ("* OK fine\n", "expected CRLF at end of line"),
        ("* LIST () \"/\" {x}\r\nfoo\r\n", "invalid number in literal size"),
        ("* LIST () \"/\" {3\r\nfoo\r\n", "bad literal header: expected '}'"),
        ("* 1 FETCH (BODY[] {5} UID 3)\r\n", "literal header must end the line"),
        ("* 1 FETCH (UID 3\r\n", "FETCH response ended without ')'"),
        ("* 1 FETCH (UID 3) junk\r\n", "unexpected data after FETCH response"),
        ("* 1 FETCH (FLAGS (\\Seen)\r\n", "FETCH response ended without ')'"),
        ("* 1 FETCH (INTERNALDATE \"31-Feb-2020 00:00:00 +0000\")\r\n", "invalid INTERNALDATE"),
        ("* SEARCH 1 2 x\r\n", "expected CRLF at end of response"),
        ("* LIST (\\Noselect \"/\" foo\r\n", "expected atom in mailbox attribute"),
        ("* STATUS INBOX (MESSAGES)\r\n", "expected SP after STATUS attribute MESSAGES"),
        ("* VANISHED (LATER) 1\r\n", "expected (EARLIER) after VANISHED"),
        ("* LIST () \"ab\" foo\r\n", "hierarchy delimiter must be a single ASCII character"),
        ("* LIST () \"/\" \"unterminated\r\n", "unterminated quoted string"),
        ("* 1 FETCH (BODY[] {18446744073709551616}\r\n", "invalid number in literal size"),
        ("* LIST () \"/\" {18446744073709551616}\r\n", "bad literal header: size too large"),
    ])
    func malformedInputNamesTheRule(input: String, rule: String) {
        let error = parseError(input)
        #expect(error?.rule.contains(rule) == true, "got \(String(describing: error))")
        #expect(error?.kind == .malformed)
    }

    @Test func lineLengthLimit() {
        let limits = ParserLimits(maxLineLength: 100)
        let long = "* OK " + String(repeating: "x", count: 200) + "\r\n"
        let error = parseError(long, limits: limits)
        #expect(error?.rule == "response line exceeds maxLineLength (100 bytes)")
        #expect(error?.kind == .limitExceeded)
        // The limit is reached even if the LF never arrives.
        #expect(parseError(String(repeating: "y", count: 300), limits: limits)?.kind == .limitExceeded)
        // Exactly at the limit is fine.
        #expect(parseError("* OK " + String(repeating: "x", count: 95) + "\r\n", limits: limits) == nil)
    }

    @Test func lineLengthCountsEveryLineOfAResponseButNotItsLiterals() {
        let limits = ParserLimits(maxLineLength: 40, maxNonBodyLiteralSize: 1000)
        let bigLiteral = String(repeating: "n", count: 500)
        #expect(parseError("* LIST () \"/\" {500}\r\n\(bigLiteral)\r\n", limits: limits) == nil)
        let manyLines = "* ID (" + String(repeating: "{1}\r\nk {1}\r\nv ", count: 10) + ")\r\n"
        #expect(parseError(manyLines, limits: limits)?.kind == .limitExceeded)
    }

    @Test func nonBodyLiteralLimit() {
        let limits = ParserLimits(maxNonBodyLiteralSize: 10)
        let error = parseError("* LIST () \"/\" {11}\r\n", limits: limits)
        #expect(error?.rule == "literal exceeds maxNonBodyLiteralSize (10 bytes)")
        #expect(error?.kind == .limitExceeded)
        // The sum within one response is bounded too.
        #expect(parseError("* ID ({6}\r\nabcdef {6}\r\nghijkl)\r\n", limits: limits)?.kind == .limitExceeded)
        // Body literals are not limited by it.
        #expect(parseError("* 1 FETCH (BODY[] {20}\r\n01234567890123456789)\r\n", limits: limits) == nil)
    }

    @Test func nestingDepthLimit() {
        let limits = ParserLimits(maxNestingDepth: 5)
        let deep = String(repeating: "(", count: 6) + String(repeating: ")", count: 6)
        #expect(parseError("* 1 FETCH (BODYSTRUCTURE \(deep))\r\n", limits: limits)?.rule == "nesting exceeds maxNestingDepth (5)")
        #expect(parseError("* LIST () \"/\" foo (\"X\" \(deep))\r\n", limits: limits)?.rule == "nesting exceeds maxNestingDepth (5)")
        let shallow = String(repeating: "(", count: 5) + String(repeating: ")", count: 5)
        #expect(parseError("* 1 FETCH (BODYSTRUCTURE \(shallow))\r\n", limits: limits) == nil)
    }

    @Test func listLengthLimit() {
        let limits = ParserLimits(maxListLength: 3)
        #expect(parseError("* SEARCH 1 2 3 4\r\n", limits: limits)?.rule == "SEARCH result exceeds maxListLength (3 items)")
        #expect(parseError("* FLAGS (a b c d)\r\n", limits: limits)?.rule == "FLAGS flag list exceeds maxListLength (3 items)")
        #expect(parseError("* CAPABILITY A B C D\r\n", limits: limits)?.rule == "capability list exceeds maxListLength (3 items)")
        #expect(parseError("* VANISHED 1,3,5,7\r\n", limits: limits)?.rule == "VANISHED sequence set exceeds maxListLength (3 items)")
        #expect(parseError("* SEARCH 1 2 3\r\n", limits: limits) == nil)
    }

    @Test func excerptIsRedactedAndNeverShowsLiteralContents() {
        let secret = "hunter2-secret"
        let error = parseError("* LIST () \"/\" {\(secret.utf8.count)}\r\n\(secret) bogus\u{1}\r\n")
        #expect(error != nil)
        #expect(error?.excerpt.contains("hunter2") == false)
        let long = parseError("a1 MAYBE " + String(repeating: "\u{7}z", count: 100) + "\r\n")
        #expect((long?.excerpt.count ?? 0) <= 80)
        #expect(long?.excerpt.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F } == true)
        #expect(long?.description.contains("expected OK, NO or BAD after tag") == true)
    }

    @Test func errorsAreSticky() throws {
        var parser = ResponseParser(expectGreeting: false)
        parser.append(buffer("a1 MAYBE\r\n* 1 EXISTS\r\n"))
        #expect(throws: IMAPParseError.self) { try parser.next() }
        #expect(throws: IMAPParseError.self) { try parser.next() }
    }
}
