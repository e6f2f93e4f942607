import NIOCore

// Whole responses other than FETCH: status responses, response codes,
// continuation requests and the dispatch of untagged data.

extension Cursor {
    /// response = continue-req / response-data / response-tagged
    /// (the frame is complete: all literals and the final CRLF are present)
    mutating func parseResponse(greeting: Bool) throws(IMAPParseError) -> ResponseEvent {
        if greeting {
            guard peek() == ASCII.star else { throw error("expected greeting (* OK, * PREAUTH or * BYE)") }
            advance()
            try expectSpace("expected SP after '*'")
            guard let status = parseStatusWord(), status == .ok || status == .preauth || status == .bye else {
                throw error("expected greeting (* OK, * PREAUTH or * BYE)")
            }
            let text = try parseRespTextAfterStatus()
            try expectEndOfLine()
            return .greeting(UntaggedCondition(status: status, text: text))
        }
        switch peek() {
        case ASCII.plus:
            return try parseContinuation()
        case ASCII.star:
            advance()
            try expectSpace("expected SP after '*'")
            let untagged = try parseUntagged()
            try expectEndOfLine()
            return .untagged(untagged)
        default:
            let tagged = try parseTagged()
            try expectEndOfLine()
            return .tagged(tagged)
        }
    }

    /// continue-req = "+" SP (resp-text / base64) CRLF
    /// (servers also send a bare "+" or "+ " — both accepted, text is then empty)
    mutating func parseContinuation() throws(IMAPParseError) -> ResponseEvent {
        try expect(ASCII.plus, "expected '+'")
        skipSpaces()
        let text = readTextToEndOfLine()
        try expectEndOfLine()
        return .continuation(text)
    }

    /// response-tagged = tag SP resp-cond-state CRLF
    /// tag             = 1*<any ASTRING-CHAR except "+">
    mutating func parseTagged() throws(IMAPParseError) -> TaggedResponse {
        let r = readWhile { ASCII.isAStringChar($0) && $0 != ASCII.plus }
        guard !r.isEmpty else { throw error("expected tag, '*' or '+' at start of response") }
        try expectSpace("expected SP after tag")
        guard let status = parseStatusWord(), status == .ok || status == .no || status == .bad else {
            throw error("expected OK, NO or BAD after tag")
        }
        let text = try parseRespTextAfterStatus()
        return TaggedResponse(tag: string(r), status: status, text: text)
    }

    /// "OK" / "NO" / "BAD" / "BYE" / "PREAUTH", case-insensitively.
    mutating func parseStatusWord() -> ResponseStatus? {
        if tryKeyword("OK") { return .ok }
        if tryKeyword("NO") { return .no }
        if tryKeyword("BAD") { return .bad }
        if tryKeyword("BYE") { return .bye }
        if tryKeyword("PREAUTH") { return .preauth }
        return nil
    }

    /// resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text
    /// resp-text       = ["[" resp-text-code "]" SP] text
    /// Lenient: the SP and text may be missing (`* OK`, `* OK [UIDNEXT 5]`).
    mutating func parseRespTextAfterStatus() throws(IMAPParseError) -> ResponseText {
        skipSpaces()
        var code: ResponseCode?
        if peek() == ASCII.openBracket {
            advance()
            code = try parseResponseCode()
            try expect(ASCII.closeBracket, "expected ']' after response code")
            skipSpaces()
        }
        let text = readTextToEndOfLine()
        var trimmed = Substring(text)
        while trimmed.last == " " { trimmed.removeLast() }
        return ResponseText(code: code, text: String(trimmed))
    }

    /// resp-text-code = "ALERT" / "BADCHARSET" [SP "(" charset *(SP charset) ")"] /
    ///                  capability-data / "PARSE" / "PERMANENTFLAGS" SP "(" [flag-perm *(SP flag-perm)] ")" /
    ///                  "READ-ONLY" / "READ-WRITE" / "TRYCREATE" / "UIDNEXT" SP nz-number /
    ///                  "UIDVALIDITY" SP nz-number / "UNSEEN" SP nz-number /
    ///                  "HIGHESTMODSEQ" SP mod-sequence-value / "NOMODSEQ" / "MODIFIED" SP sequence-set /
    ///                  "APPENDUID" SP nz-number SP append-uid / "COPYUID" SP nz-number SP uid-set SP uid-set /
    ///                  "UIDNOTSTICKY" / "CLOSED" / "COMPRESSIONACTIVE" / "OVERQUOTA" / "ALREADYEXISTS" /
    ///                  "NONEXISTENT" / atom [SP 1*<any TEXT-CHAR except "]">]
    mutating func parseResponseCode() throws(IMAPParseError) -> ResponseCode {
        let nameRange = try readLiberalAtom("response code", allowBracket: false)
        let name = upperString(nameRange)
        switch name {
        case "ALERT": return .alert
        case "PARSE": return .parse
        case "READ-ONLY": return .readOnly
        case "READ-WRITE": return .readWrite
        case "TRYCREATE": return .tryCreate
        case "NOMODSEQ": return .noModSeq
        case "UIDNOTSTICKY": return .uidNotSticky
        case "CLOSED": return .closed
        case "COMPRESSIONACTIVE": return .compressionActive
        case "OVERQUOTA": return .overQuota
        case "ALREADYEXISTS": return .alreadyExists
        case "NONEXISTENT": return .nonExistent
        case "BADCHARSET":
            var charsets: [String] = []
            if peek() == ASCII.space, peek(1) == ASCII.openParen {
                skipSpaces()
                try parseList("BADCHARSET list") { (c: inout Cursor) throws(IMAPParseError) in
                    charsets.append(String(buffer: try c.readAString("charset")))
                }
            }
            return .badCharset(charsets)
        case "CAPABILITY":
            return .capability(try parseCapabilityList())
        case "PERMANENTFLAGS":
            try expectSpace("expected SP after PERMANENTFLAGS")
            return .permanentFlags(try parseFlagList("PERMANENTFLAGS"))
        case "UIDNEXT":
            try expectSpace("expected SP after UIDNEXT")
            return .uidNext(try readNumber32("UIDNEXT"))
        case "UIDVALIDITY":
            try expectSpace("expected SP after UIDVALIDITY")
            return .uidValidity(try readNumber32("UIDVALIDITY"))
        case "UNSEEN":
            try expectSpace("expected SP after UNSEEN")
            return .unseen(try readNumber32("UNSEEN"))
        case "HIGHESTMODSEQ":
            try expectSpace("expected SP after HIGHESTMODSEQ")
            return .highestModSeq(try readNumber64("HIGHESTMODSEQ"))
        case "MODIFIED":
            try expectSpace("expected SP after MODIFIED")
            return .modified(try parseSequenceSet("MODIFIED"))
        case "APPENDUID":
            try expectSpace("expected SP after APPENDUID")
            let validity = try readNumber32("APPENDUID uidvalidity")
            try expectSpace("expected SP after APPENDUID uidvalidity")
            return .appendUID(uidValidity: validity, uids: try parseSequenceSet("APPENDUID"))
        case "COPYUID":
            try expectSpace("expected SP after COPYUID")
            let validity = try readNumber32("COPYUID uidvalidity")
            try expectSpace("expected SP after COPYUID uidvalidity")
            let source = try parseSequenceSet("COPYUID source")
            try expectSpace("expected SP after COPYUID source set")
            return .copyUID(uidValidity: validity, source: source, destination: try parseSequenceSet("COPYUID destination"))
        default:
            var text: String?
            if peek() == ASCII.space {
                skipSpaces()
                let r = readWhile { $0 != ASCII.closeBracket && $0 != ASCII.cr && $0 != ASCII.lf }
                if !r.isEmpty { text = string(r) }
            }
            return .other(name: name, text: text)
        }
    }

    /// capability-data = "CAPABILITY" *(SP capability)   (after the keyword)
    mutating func parseCapabilityList() throws(IMAPParseError) -> [Capability] {
        var caps: [Capability] = []
        while peek() == ASCII.space {
            skipSpaces()
            guard let b = peek(), ASCII.isLiberalAtomChar(b), b != ASCII.closeBracket else { break }
            let r = try readLiberalAtom("capability", allowBracket: false)
            caps.append(Capability(string(r)))
            try checkListLength(caps.count, "capability list")
        }
        return caps
    }

    /// flag-list = "(" [flag *(SP flag)] ")"
    /// flag      = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" / flag-keyword / flag-extension
    /// flag-perm = flag / "\*"
    mutating func parseFlagList(_ what: String) throws(IMAPParseError) -> [Flag] {
        var flags: [Flag] = []
        try parseList("\(what) flag list") { (c: inout Cursor) throws(IMAPParseError) in
            let r = try c.readLiberalAtom("flag")
            flags.append(Flag(c.string(r)))
        }
        return flags
    }

    /// response-data = "*" SP (resp-cond-state / resp-cond-bye / mailbox-data /
    ///                 message-data / capability-data / enable-data / id-response /
    ///                 namespace-response / esearch-response) CRLF
    mutating func parseUntagged() throws(IMAPParseError) -> UntaggedResponse {
        if let b = peek(), ASCII.isDigit(b) {
            return try parseMessageData()
        }
        if let status = parseStatusWord() {
            return .condition(UntaggedCondition(status: status, text: try parseRespTextAfterStatus()))
        }
        let keywordRange = readWhile { ASCII.isAtomChar($0) }
        guard !keywordRange.isEmpty else { throw error("expected response keyword after '* '") }
        let keyword = upperString(keywordRange)
        switch keyword {
        case "CAPABILITY": return .capability(try parseCapabilityList())
        case "ENABLED": return .enabled(try parseCapabilityList())
        case "FLAGS":
            try expectSpace("expected SP after FLAGS")
            return .flags(try parseFlagList("FLAGS"))
        case "LIST", "XLIST":
            try expectSpace("expected SP after LIST")
            return .list(try parseMailboxList())
        case "LSUB":
            try expectSpace("expected SP after LSUB")
            return .lsub(try parseMailboxList())
        case "STATUS":
            try expectSpace("expected SP after STATUS")
            let (name, status) = try parseStatusResponse()
            return .status(name, status)
        case "SEARCH": return try parseSearchResponse()
        case "ESEARCH": return .esearch(try parseESearchResponse())
        case "VANISHED":
            try expectSpace("expected SP after VANISHED")
            return try parseVanished()
        case "ID":
            try expectSpace("expected SP after ID")
            return .id(try parseIDParameters())
        case "NAMESPACE":
            try expectSpace("expected SP after NAMESPACE")
            return .namespace(try parseNamespaceResponse())
        default:
            // RFC 3501 §7: a client must accept any response; data we do not use
            // (QUOTA, METADATA, SORT…) is reported by name and its value dropped.
            _ = readWhile { $0 != ASCII.cr }
            if peek() != ASCII.cr { throw error("malformed \(keyword) response") }
            return .unknown(name: keyword)
        }
    }

    /// message-data = nz-number SP ("EXPUNGE" / "EXISTS" / "RECENT")
    /// (FETCH is streamed by `ResponseParser` and never reaches this function)
    mutating func parseMessageData() throws(IMAPParseError) -> UntaggedResponse {
        let number = try readNumber32("message data")
        try expectSpace("expected SP after number")
        if tryKeyword("EXISTS") { return .exists(number) }
        if tryKeyword("RECENT") { return .recent(number) }
        if tryKeyword("EXPUNGE") { return .expunge(sequenceNumber: number) }
        throw error("expected EXISTS, RECENT, EXPUNGE or FETCH after message number")
    }

    /// id-response  = "ID" SP id-params-list
    /// id-params-list = "(" *(string SP nstring) ")" / nil
    mutating func parseIDParameters() throws(IMAPParseError) -> [String: String]? {
        if tryKeyword("NIL") { return nil }
        var result: [String: String] = [:]
        try expect(ASCII.openParen, "expected '(' or NIL after ID")
        try enterList()
        var count = 0
        skipSpaces()
        while peek() != ASCII.closeParen {
            guard !isAtEnd, peek() != ASCII.cr else { throw error("unterminated ID parameter list") }
            count += 1
            try checkListLength(count, "ID parameter list")
            let key = String(buffer: try readString("ID field name"))
            try expectSpace("expected SP after ID field name")
            // A NIL value means the field is unknown; it is left out of the dictionary.
            if let value = try readNString("ID field value") { result[key] = String(buffer: value) }
            skipSpaces()
        }
        advance()
        leaveList()
        return result
    }
}
