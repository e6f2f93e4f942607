/// How folders are arranged under the Maildir root.
public enum MaildirLayout: String, Sendable, Hashable, CaseIterable {
    /// Maildir++ (Dovecot's default): INBOX is the root itself and every other
    /// folder is a dot-directory directly under it, `.` separating hierarchy
    /// levels (`Lists/swift-dev` → `.Lists.swift-dev`). Folders carry a
    /// `maildirfolder` marker file, as Dovecot and Courier create.
    case maildirPlusPlus
    /// Nested directories, Dovecot's `LAYOUT=fs` with its default INBOX:
    /// `Lists/swift-dev` → `Lists/swift-dev/{cur,new,tmp}` and INBOX is the
    /// root itself (`mail_location = maildir:<root>:LAYOUT=fs`). Children of
    /// INBOX (`INBOX/x`) live in `<root>/INBOX/x`, as Dovecot puts them.
    /// Because a folder's `cur/new/tmp` share its directory with its child
    /// folders, child levels that would collide with them are escaped (see
    /// ``MailboxNameCodec``).
    case nested
}

/// How folder names are written on disk.
public enum FolderNameEncoding: String, Sendable, Hashable, CaseIterable {
    /// UTF-8 (Dovecot with `UTF-8` in `mail_location`, mutt, notmuch).
    case utf8
    /// IMAP modified UTF-7 (RFC 3501 §5.1.3), what Dovecot 2.3 writes by default.
    case modifiedUTF7
}

/// Maps IMAP mailbox names (hierarchy separator `/`) to on-disk paths below
/// the root and back.
///
/// Escaping scheme, applied per hierarchy level after the optional mUTF-7 step:
/// a byte is written as `%XX` (upper-case hex) when it is
/// - `%` itself, `/`, a control character (0x00–0x1F, 0x7F);
/// - `.` anywhere (Maildir++, where `.` separates levels);
/// - `.` as the first byte (nested, so no level is `.`, `..` or hidden);
/// - the first byte of a level named `cur`, `new`, `tmp`, `maildirfolder`,
///   `subscriptions` or starting with `dovecot` (nested, where a child folder
///   shares a directory with its parent's Maildir files).
///
/// Decoding turns every `%XX` back into its byte, so `decode(encode(n)) == n`
/// for every name the encoder accepts. Names are refused only when no safe
/// encoding exists: empty hierarchy levels (including a leading `/`, i.e. an
/// absolute name) and on-disk names longer than 255 bytes.
public struct MailboxNameCodec: Sendable, Hashable {
    public let layout: MaildirLayout
    public let encoding: FolderNameEncoding
    public static let hierarchySeparator: Character = "/"
    static let maximumComponentBytes = 255

    public init(layout: MaildirLayout, encoding: FolderNameEncoding = .utf8) {
        self.layout = layout
        self.encoding = encoding
    }

    /// Splits and normalizes an IMAP name: a first level that equals `INBOX`
    /// in any case is INBOX (RFC 3501 §5.1), so `inbox/x` and `INBOX/x` are one
    /// folder.
    public static func levels(of name: String) throws -> [String] {
        if name.isEmpty { throw MaildirError.unsafeMailboxName(name: name, reason: "the name is empty") }
        var levels = name.split(separator: hierarchySeparator, omittingEmptySubsequences: false).map(String.init)
        if levels.first == "" {
            throw MaildirError.unsafeMailboxName(name: name, reason: "it is absolute (starts with '/')")
        }
        if levels.contains("") {
            throw MaildirError.unsafeMailboxName(name: name, reason: "it has an empty hierarchy level ('//' or a trailing '/')")
        }
        if levels[0].uppercased() == "INBOX" { levels[0] = "INBOX" }
        return levels
    }

    public static func isInbox(_ name: String) -> Bool { name.uppercased() == "INBOX" }

    /// Path components below the root; `[]` is the root itself.
    public func relativeComponents(for name: String) throws -> [String] {
        let levels = try Self.levels(of: name)
        switch layout {
        case .maildirPlusPlus:
            if levels == ["INBOX"] { return [] }
            let disk = "." + levels.map { encodeLevel($0) }.joined(separator: ".")
            guard disk.utf8.count <= Self.maximumComponentBytes else {
                throw MaildirError.unsafeMailboxName(name: name, reason: "its Maildir++ directory name would be \(disk.utf8.count) bytes, over the 255-byte limit")
            }
            return [disk]
        case .nested:
            if levels == ["INBOX"] { return [] }
            return try levels.enumerated().map { index, level in
                if index == 0 && level == "INBOX" { return "INBOX" }
                let disk = encodeLevel(level)
                guard disk.utf8.count <= Self.maximumComponentBytes else {
                    throw MaildirError.unsafeMailboxName(name: name, reason: "hierarchy level \(String(reflecting: level)) would be \(disk.utf8.count) bytes on disk, over the 255-byte limit")
                }
                return disk
            }
        }
    }

    static let nestedReservedNames: Set<String> = ["cur", "new", "tmp", "maildirfolder", "subscriptions"]

    /// Encodes one hierarchy level (see the type's documentation).
    public func encodeLevel(_ level: String) -> String {
        let source = encoding == .modifiedUTF7 ? ModifiedUTF7.encode(level) : level
        let bytes = Array(source.utf8)
        let escapeFirst = layout == .nested
            && (Self.nestedReservedNames.contains(source) || source.hasPrefix("dovecot"))
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for (i, byte) in bytes.enumerated() {
            let mustEscape: Bool
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "/"), 0x00..<0x20, 0x7F: mustEscape = true
            case UInt8(ascii: "."): mustEscape = layout == .maildirPlusPlus || i == 0
            default: mustEscape = i == 0 && escapeFirst
            }
            if mustEscape {
                out.append(UInt8(ascii: "%"))
                out.append(Self.hex[Int(byte >> 4)])
                out.append(Self.hex[Int(byte & 0x0F)])
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let hex = Array("0123456789ABCDEF".utf8)

    /// Decodes one on-disk hierarchy level; `nil` when it is not valid UTF-8
    /// after unescaping or not valid mUTF-7 in that mode. A `%` not followed by
    /// two hex digits is taken literally, so foreign names still list; a
    /// level that would decode to one containing `/` is refused.
    public func decodeLevel(_ disk: String) -> String? {
        let bytes = Array(disk.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count,
               let hi = Self.hexValue(bytes[i + 1]), let lo = Self.hexValue(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        guard let text = String(validating: out, as: UTF8.self),
              let level = encoding == .modifiedUTF7 ? ModifiedUTF7.decode(text) : text,
              // A level with the separator in it cannot come from the encoder
              // and would list as a different folder than it is.
              !level.contains(Self.hierarchySeparator), !level.isEmpty else { return nil }
        return level
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    /// The IMAP name of a Maildir++ directory (`.Lists.swift-dev`), `nil` for
    /// a name this codec cannot have produced.
    public func mailboxName(maildirPlusPlusDirectory disk: String) -> String? {
        guard disk.hasPrefix("."), disk.utf8.count > 1 else { return nil }
        let parts = disk.dropFirst().split(separator: ".", omittingEmptySubsequences: false)
        var levels: [String] = []
        for part in parts {
            guard !part.isEmpty, let level = decodeLevel(String(part)) else { return nil }
            levels.append(level)
        }
        return levels.joined(separator: "/")
    }
}
