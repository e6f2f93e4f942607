/// Which server mailboxes an account syncs, from `include` / `exclude` patterns.
///
/// Patterns use IMAP LIST wildcards (RFC 3501 §6.3.8) and are matched against
/// *server* names, in the server's own hierarchy delimiter, because that is
/// what users see in their webmail and in `LIST` output:
/// `*` matches any run of characters including the delimiter, `%` any run not
/// containing it. A mailbox is synced when some include pattern matches and no
/// exclude pattern does: exclude wins, so `include = ["*"]`,
/// `exclude = ["Archive/*"]` means "everything but Archive's children".
///
/// `INBOX` is case-insensitive in IMAP, so `inbox`, `Inbox/%` etc. match
/// `INBOX` and its children; every other name is case-sensitive.
public struct FolderFilter: Sendable, Equatable, CustomStringConvertible {
    public let include: [String]
    public let exclude: [String]

    public init(include: [String] = ["*"], exclude: [String] = []) {
        self.include = include
        self.exclude = exclude
    }

    /// Whether `serverName` is synced. `delimiter` is the server's hierarchy
    /// delimiter from LIST; `nil` for a flat namespace (then `%` behaves like `*`).
    public func includes(_ serverName: String, delimiter: Character?) -> Bool {
        let matches = { (pattern: String) in Self.matches(pattern: pattern, name: serverName, delimiter: delimiter) }
        return include.contains(where: matches) && !exclude.contains(where: matches)
    }

    /// Whether the IMAP LIST-style `pattern` matches `name`.
    public static func matches(pattern: String, name: String, delimiter: Character?) -> Bool {
        let pattern = Array(normalizedInbox(pattern, delimiter: delimiter))
        let name = Array(normalizedInbox(name, delimiter: delimiter))
        // matched[j] == pattern[..<i] matches name[..<j]; classic wildcard DP,
        // O(pattern × name) without the exponential backtracking of the naive recursion.
        var matched = [Bool](repeating: false, count: name.count + 1)
        matched[0] = true
        for token in pattern {
            var next = [Bool](repeating: false, count: name.count + 1)
            switch token {
            case "*":
                var reachable = false
                for j in 0...name.count {
                    reachable = reachable || matched[j]
                    next[j] = reachable
                }
            case "%":
                next[0] = matched[0]
                if name.count > 0 {
                    for j in 1...name.count {
                        next[j] = matched[j] || (next[j - 1] && name[j - 1] != delimiter)
                    }
                }
            default:
                if name.count > 0 {
                    for j in 1...name.count where matched[j - 1] && name[j - 1] == token {
                        next[j] = true
                    }
                }
            }
            matched = next
        }
        return matched[name.count]
    }

    /// Spells a leading `INBOX` level (any case) as `INBOX`.
    static func normalizedInbox(_ name: String, delimiter: Character?) -> String {
        let firstLevelEnd = delimiter.flatMap { name.firstIndex(of: $0) } ?? name.endIndex
        guard name[..<firstLevelEnd].uppercased() == "INBOX" else { return name }
        return "INBOX" + name[firstLevelEnd...]
    }

    public var description: String { "include: \(include), exclude: \(exclude)" }
}

/// IMAP special-use mailbox roles (RFC 6154, plus `\Important` from RFC 8457).
public enum SpecialUseRole: String, Sendable, Hashable, CaseIterable, ConfigurationKeyword {
    case all, archive, drafts, flagged, important, junk, sent, trash

    /// From a LIST attribute such as `\Sent` (case-insensitive); `nil` for
    /// attributes that are not special-use.
    public init?(attribute: String) {
        guard attribute.hasPrefix("\\"), let role = SpecialUseRole(rawValue: attribute.dropFirst().lowercased()) else {
            return nil
        }
        self = role
    }

    /// The LIST attribute, e.g. `\Sent`.
    public var attribute: String { "\\" + rawValue.prefix(1).uppercased() + rawValue.dropFirst() }
}

/// Translates mailbox names between the server and the local Maildir tree.
///
/// Precedence, server → local: an explicit `folder_map` entry, else the local
/// name for the mailbox's special-use role (`special_use`, so Gmail's
/// `[Gmail]/Sent Mail` and Outlook's `Sent Items` both become `Sent`), else the
/// server name unchanged. Entries map whole names only; children of a mapped
/// mailbox keep their server names. Names are logical: converting hierarchy
/// delimiters and encoding for disk is the Maildir module's job.
public struct FolderNameMapping: Sendable, Equatable, CustomStringConvertible {
    /// Local names for roles when the account does not say otherwise.
    public static let defaultSpecialUse: [SpecialUseRole: String] = [
        .sent: "Sent", .drafts: "Drafts", .trash: "Trash", .junk: "Junk", .archive: "Archive",
    ]

    /// `folder_map`: server name → local name. Values are unique, so the map inverts.
    public let serverToLocal: [String: String]
    /// `special_use` merged over ``defaultSpecialUse``: role → local name.
    public let specialUse: [SpecialUseRole: String]

    public init(serverToLocal: [String: String] = [:], specialUse: [SpecialUseRole: String] = defaultSpecialUse) {
        self.serverToLocal = serverToLocal
        self.specialUse = specialUse
    }

    /// The local name for server mailbox `serverName`, whose special-use role
    /// (from LIST, if any) is `role`.
    public func localName(forServerName serverName: String, role: SpecialUseRole? = nil) -> String {
        if let mapped = serverToLocal[serverName] ?? inboxInsensitiveLookup(serverName) { return mapped }
        if let role, let local = specialUse[role] { return local }
        return serverName
    }

    /// The server name for local folder `localName`. `serverRoles` maps the
    /// roles the server announced to its mailbox names, so local `Sent` finds
    /// `[Gmail]/Sent Mail`. Without a mapping the name is unchanged.
    public func serverName(forLocalName localName: String, serverRoles: [SpecialUseRole: String] = [:]) -> String {
        if let server = serverToLocal.first(where: { $0.value == localName })?.key { return server }
        if let role = role(forLocalName: localName), let server = serverRoles[role] { return server }
        return localName
    }

    /// The special-use role whose local folder is `localName`, e.g. `.sent` for
    /// `Sent`; used to give folders created locally their role on the server.
    public func role(forLocalName localName: String) -> SpecialUseRole? {
        specialUse.filter { $0.value == localName }.keys.min { $0.rawValue < $1.rawValue }
    }

    /// The local folder for a role (`Sent` for `.sent` by default).
    public func localName(for role: SpecialUseRole) -> String? { specialUse[role] }

    private func inboxInsensitiveLookup(_ serverName: String) -> String? {
        guard serverName.uppercased() == "INBOX" else { return nil }
        return serverToLocal.first { $0.key.uppercased() == "INBOX" }?.value
    }

    public var description: String {
        let map = serverToLocal.sorted { $0.key < $1.key }.map { "\($0.key) → \($0.value)" }
        let roles = specialUse.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) → \($0.value)" }
        return "folder_map: [\(map.joined(separator: ", "))], special_use: [\(roles.joined(separator: ", "))]"
    }
}
