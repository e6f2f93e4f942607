/// The Maildir "info" flags that have a fixed letter.
///
/// `passed` (`P`) has no IMAP system flag. Dovecot does not map it to
/// `$Forwarded` either (it stores `$Forwarded` as a keyword letter), so it is
/// kept here as its own flag: it survives flag changes made through this API
/// and a caller that wants `$Forwarded` semantics can look at both.
public struct SystemFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `D` — IMAP `\Draft`.
    public static let draft = SystemFlags(rawValue: 1 << 0)
    /// `F` — IMAP `\Flagged`.
    public static let flagged = SystemFlags(rawValue: 1 << 1)
    /// `P` — Maildir "passed" (resent/forwarded/bounced); no IMAP equivalent.
    public static let passed = SystemFlags(rawValue: 1 << 2)
    /// `R` — IMAP `\Answered` ("replied").
    public static let answered = SystemFlags(rawValue: 1 << 3)
    /// `S` — IMAP `\Seen`.
    public static let seen = SystemFlags(rawValue: 1 << 4)
    /// `T` — IMAP `\Deleted` ("trashed").
    public static let deleted = SystemFlags(rawValue: 1 << 5)

    /// Letters in ASCII order, which is also the order they appear in file names.
    static let letters: [(UInt8, SystemFlags)] = [
        (UInt8(ascii: "D"), .draft), (UInt8(ascii: "F"), .flagged), (UInt8(ascii: "P"), .passed),
        (UInt8(ascii: "R"), .answered), (UInt8(ascii: "S"), .seen), (UInt8(ascii: "T"), .deleted),
    ]

    static func from(letter: UInt8) -> SystemFlags? {
        switch letter {
        case UInt8(ascii: "D"): return .draft
        case UInt8(ascii: "F"): return .flagged
        case UInt8(ascii: "P"): return .passed
        case UInt8(ascii: "R"): return .answered
        case UInt8(ascii: "S"): return .seen
        case UInt8(ascii: "T"): return .deleted
        default: return nil
        }
    }

    /// The IMAP system flags, for mapping to and from an IMAP FLAGS list.
    /// `passed` is absent because IMAP has no such flag.
    public static let imapNames: [(SystemFlags, String)] = [
        (.answered, "\\Answered"), (.flagged, "\\Flagged"), (.deleted, "\\Deleted"),
        (.seen, "\\Seen"), (.draft, "\\Draft"),
    ]

    public var description: String {
        String(decoding: Self.letters.filter { contains($0.1) }.map(\.0), as: UTF8.self)
    }
}

/// The complete flag state of one message as IMAP sees it: system flags plus
/// keywords.
///
/// Keywords are kept sorted and de-duplicated so that two values describing
/// the same state compare equal. They are compared case-sensitively, as
/// Dovecot's `dovecot-keywords` file does.
public struct MessageFlags: Sendable, Hashable, CustomStringConvertible {
    public var system: SystemFlags
    public internal(set) var keywords: [String]

    public init(system: SystemFlags = [], keywords: some Sequence<String> = [String]()) {
        self.system = system
        self.keywords = Array(Set(keywords)).sorted()
    }

    public static let none = MessageFlags()

    /// For keywords that are already sorted and unique (from a keyword table),
    /// so a scan of many messages does not sort every entry's list again.
    init(system: SystemFlags, sortedKeywords: [String]) {
        self.system = system
        self.keywords = sortedKeywords
    }

    public mutating func insert(keyword: String) {
        if !keywords.contains(keyword) { keywords.append(keyword); keywords.sort() }
    }

    public mutating func remove(keyword: String) {
        keywords.removeAll { $0 == keyword }
    }

    public var description: String {
        var parts = SystemFlags.imapNames.filter { system.contains($0.0) }.map(\.1)
        if system.contains(.passed) { parts.append("(P)") }
        parts.append(contentsOf: keywords)
        return "(" + parts.joined(separator: " ") + ")"
    }

    /// Checks that `keyword` is an IMAP flag-keyword (RFC 3501 `atom`):
    /// printable ASCII without atom-specials, not starting with `\`.
    /// The rules keep `dovecot-keywords` (one keyword per line, space-separated
    /// from its index) parseable and match what an IMAP server accepts.
    public static func validationProblem(keyword: String) -> String? {
        if keyword.isEmpty { return "it is empty" }
        if keyword.utf8.count > 255 { return "it is longer than 255 bytes" }
        for byte in keyword.utf8 {
            if byte <= 0x20 || byte >= 0x7F { return "it contains a space, control or non-ASCII character" }
            switch byte {
            case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "{"), UInt8(ascii: "%"),
                 UInt8(ascii: "*"), UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "]"):
                return "it contains the IMAP special character \(Character(Unicode.Scalar(byte)))"
            default: continue
            }
        }
        return nil
    }
}
