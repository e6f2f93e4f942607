import NIOCore

/// What the client writes for one command. Literal data the client streams
/// itself (APPEND bodies) and pauses for synchronizing literals are explicit
/// chunks, so the client never has to re-parse what the encoder produced.
public enum CommandChunk: Sendable, Hashable {
    /// Write these bytes.
    case bytes(ByteBuffer)
    /// A synchronizing literal header was just written: wait for the server's
    /// `+` continuation before writing the next chunk.
    case waitForContinuation
    /// Stream message body `index` of the APPEND (exactly `size` bytes) here.
    case appendBody(index: Int, size: UInt64)
}

public struct EncodedCommand: Sendable {
    public var chunks: [CommandChunk]
    /// The command for logs: passwords as `***`, SASL data as `[credentials]`,
    /// literal contents as `[N bytes]`.
    public var logDescription: String

    public init(chunks: [CommandChunk], logDescription: String) {
        self.chunks = chunks
        self.logDescription = logDescription
    }
}

/// How literals are announced, from the server's capabilities.
enum LiteralMode: Sendable {
    /// `{n}` CRLF, then wait for `+`.
    case synchronizing
    /// RFC 7888 LITERAL+: `{n+}` for any size.
    case plus
    /// RFC 7888 LITERAL-: `{n+}` up to 4096 bytes, synchronizing above.
    case minus

    func isNonSynchronizing(size: UInt64) -> Bool {
        switch self {
        case .synchronizing: return false
        case .plus: return true
        case .minus: return size <= 4096
        }
    }
}

/// How a string's contents appear in `logDescription`.
enum LogRedaction {
    case visible, password, credentials
}

/// Accumulates wire bytes and the log line in step.
struct CommandWriter {
    private(set) var chunks: [CommandChunk] = []
    private var current = ByteBufferAllocator().buffer(capacity: 128)
    private(set) var log = ""
    let literalMode: LiteralMode
    /// UTF8=ACCEPT is enabled: quoted strings may carry UTF-8 (RFC 6855 §3).
    let utf8Quoted: Bool

    /// Strings longer than this go as literals even when quotable, which keeps
    /// command lines short for servers with small line limits.
    static let maxQuotedLength = 1024

    init(literalMode: LiteralMode, utf8Quoted: Bool) {
        self.literalMode = literalMode
        self.utf8Quoted = utf8Quoted
    }

    /// Protocol syntax: written to the wire and the log as-is.
    mutating func raw(_ text: String) {
        current.writeString(text)
        log += text
    }

    mutating func space() { raw(" ") }

    mutating func appendBody(index: Int, size: UInt64) {
        let header = literalMode.isNonSynchronizing(size: size) ? "{\(size)+}" : "{\(size)}"
        raw(header)
        current.writeString("\r\n")
        log += " [\(size) bytes]"
        flush()
        if !literalMode.isNonSynchronizing(size: size) { chunks.append(.waitForContinuation) }
        chunks.append(.appendBody(index: index, size: size))
    }

    /// astring = 1*ASTRING-CHAR / string
    mutating func astring(_ bytes: [UInt8], _ what: String, redaction: LogRedaction = .visible) throws(IMAPEncodeError) {
        if !bytes.isEmpty, bytes.count <= CommandWriter.maxQuotedLength, bytes.allSatisfy(ASCII.isAStringChar) {
            current.writeBytes(bytes)
            logValue(bytes, redaction)
            return
        }
        try string(bytes, what, redaction: redaction)
    }

    /// string = quoted / literal. A literal is used for CR, LF, 8-bit bytes
    /// (unless UTF8=ACCEPT allows them quoted) and long values.
    mutating func string(_ bytes: [UInt8], _ what: String, redaction: LogRedaction = .visible) throws(IMAPEncodeError) {
        if bytes.contains(0) {
            throw IMAPEncodeError("\(what) contains a NUL byte, which IMAP strings and literals cannot carry (RFC 3501 CHAR8)")
        }
        let needsLiteral = bytes.count > CommandWriter.maxQuotedLength || bytes.contains { b in
            b == ASCII.cr || b == ASCII.lf || (b >= 0x80 && !utf8Quoted)
        } || (utf8Quoted && bytes.contains { $0 >= 0x80 } && String(validating: bytes, as: UTF8.self) == nil)
        if needsLiteral {
            literal(bytes, redaction: redaction)
            return
        }
        current.writeInteger(ASCII.quote)
        for b in bytes {
            if b == ASCII.quote || b == ASCII.backslash { current.writeInteger(ASCII.backslash) }
            current.writeInteger(b)
        }
        current.writeInteger(ASCII.quote)
        switch redaction {
        case .visible:
            log += "\""
            log += IMAPParseError.redact(bytes, limit: Int.max)
            log += "\""
        case .password: log += "***"
        case .credentials: log += "[credentials]"
        }
    }

    mutating func literal(_ bytes: [UInt8], redaction: LogRedaction) {
        let size = UInt64(bytes.count)
        let sync = !literalMode.isNonSynchronizing(size: size)
        current.writeString(sync ? "{\(size)}\r\n" : "{\(size)+}\r\n")
        if sync {
            flush()
            chunks.append(.waitForContinuation)
        }
        current.writeBytes(bytes)
        switch redaction {
        case .visible: log += sync ? "{\(size)} [\(size) bytes]" : "{\(size)+} [\(size) bytes]"
        case .password: log += "***"
        case .credentials: log += "[credentials]"
        }
    }

    private mutating func logValue(_ bytes: [UInt8], _ redaction: LogRedaction) {
        switch redaction {
        case .visible: log += String(decoding: bytes, as: UTF8.self)
        case .password: log += "***"
        case .credentials: log += "[credentials]"
        }
    }

    /// Raw bytes with a separate log rendering (SASL responses).
    mutating func rawBytes(_ bytes: [UInt8], log text: String) {
        current.writeBytes(bytes)
        log += text
    }

    mutating func endLine() {
        current.writeString("\r\n")
    }

    mutating func flush() {
        if current.readableBytes > 0 {
            chunks.append(.bytes(current))
            current = ByteBufferAllocator().buffer(capacity: 128)
        }
    }

    mutating func finish() -> EncodedCommand {
        flush()
        return EncodedCommand(chunks: chunks, logDescription: log)
    }
}
