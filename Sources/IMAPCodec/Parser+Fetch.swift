import NIOCore

// FETCH responses (RFC 3501 §7.4.2, RFC 3516 BINARY, RFC 7162 MODSEQ). Each
// call parses one msg-att from the current line; body literals and literals in
// skipped items are handed back to `ResponseParser`, which streams or skips them.

/// What one step through a FETCH line produced.
enum FetchStep {
    case attribute(FetchAttribute)
    /// A quoted or NIL body: the whole value is on the line.
    case inlineBody(BodySection, ByteBuffer?)
    /// A body literal whose data follows the line's CRLF.
    case literalBody(BodySection, size: UInt64)
    /// An item we do not interpret, skipped completely.
    case skipped(name: String)
    /// Skipping stopped at a literal; `depth` is the open parenthesis count to resume with.
    case skipNeedsLiteral(name: String, depth: Int, size: UInt64)
}

extension Cursor {
    /// message-data = nz-number SP "FETCH" SP "(" ...   (up to and including "(")
    mutating func parseFetchPrefix() throws(IMAPParseError) -> UInt32 {
        try expect(ASCII.star, "expected '*'")
        try expectSpace("expected SP after '*'")
        let number = try readNumber32("FETCH sequence number")
        try expectSpace("expected SP after message number")
        guard tryKeyword("FETCH") else { throw error("expected FETCH") }
        skipSpaces()
        try expect(ASCII.openParen, "expected '(' after FETCH")
        return number
    }

    /// msg-att         = "(" (msg-att-dynamic / msg-att-static) *(SP (msg-att-dynamic / msg-att-static)) ")"
    /// msg-att-dynamic = "FLAGS" SP "(" [flag-fetch *(SP flag-fetch)] ")" / "MODSEQ" SP "(" mod-sequence-value ")"
    /// msg-att-static  = "ENVELOPE" SP envelope / "INTERNALDATE" SP date-time / "RFC822.SIZE" SP number64 /
    ///                   "BODY" ["STRUCTURE"] SP body / "BODY" section ["<" number ">"] SP nstring /
    ///                   "BINARY" section-binary SP (nstring / literal8) / "BINARY.SIZE" section-binary SP number /
    ///                   "UID" SP uniqueid / ("RFC822" / "RFC822.HEADER" / "RFC822.TEXT") SP nstring
    /// Parses one attribute; the caller has skipped the separating spaces.
    mutating func parseFetchAttribute() throws(IMAPParseError) -> FetchStep {
        if tryKeyword("UID") {
            try expectSpace("expected SP after UID")
            return .attribute(.uid(try readNumber32("UID")))
        }
        if tryKeyword("FLAGS") {
            try expectSpace("expected SP after FLAGS")
            return .attribute(.flags(try parseFlagList("FETCH FLAGS")))
        }
        if tryKeyword("MODSEQ") {
            try expectSpace("expected SP after MODSEQ")
            try expect(ASCII.openParen, "expected '(' after MODSEQ")
            skipSpaces()
            let value = try readNumber64("MODSEQ")
            skipSpaces()
            try expect(ASCII.closeParen, "expected ')' after MODSEQ value")
            return .attribute(.modSeq(value))
        }
        if tryKeyword("RFC822.SIZE") {
            try expectSpace("expected SP after RFC822.SIZE")
            return .attribute(.rfc822Size(try readNumber64("RFC822.SIZE")))
        }
        if tryKeyword("INTERNALDATE") {
            try expectSpace("expected SP after INTERNALDATE")
            let start = position
            let text = try readQuoted()
            do {
                return .attribute(.internalDate(try InternalDate(imapBytes: text.readableBytesView)))
            } catch {
                position = start
                throw self.error("invalid INTERNALDATE: \(error.message)")
            }
        }
        if tryKeyword("RFC822.HEADER") { return try parseBodyValue(BodySection(kind: .rfc822Header)) }
        if tryKeyword("RFC822.TEXT") { return try parseBodyValue(BodySection(kind: .rfc822Text)) }
        if tryKeyword("RFC822") { return try parseBodyValue(BodySection(kind: .rfc822)) }
        if peek(4) == ASCII.openBracket, tryKeyword("BODY") {
            return try parseBodyValue(try parseSectionAndOrigin(kind: .body))
        }
        if peek(6) == ASCII.openBracket, tryKeyword("BINARY") {
            return try parseBodyValue(try parseSectionAndOrigin(kind: .binary))
        }
        // Anything else (ENVELOPE, BODYSTRUCTURE, BODY, X-GM-LABELS, EMAILID…): skip its value.
        let nameRange = readWhile { ASCII.isAtomChar($0) && $0 != ASCII.openBracket }
        guard !nameRange.isEmpty else { throw error("expected FETCH attribute name") }
        var end = nameRange.upperBound
        if peek() == ASCII.openBracket {
            _ = try readSection()
            if peek() == ASCII.lessThan { _ = readWhile { $0 != ASCII.greaterThan && $0 != ASCII.space }; skipOptional(ASCII.greaterThan) }
            end = position
        }
        let name = upperString(nameRange.lowerBound..<end)
        try expectSpace("expected SP after \(name)")
        var depth = 0
        if let size = try skipValue(depth: &depth) {
            return .skipNeedsLiteral(name: name, depth: depth, size: size)
        }
        return .skipped(name: name)
    }

    /// section = "[" [section-spec] "]"; returns the spec's byte range.
    /// section-spec may contain `HEADER.FIELDS (A B)`, so parentheses and
    /// quoted strings are stepped over.
    mutating func readSection() throws(IMAPParseError) -> Range<Int> {
        try expect(ASCII.openBracket, "expected '['")
        let start = position
        var parens = 0
        while true {
            guard let b = peek() else { throw error("unterminated section: expected ']'") }
            switch b {
            case ASCII.closeBracket where parens == 0:
                let r = start..<position
                advance()
                return r
            case ASCII.openParen: parens += 1; advance()
            case ASCII.closeParen: parens -= 1; advance()
            case ASCII.quote: _ = try readQuoted()
            case ASCII.openBrace: throw error("literal inside a section specifier is not supported")
            default: advance()
            }
        }
    }

    /// "BODY" section ["<" number ">"]   (after the keyword)
    mutating func parseSectionAndOrigin(kind: BodySection.Kind) throws(IMAPParseError) -> BodySection {
        let range = try readSection()
        var origin: UInt32?
        if skipOptional(ASCII.lessThan) {
            origin = try readNumber32("body section origin")
            try expect(ASCII.greaterThan, "expected '>' after body section origin")
        }
        return BodySection(kind: kind, specifier: range.isEmpty ? "" : upperString(range), origin: origin)
    }

    /// SP (nstring / literal8) after a body section.
    mutating func parseBodyValue(_ section: BodySection) throws(IMAPParseError) -> FetchStep {
        try expectSpace("expected SP after \(section)")
        switch peek() {
        case ASCII.quote:
            return .inlineBody(section, try readQuoted())
        case ASCII.openBrace, ASCII.tilde:
            let header = try readLiteralHeader()
            guard isAtEnd else { throw error("literal header must end the line") }
            return .literalBody(section, size: header.size)
        default:
            guard tryKeyword("NIL") else { throw error("expected string, literal or NIL for \(section)") }
            return .inlineBody(section, nil)
        }
    }

    /// Steps over one value of any shape (RFC 4466 tagged-ext-val, envelope,
    /// body structure) without storing it. Returns a literal size when the line
    /// ends in a literal header; `depth` then holds the open parentheses.
    mutating func skipValue(depth: inout Int) throws(IMAPParseError) -> UInt64? {
        while true {
            guard let b = peek() else {
                throw error(depth == 0 ? "expected FETCH attribute value" : "FETCH line ended inside a parenthesised value")
            }
            switch b {
            case ASCII.openParen:
                depth += 1
                if depth > limits.maxNestingDepth {
                    throw error("nesting exceeds maxNestingDepth (\(limits.maxNestingDepth))", kind: .limitExceeded)
                }
                advance()
            case ASCII.closeParen:
                guard depth > 0 else { throw error("expected FETCH attribute value") }
                depth -= 1
                advance()
                if depth == 0 { return nil }
            case ASCII.space:
                advance()
            case ASCII.quote:
                _ = try readQuoted()
                if depth == 0 { return nil }
            case ASCII.openBrace,
                 ASCII.tilde where peek(1) == ASCII.openBrace:
                let header = try readLiteralHeader()
                guard isAtEnd else { throw error("literal header must end the line") }
                return header.size
            default:
                let r = readWhile { $0 > ASCII.space && $0 != ASCII.openParen && $0 != ASCII.closeParen
                    && $0 != ASCII.quote && $0 != ASCII.openBrace && $0 != 0x7F }
                guard !r.isEmpty else { throw error("unexpected byte in FETCH attribute value") }
                if depth == 0 { return nil }
            }
        }
    }
}
