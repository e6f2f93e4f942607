import NIOCore

// Byte-level primitives shared by every grammar area. A `Cursor` reads one
// complete response (or, for FETCH, one line between body literals), so the
// parse functions never see a partial token and never need to backtrack.

enum ASCII {
    static let space: UInt8 = 0x20, cr: UInt8 = 0x0D, lf: UInt8 = 0x0A, quote: UInt8 = 0x22
    static let backslash: UInt8 = 0x5C, openParen: UInt8 = 0x28, closeParen: UInt8 = 0x29
    static let openBracket: UInt8 = 0x5B, closeBracket: UInt8 = 0x5D, openBrace: UInt8 = 0x7B
    static let closeBrace: UInt8 = 0x7D, plus: UInt8 = 0x2B, star: UInt8 = 0x2A, tilde: UInt8 = 0x7E
    static let percent: UInt8 = 0x25, lessThan: UInt8 = 0x3C, greaterThan: UInt8 = 0x3E
    static let colon: UInt8 = 0x3A, comma: UInt8 = 0x2C, zero: UInt8 = 0x30, nine: UInt8 = 0x39, minus: UInt8 = 0x2D

    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b &- zero < 10 }

    /// ATOM-CHAR: any CHAR except atom-specials `( ) { SP CTL % * " \ ]`.
    @inline(__always) static func isAtomChar(_ b: UInt8) -> Bool {
        atomCharTable[Int(b)]
    }

    /// ASTRING-CHAR = ATOM-CHAR / resp-specials (`]`).
    @inline(__always) static func isAStringChar(_ b: UInt8) -> Bool {
        b == closeBracket || atomCharTable[Int(b)]
    }

    /// Characters servers put in flags and capability names. Deliberately wider
    /// than ATOM-CHAR (`\*`, `]` and 8-bit bytes show up in the wild); only the
    /// bytes that delimit tokens are excluded.
    @inline(__always) static func isLiberalAtomChar(_ b: UInt8) -> Bool {
        b > space && b != 0x7F && b != openParen && b != closeParen && b != quote && b != openBrace
    }

    static let atomCharTable: [Bool] = (0..<256).map { i in
        let b = UInt8(i)
        if b <= 0x1F || b >= 0x7F { return false }
        return ![openParen, closeParen, openBrace, space, percent, star, quote, backslash, closeBracket].contains(b)
    }

    @inline(__always) static func upper(_ b: UInt8) -> UInt8 { (b >= 0x61 && b <= 0x7A) ? b - 0x20 : b }
}

struct Cursor {
    /// A slice whose index 0 is the start of the response or FETCH line.
    var buffer: ByteBuffer
    let limits: ParserLimits
    /// Everything before this index may be literal data and never appears in an excerpt.
    var excerptFloor = 0
    /// Sum of literal bytes consumed, checked against `maxNonBodyLiteralSize`.
    var depth = 0

    init(_ buffer: ByteBuffer, limits: ParserLimits) {
        self.buffer = buffer
        self.limits = limits
    }

    /// Read position. The buffer's own reader index stays at 0 because NIO's
    /// `get*` accessors refuse indices before it, and errors look behind.
    var position = 0
    var remaining: Int { buffer.writerIndex - position }
    var isAtEnd: Bool { position >= buffer.writerIndex }

    @inline(__always) func peek(_ offset: Int = 0) -> UInt8? {
        buffer.getInteger(at: position &+ offset, as: UInt8.self)
    }

    @inline(__always) mutating func advance(_ n: Int = 1) { position += n }

    // MARK: Errors

    func error(_ rule: String, kind: IMAPParseError.Kind = .malformed) -> IMAPParseError {
        IMAPParseError(kind: kind, rule: rule, excerpt: excerpt())
    }

    /// Up to 60 bytes before the failure and 20 after, cut at line breaks and
    /// literal boundaries so literal contents are never shown.
    func excerpt() -> String {
        let pos = position
        var start = Swift.max(excerptFloor, pos - 60, 0)
        var i = pos - 1
        while i >= start {
            if let b = buffer.getInteger(at: i, as: UInt8.self), b == ASCII.lf { start = i + 1; break }
            i -= 1
        }
        var end = pos
        let limit = Swift.min(buffer.writerIndex, pos + 20)
        while end < limit, let b = buffer.getInteger(at: end, as: UInt8.self), b != ASCII.cr, b != ASCII.lf { end += 1 }
        guard end > start, let bytes = buffer.getBytes(at: start, length: end - start) else { return "" }
        return IMAPParseError.redact(bytes)
    }

    // MARK: Punctuation

    mutating func expect(_ byte: UInt8, _ rule: @autoclosure () -> String) throws(IMAPParseError) {
        guard peek() == byte else { throw error(rule()) }
        advance()
    }

    /// SP, tolerating the doubled spaces some servers emit.
    mutating func expectSpace(_ rule: @autoclosure () -> String) throws(IMAPParseError) {
        guard peek() == ASCII.space else { throw error(rule()) }
        skipSpaces()
    }

    mutating func skipSpaces() {
        while peek() == ASCII.space { advance() }
    }

    @discardableResult
    mutating func skipOptional(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        advance()
        return true
    }

    /// CRLF ending the response, after optional trailing spaces (Exchange adds them).
    mutating func expectEndOfLine() throws(IMAPParseError) {
        skipSpaces()
        guard peek() == ASCII.cr, peek(1) == ASCII.lf else { throw error("expected CRLF at end of response") }
        advance(2)
    }

    // MARK: Atoms and keywords

    /// Consumes `keyword` (ASCII, upper-case) if it is next and is a whole token.
    mutating func tryKeyword(_ keyword: StaticString) -> Bool {
        let count = keyword.utf8CodeUnitCount
        guard remaining >= count else { return false }
        let base = position
        let matches = keyword.withUTF8Buffer { kw -> Bool in
            for i in 0..<count {
                guard let b = buffer.getInteger(at: base + i, as: UInt8.self), ASCII.upper(b) == kw[i] else { return false }
            }
            return true
        }
        guard matches else { return false }
        if let next = buffer.getInteger(at: base + count, as: UInt8.self), ASCII.isLiberalAtomChar(next),
           next != ASCII.closeBracket, next != ASCII.openBracket {
            return false
        }
        advance(count)
        return true
    }

    /// Reads a run of bytes satisfying `predicate`; empty if none.
    @inline(__always)
    mutating func readWhile(_ predicate: (UInt8) -> Bool) -> Range<Int> {
        let start = position
        var i = start
        let end = buffer.writerIndex
        while i < end, let b = buffer.getInteger(at: i, as: UInt8.self), predicate(b) { i += 1 }
        position = i
        return start..<i
    }

    func bytes(_ range: Range<Int>) -> [UInt8] {
        buffer.getBytes(at: range.lowerBound, length: range.count) ?? []
    }

    func string(_ range: Range<Int>) -> String {
        buffer.getString(at: range.lowerBound, length: range.count) ?? ""
    }

    func upperString(_ range: Range<Int>) -> String {
        String(decoding: bytes(range).map(ASCII.upper), as: UTF8.self)
    }

    /// atom = 1*ATOM-CHAR
    mutating func readAtom(_ what: @autoclosure () -> String) throws(IMAPParseError) -> Range<Int> {
        let r = readWhile(ASCII.isAtomChar)
        guard !r.isEmpty else { throw error("expected atom in \(what())") }
        return r
    }

    /// A token made of `isLiberalAtomChar` bytes (flags, capabilities, codes).
    mutating func readLiberalAtom(_ what: @autoclosure () -> String, allowBracket: Bool = true) throws(IMAPParseError) -> Range<Int> {
        let r = allowBracket ? readWhile(ASCII.isLiberalAtomChar)
                             : readWhile { ASCII.isLiberalAtomChar($0) && $0 != ASCII.closeBracket }
        guard !r.isEmpty else { throw error("expected atom in \(what())") }
        return r
    }

    // MARK: Numbers

    /// number = 1*DIGIT (32-bit). Parsed from bytes with overflow checks, so a
    /// hostile `UID 99999999999` becomes an error, not a trap.
    mutating func readNumber32(_ what: @autoclosure () -> String) throws(IMAPParseError) -> UInt32 {
        let value = try readNumber64(what())
        guard let v = UInt32(exactly: value) else { throw error("invalid number in \(what()) (exceeds 4294967295)") }
        return v
    }

    /// number64 / mod-sequence-value = 1*DIGIT (RFC 9051, RFC 7162).
    mutating func readNumber64(_ what: @autoclosure () -> String) throws(IMAPParseError) -> UInt64 {
        var value: UInt64 = 0
        var digits = 0
        while let b = peek(), ASCII.isDigit(b) {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(b &- ASCII.zero))
            if o1 || o2 { throw error("invalid number in \(what()) (too large)") }
            value = a
            digits += 1
            advance()
        }
        guard digits > 0 else { throw error("invalid number in \(what()) (expected digits)") }
        return value
    }

    // MARK: Strings

    /// quoted = DQUOTE *QUOTED-CHAR DQUOTE. Returns the unescaped bytes; a slice
    /// of the input when there is nothing to unescape.
    mutating func readQuoted() throws(IMAPParseError) -> ByteBuffer {
        try expect(ASCII.quote, "expected '\"' starting quoted string")
        let start = position
        var i = start
        let end = buffer.writerIndex
        var hasEscapes = false
        while true {
            guard i < end, let b = buffer.getInteger(at: i, as: UInt8.self) else {
                position = i
                throw error("unterminated quoted string")
            }
            if b == ASCII.quote { break }
            if b == ASCII.cr || b == ASCII.lf {
                position = i
                throw error("unterminated quoted string (CR or LF inside quotes)")
            }
            if b == ASCII.backslash { hasEscapes = true; i += 2 } else { i += 1 }
        }
        if !hasEscapes {
            let slice = buffer.getSlice(at: start, length: i - start)!
            position = i + 1
            return slice
        }
        var out = ByteBufferAllocator().buffer(capacity: i - start)
        var j = start
        while j < i {
            var b = buffer.getInteger(at: j, as: UInt8.self)!
            if b == ASCII.backslash { j += 1; b = buffer.getInteger(at: j, as: UInt8.self)! }
            out.writeInteger(b)
            j += 1
        }
        position = i + 1
        return out
    }

    /// The header of a literal: `{n}`, `{n+}` (literal+, seen from lenient
    /// servers) or `~{n}` (literal8, RFC 3516). Returns the size and leaves the
    /// cursor after `}`.
    mutating func readLiteralHeader() throws(IMAPParseError) -> (size: UInt64, binary: Bool) {
        let binary = skipOptional(ASCII.tilde)
        try expect(ASCII.openBrace, "expected '{' starting literal")
        let size = try readNumber64("literal size")
        skipOptional(ASCII.plus)
        try expect(ASCII.closeBrace, "bad literal header: expected '}'")
        return (size, binary)
    }

    /// literal = "{" number "}" CRLF *CHAR8, inside a fully framed response
    /// (the framer has already checked the size against the limits).
    mutating func readLiteral() throws(IMAPParseError) -> ByteBuffer {
        let header = try readLiteralHeader()
        guard peek() == ASCII.cr, peek(1) == ASCII.lf else { throw error("bad literal header: expected CRLF after '}'") }
        advance(2)
        guard let size = Int(exactly: header.size), remaining >= size else {
            throw error("literal longer than the response")
        }
        let slice = buffer.getSlice(at: position, length: size)!
        position += size
        excerptFloor = position
        return slice
    }

    /// string = quoted / literal
    mutating func readString(_ what: @autoclosure () -> String) throws(IMAPParseError) -> ByteBuffer {
        switch peek() {
        case ASCII.quote: return try readQuoted()
        case ASCII.openBrace, ASCII.tilde: return try readLiteral()
        default: throw error("expected string in \(what())")
        }
    }

    /// astring = 1*ASTRING-CHAR / string
    mutating func readAString(_ what: @autoclosure () -> String) throws(IMAPParseError) -> ByteBuffer {
        switch peek() {
        case ASCII.quote: return try readQuoted()
        case ASCII.openBrace: return try readLiteral()
        default:
            let r = readWhile(ASCII.isAStringChar)
            guard !r.isEmpty else { throw error("expected astring in \(what())") }
            return buffer.getSlice(at: r.lowerBound, length: r.count)!
        }
    }

    /// nstring = string / nil
    mutating func readNString(_ what: @autoclosure () -> String) throws(IMAPParseError) -> ByteBuffer? {
        if tryKeyword("NIL") { return nil }
        return try readString(what())
    }

    // MARK: Lists

    /// Tracks `(` nesting against `maxNestingDepth`.
    mutating func enterList() throws(IMAPParseError) {
        depth += 1
        if depth > limits.maxNestingDepth {
            throw error("nesting exceeds maxNestingDepth (\(limits.maxNestingDepth))", kind: .limitExceeded)
        }
    }

    mutating func leaveList() { depth -= 1 }

    func checkListLength(_ count: Int, _ what: @autoclosure () -> String) throws(IMAPParseError) {
        if count > limits.maxListLength {
            throw error("\(what()) exceeds maxListLength (\(limits.maxListLength) items)", kind: .limitExceeded)
        }
    }

    /// Parses `"(" [item *(SP item)] ")"`, tolerating extra spaces.
    mutating func parseList(_ what: @autoclosure () -> String,
                            _ item: (inout Cursor) throws(IMAPParseError) -> Void) throws(IMAPParseError) {
        try expect(ASCII.openParen, "expected '(' starting \(what())")
        try enterList()
        var count = 0
        skipSpaces()
        while peek() != ASCII.closeParen {
            guard !isAtEnd, peek() != ASCII.cr else { throw error("unterminated \(what()): expected ')'") }
            count += 1
            try checkListLength(count, what())
            try item(&self)
            if peek() == ASCII.closeParen { break }
            try expectSpace("expected SP or ')' in \(what())")
        }
        advance()
        leaveList()
    }

    /// Skips one value of unknown shape (atom, number, string, NIL or nested
    /// list), as RFC 4466 `tagged-ext-val` allows, and renders it as text with
    /// strings unquoted and nested lists in parentheses.
    mutating func readGenericValue(into text: inout String) throws(IMAPParseError) {
        switch peek() {
        case ASCII.openParen:
            try expect(ASCII.openParen, "expected '('")
            try enterList()
            var first = true
            var count = 0
            skipSpaces()
            while peek() != ASCII.closeParen {
                guard !isAtEnd, peek() != ASCII.cr else { throw error("unterminated list: expected ')'") }
                count += 1
                try checkListLength(count, "extension data")
                if !first { text += " " }
                if peek() == ASCII.openParen {
                    text += "("
                    try readGenericValue(into: &text)
                    text += ")"
                } else {
                    try readGenericValue(into: &text)
                }
                first = false
                if peek() == ASCII.closeParen { break }
                try expectSpace("expected SP or ')' in list")
            }
            advance()
            leaveList()
        case ASCII.quote, ASCII.openBrace, ASCII.tilde:
            text += String(buffer: try readString("extension value"))
        default:
            let r = readWhile { ASCII.isLiberalAtomChar($0) && $0 != ASCII.closeBracket }
            guard !r.isEmpty else { throw error("expected value") }
            text += string(r)
        }
    }

    /// Text up to (not including) CR: resp-text's `text`, lenient about 8-bit bytes.
    mutating func readTextToEndOfLine() -> String {
        let r = readWhile { $0 != ASCII.cr && $0 != ASCII.lf }
        return string(r)
    }
}
