import NIOCore

/// Turns the bytes a server sends into `ResponseEvent`s, without doing any I/O.
///
/// Responses other than FETCH are framed first (line plus any literals, all
/// bounded by `ParserLimits`) and then parsed in one pass, so the grammar code
/// never sees a partial token. FETCH responses are parsed line by line and
/// their body literals are handed out as slices of the input as they arrive,
/// so a message of any size costs at most `maxBodyChunk` of buffering beyond
/// what the caller appended.
public struct ResponseParser: Sendable {
    /// Set by the client after `ENABLE UTF8=ACCEPT`; mailbox names are kept as
    /// wire bytes either way, this only tells consumers how to decode them.
    public var mailboxNameEncoding: MailboxNameEncoding = .modifiedUTF7

    public let limits: ParserLimits
    private var buffer: ByteBuffer
    private var expectingGreeting: Bool
    private var state: State = .responseStart
    private var failure: IMAPParseError?
    private var pending: [ResponseEvent] = []
    private var pendingIndex = 0
    /// Where the search for the next LF resumes, relative to the reader index,
    /// so bytes fed one at a time are not rescanned.
    private var scanFrom = 0

    private enum State {
        case responseStart
        /// A non-FETCH response being framed.
        case frame(FrameProgress)
        /// Inside a FETCH response, parsing the line at the reader index.
        case fetchLine(FetchLine)
        /// Streaming a body literal.
        case fetchBody(remaining: UInt64)
        /// Discarding a literal inside an item we do not interpret.
        case fetchSkipLiteral(remaining: UInt64, name: String, depth: Int)
    }

    private struct FrameProgress {
        var allowsLiterals: Bool
        /// Start of the line being searched, relative to the reader index.
        var lineStart = 0
        /// When waiting for literal data: the offset just past it.
        var literalEnd: Int?
        var nonLiteralBytes = 0
        var literalBytes = 0
    }

    private struct FetchLine {
        /// Offset of the CR ending the line, once found.
        var length: Int?
        /// Parse position within the line.
        var offset = 0
        /// True until `* n FETCH (` has been parsed.
        var atPrefix = false
        /// Set when a skipped value continues after a literal.
        var skipping: (name: String, depth: Int)?
    }

    public init(limits: ParserLimits = .default, expectGreeting: Bool = true) {
        self.limits = limits
        self.expectingGreeting = expectGreeting
        self.buffer = ByteBufferAllocator().buffer(capacity: 0)
    }

    /// Feeds bytes in any chunking. When everything so far has been consumed
    /// the chunk is adopted as-is, so body slices share its storage (no copy).
    public mutating func append(_ bytes: ByteBuffer) {
        if buffer.readableBytes == 0 {
            buffer = bytes
            return
        }
        if buffer.readerIndex >= 16 * 1024 && buffer.readerIndex >= buffer.readableBytes {
            buffer.discardReadBytes()
        }
        buffer.writeImmutableBuffer(bytes)
    }

    /// The next event, or nil when more bytes are needed. After an error every
    /// call throws the same error: the connection cannot be trusted any more.
    public mutating func next() throws(IMAPParseError) -> ResponseEvent? {
        if let failure { throw failure }
        if pendingIndex < pending.count {
            let event = pending[pendingIndex]
            pendingIndex += 1
            if pendingIndex == pending.count { pending.removeAll(keepingCapacity: true); pendingIndex = 0 }
            return event
        }
        do {
            return try step()
        } catch {
            failure = error
            throw error
        }
    }

    /// Bytes received but not yet turned into events (a bound check for tests and callers).
    public var bufferedByteCount: Int { buffer.readableBytes }

    // MARK: - State machine

    private mutating func step() throws(IMAPParseError) -> ResponseEvent? {
        while true {
            switch state {
            case .responseStart:
                guard let cr = try findLineEnd(from: 0, budget: limits.maxLineLength) else { return nil }
                let line = buffer.getSlice(at: buffer.readerIndex, length: cr)!
                switch classify(line) {
                case .fetch:
                    state = .fetchLine(FetchLine(length: cr, offset: 0, atPrefix: true))
                case .singleLine:
                    scanFrom = 0
                    state = .frame(FrameProgress(allowsLiterals: false))
                case .withLiterals:
                    scanFrom = 0
                    state = .frame(FrameProgress(allowsLiterals: true))
                }
            case .frame(var progress):
                guard let length = try frameLength(&progress) else {
                    state = .frame(progress)
                    return nil
                }
                var cursor = Cursor(buffer.getSlice(at: buffer.readerIndex, length: length)!, limits: limits)
                let event = try cursor.parseResponse(greeting: expectingGreeting)
                guard cursor.isAtEnd else { throw cursor.error("unexpected data after response") }
                expectingGreeting = false
                consume(length)
                state = .responseStart
                return event
            case .fetchLine(var line):
                let before = line.length
                if let event = try fetchStep(&line) { return event }
                // No event and no new state: the line's LF has not arrived yet.
                if case .fetchLine(let now) = state, before == nil, now.length == nil { return nil }
            case .fetchBody(let remaining):
                if remaining == 0 {
                    state = .fetchLine(FetchLine())
                    return .fetch(.bodyEnd)
                }
                let available = buffer.readableBytes
                guard available > 0 else { return nil }
                let n = Int(truncatingIfNeeded: Swift.min(remaining, UInt64(Swift.min(available, limits.maxBodyChunk))))
                let slice = buffer.readSlice(length: n)!
                state = .fetchBody(remaining: remaining - UInt64(n))
                return .fetch(.bodyBytes(slice))
            case .fetchSkipLiteral(let remaining, let name, let depth):
                if remaining == 0 {
                    if depth == 0 {
                        state = .fetchLine(FetchLine())
                        return .fetch(.attribute(.unknown(name: name)))
                    }
                    state = .fetchLine(FetchLine(skipping: (name, depth)))
                    continue
                }
                let available = buffer.readableBytes
                guard available > 0 else { return nil }
                let n = Int(truncatingIfNeeded: Swift.min(remaining, UInt64(available)))
                buffer.moveReaderIndex(forwardBy: n)
                state = .fetchSkipLiteral(remaining: remaining - UInt64(n), name: name, depth: depth)
            }
        }
    }

    /// One step through the current FETCH line; nil with `state` unchanged
    /// means more bytes are needed, nil with a new `state` means "continue".
    private mutating func fetchStep(_ line: inout FetchLine) throws(IMAPParseError) -> ResponseEvent? {
        let length: Int
        if let known = line.length {
            length = known
        } else {
            guard let cr = try findLineEnd(from: 0, budget: limits.maxLineLength) else { return nil }
            length = cr
            line.length = cr
            state = .fetchLine(line)
        }
        var cursor = Cursor(buffer.getSlice(at: buffer.readerIndex, length: length)!, limits: limits)
        cursor.position = line.offset

        if line.atPrefix {
            let number = try cursor.parseFetchPrefix()
            line.atPrefix = false
            line.offset = cursor.position
            state = .fetchLine(line)
            return .fetch(.start(sequenceNumber: number))
        }

        if let (name, depth) = line.skipping {
            var depth = depth
            if let size = try cursor.skipValue(depth: &depth) {
                return enterLiteral(.skipNeedsLiteral(name: name, depth: depth, size: size), lineLength: length)
            }
            line.skipping = nil
            line.offset = cursor.position
            state = .fetchLine(line)
            return .fetch(.attribute(.unknown(name: name)))
        }

        cursor.skipSpaces()
        if cursor.peek() == ASCII.closeParen {
            cursor.advance()
            cursor.skipSpaces()
            guard cursor.isAtEnd else { throw cursor.error("unexpected data after FETCH response") }
            consume(length + 2)
            state = .responseStart
            return .fetch(.finish)
        }
        guard !cursor.isAtEnd else { throw cursor.error("FETCH response ended without ')'") }

        let step = try cursor.parseFetchAttribute()
        switch step {
        case .attribute(let attribute):
            line.offset = cursor.position
            state = .fetchLine(line)
            return .fetch(.attribute(attribute))
        case .skipped(let name):
            line.offset = cursor.position
            state = .fetchLine(line)
            return .fetch(.attribute(.unknown(name: name)))
        case .inlineBody(let section, let bytes):
            line.offset = cursor.position
            state = .fetchLine(line)
            if let bytes, bytes.readableBytes > 0 {
                var chunk = bytes
                while chunk.readableBytes > 0 {
                    pending.append(.fetch(.bodyBytes(chunk.readSlice(length: Swift.min(chunk.readableBytes, limits.maxBodyChunk))!)))
                }
            }
            pending.append(.fetch(.bodyEnd))
            return .fetch(.bodyBegin(section, size: UInt64(bytes?.readableBytes ?? 0)))
        case .literalBody, .skipNeedsLiteral:
            return enterLiteral(step, lineLength: length)
        }
    }

    /// The line ended in a literal header: drop the line and its CRLF and
    /// switch to streaming or skipping the literal's bytes.
    private mutating func enterLiteral(_ step: FetchStep, lineLength: Int) -> ResponseEvent? {
        consume(lineLength + 2)
        switch step {
        case .literalBody(let section, let size):
            state = .fetchBody(remaining: size)
            return .fetch(.bodyBegin(section, size: size))
        case .skipNeedsLiteral(let name, let depth, let size):
            state = .fetchSkipLiteral(remaining: size, name: name, depth: depth)
            return nil
        default:
            preconditionFailure("enterLiteral called without a literal step")
        }
    }

    // MARK: - Framing

    private enum LineKind { case fetch, singleLine, withLiterals }

    /// Decides from the first line how the response is read: FETCH is
    /// streamed; status responses and continuation requests are one line even
    /// if their text happens to end in `{5}`; anything else may carry literals.
    private func classify(_ line: ByteBuffer) -> LineKind {
        if expectingGreeting { return .singleLine }
        var c = Cursor(line, limits: limits)
        switch c.peek() {
        case ASCII.plus:
            return .singleLine
        case ASCII.star:
            c.advance()
            c.skipSpaces()
            if let b = c.peek(), ASCII.isDigit(b) {
                _ = c.readWhile(ASCII.isDigit)
                c.skipSpaces()
                return c.tryKeyword("FETCH") ? .fetch : .withLiterals
            }
        default:
            _ = c.readWhile { ASCII.isAStringChar($0) && $0 != ASCII.plus }
            c.skipSpaces()
        }
        return c.parseStatusWord() != nil ? .singleLine : .withLiterals
    }

    /// The total length of the response (lines, literals, final CRLF) once it
    /// is complete, enforcing line-length and literal-size limits as it grows.
    private mutating func frameLength(_ p: inout FrameProgress) throws(IMAPParseError) -> Int? {
        while true {
            if let end = p.literalEnd {
                guard buffer.readableBytes >= end else { return nil }
                p.lineStart = end
                p.literalEnd = nil
                scanFrom = end
            }
            guard let cr = try findLineEnd(from: p.lineStart, budget: limits.maxLineLength - p.nonLiteralBytes) else {
                return nil
            }
            p.nonLiteralBytes += cr - p.lineStart
            if p.allowsLiterals, let size = try literalSizeAtEnd(lineStart: p.lineStart, cr: cr) {
                let maxLiteral = UInt64(limits.maxNonBodyLiteralSize)
                guard size <= maxLiteral, UInt64(p.literalBytes) + size <= maxLiteral else {
                    throw lineError(from: p.lineStart, to: cr,
                                    "literal exceeds maxNonBodyLiteralSize (\(limits.maxNonBodyLiteralSize) bytes)", .limitExceeded)
                }
                p.literalBytes += Int(size)
                p.literalEnd = cr + 2 + Int(size)
                continue
            }
            return cr + 2
        }
    }

    /// Offset of the CR of the line starting at `start`, or nil if its LF has
    /// not arrived. Throws once the line is longer than `budget`.
    private mutating func findLineEnd(from start: Int, budget: Int) throws(IMAPParseError) -> Int? {
        let readable = buffer.readableBytes
        let searchFrom = Swift.max(scanFrom, start)
        let searchEnd = Swift.min(readable, start + Swift.max(budget, 0) + 2)
        var found: Int?
        if searchFrom < searchEnd {
            found = buffer.withUnsafeReadableBytes { raw in
                raw[searchFrom..<searchEnd].firstIndex(of: ASCII.lf)
            }
        }
        guard let lf = found else {
            if readable >= start + Swift.max(budget, 0) + 2 {
                throw lineError(from: start, to: Swift.min(readable, start + 80),
                                "response line exceeds maxLineLength (\(limits.maxLineLength) bytes)", .limitExceeded)
            }
            scanFrom = Swift.max(searchFrom, searchEnd)
            return nil
        }
        guard lf > start, buffer.getInteger(at: buffer.readerIndex + lf - 1, as: UInt8.self) == ASCII.cr else {
            throw lineError(from: start, to: lf, "expected CRLF at end of line (found bare LF)", .malformed)
        }
        scanFrom = lf + 1
        return lf - 1
    }

    /// `{n}`, `{n+}` or `~{n}` immediately before the CR.
    private func literalSizeAtEnd(lineStart: Int, cr: Int) throws(IMAPParseError) -> UInt64? {
        let base = buffer.readerIndex
        func byte(_ i: Int) -> UInt8 { buffer.getInteger(at: base + i, as: UInt8.self)! }
        var i = cr - 1
        guard i > lineStart, byte(i) == ASCII.closeBrace else { return nil }
        i -= 1
        if byte(i) == ASCII.plus { i -= 1 }
        let digitsEnd = i + 1
        while i >= lineStart, ASCII.isDigit(byte(i)) { i -= 1 }
        guard i >= lineStart, byte(i) == ASCII.openBrace, digitsEnd > i + 1 else { return nil }
        var size: UInt64 = 0
        for j in (i + 1)..<digitsEnd {
            let (m, o1) = size.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(byte(j) - ASCII.zero))
            if o1 || o2 { throw lineError(from: lineStart, to: cr, "bad literal header: size too large", .malformed) }
            size = a
        }
        return size
    }

    private func lineError(from start: Int, to end: Int, _ rule: String, _ kind: IMAPParseError.Kind) -> IMAPParseError {
        let length = Swift.max(0, Swift.min(end, start + 80) - start)
        let bytes = buffer.getBytes(at: buffer.readerIndex + start, length: length) ?? []
        return IMAPParseError(kind: kind, rule: rule, excerpt: IMAPParseError.redact(bytes))
    }

    private mutating func consume(_ n: Int) {
        buffer.moveReaderIndex(forwardBy: n)
        scanFrom = 0
    }
}
