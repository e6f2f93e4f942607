// One error type per concern: parsing what a server sent, encoding what the
// client asked for, decoding mailbox names and dates. Each message names the
// grammar rule or limit involved so a log line is enough to act on.

/// The server sent something this parser cannot accept. The connection must be
/// closed afterwards: the parser does not try to resynchronise, because after a
/// framing error any byte could be the middle of a literal.
public struct IMAPParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The bytes do not match the grammar.
        case malformed
        /// A `ParserLimits` bound was exceeded; the input may be valid but is too large to accept.
        case limitExceeded
    }

    public var kind: Kind
    /// The violated rule or limit, e.g. "expected SP after tag".
    public var rule: String
    /// The bytes around the failure: printable ASCII only (others shown as `.`),
    /// at most 80 characters, never including literal contents (they may be mail or credentials).
    public var excerpt: String

    public init(kind: Kind = .malformed, rule: String, excerpt: String) {
        self.kind = kind
        self.rule = rule
        self.excerpt = excerpt
    }

    public var description: String {
        excerpt.isEmpty ? "IMAP parse error: \(rule)" : "IMAP parse error: \(rule) near \"\(excerpt)\""
    }

    /// Renders bytes for an error message without leaking control bytes or 8-bit data.
    static func redact(_ bytes: some Sequence<UInt8>, limit: Int = 80) -> String {
        var out = ""
        for byte in bytes.prefix(limit) {
            out.unicodeScalars.append(byte >= 0x20 && byte < 0x7F ? Unicode.Scalar(byte) : ".")
        }
        return out
    }
}

/// A command value that cannot be put on the wire as asked.
public struct IMAPEncodeError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "IMAP encode error: \(message)" }
}

/// A mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3) or not valid UTF-8.
public struct MailboxNameError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    /// The offending name with non-printable bytes replaced by `.`.
    public var name: String
    public init(_ message: String, name: some Sequence<UInt8>) {
        self.message = message
        self.name = IMAPParseError.redact(name, limit: 200)
    }
    public var description: String { "invalid mailbox name \"\(name)\": \(message)" }
}

/// An IMAP date-time (`"17-Jul-1996 02:44:25 -0700"`) that cannot be read.
public struct InternalDateError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var text: String
    public init(_ message: String, text: some Sequence<UInt8>) {
        self.message = message
        self.text = IMAPParseError.redact(text)
    }
    public var description: String { "invalid IMAP date-time \"\(text)\": \(message)" }
}
