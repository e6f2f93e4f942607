/// Keyword-valued settings share parsing and "expected one of" messages.
protocol ConfigurationKeyword: RawRepresentable<String>, CaseIterable {}

extension ConfigurationKeyword {
    static var allowedValues: [String] { allCases.map(\.rawValue) }
}

/// Settings that `[general]` supplies to every account and an account may
/// override with the same key.
public struct SyncPolicy: Sendable, Equatable {
    /// What happens to the other side when a message disappears on one side.
    public enum Deletions: String, Sendable, Equatable, CaseIterable, ConfigurationKeyword {
        /// Delete on the other side too (two-way sync).
        case propagate
        /// Never delete local copies because of server deletions; local deletions
        /// still propagate to the server. For users who want a local archive.
        case keepLocal = "keep-local"
        /// Move instead of delete: to the server's Trash mailbox (special-use
        /// `\Trash`) for local deletions, into the local Trash folder for server
        /// deletions.
        case trash
    }

    /// Mass-delete guard: a folder with more than
    /// ``massDeleteGuardMinimumMessages`` messages stops syncing when one run
    /// would delete more than this share (0…1) of its messages. `1` disables the
    /// guard. Protects against an emptied or remounted Maildir wiping the server.
    public static let massDeleteGuardMinimumMessages = 20

    public var deletions: Deletions
    public var massDeleteThreshold: Double
    /// Daemon: how often every folder is fully reconciled even when NOTIFY/IDLE
    /// reported nothing, to catch changes notifications can miss.
    public var fullReconcileInterval: Duration
    /// Daemon: how often folders not watched by NOTIFY/IDLE are polled with STATUS.
    public var pollInterval: Duration
    /// Ceiling of the exponential reconnect back-off after failures.
    public var backoffMax: Duration
    /// Messages larger than this (bytes) are not copied either way and are
    /// reported on every run, like mbsync's `MaxSize`; nil: no limit.
    public var maxMessageSize: Int64?

    public static let defaults = SyncPolicy(
        deletions: .propagate,
        massDeleteThreshold: 0.5,
        fullReconcileInterval: .seconds(3600),
        pollInterval: .seconds(300),
        backoffMax: .seconds(900)
    )

    public init(
        deletions: Deletions,
        massDeleteThreshold: Double,
        fullReconcileInterval: Duration,
        pollInterval: Duration,
        backoffMax: Duration,
        maxMessageSize: Int64? = nil
    ) {
        self.deletions = deletions
        self.massDeleteThreshold = massDeleteThreshold
        self.fullReconcileInterval = fullReconcileInterval
        self.pollInterval = pollInterval
        self.backoffMax = backoffMax
        self.maxMessageSize = maxMessageSize
    }
}

/// The `[general]` table.
public struct GeneralSettings: Sendable, Equatable, CustomStringConvertible {
    public enum LogLevel: String, Sendable, Equatable, CaseIterable, ConfigurationKeyword {
        case trace, debug, info, notice, warning, error
    }

    /// Absolute path of the sync-state database.
    public var statePath: String
    /// Parallel IMAP connections per account, 1…16. Servers cap connections per
    /// user (Gmail: 15 across all clients), hence the ceiling.
    public var connectionsPerAccount: Int
    public var logLevel: LogLevel
    /// Defaults for every account; ``AccountConfiguration/policy`` holds the
    /// effective values after the account's overrides.
    public var defaults: SyncPolicy

    public init(statePath: String, connectionsPerAccount: Int, logLevel: LogLevel, defaults: SyncPolicy) {
        self.statePath = statePath
        self.connectionsPerAccount = connectionsPerAccount
        self.logLevel = logLevel
        self.defaults = defaults
    }

    public var description: String {
        "general(state: \(statePath), connections_per_account: \(connectionsPerAccount), "
            + "log_level: \(logLevel.rawValue), \(defaults.summary))"
    }
}

extension SyncPolicy {
    var summary: String {
        "deletions: \(deletions.rawValue), mass_delete_threshold: \(massDeleteThreshold), "
            + "full_reconcile_interval: \(DurationText.format(fullReconcileInterval)), "
            + "poll_interval: \(DurationText.format(pollInterval)), backoff_max: \(DurationText.format(backoffMax))"
    }
}

/// A SHA-256 certificate pin: the digest of the server leaf certificate's DER
/// encoding. Written as 64 hex digits, optionally colon-separated in pairs and
/// optionally prefixed with `sha256:` (the form `openssl x509 -fingerprint -sha256` prints).
public struct CertificateFingerprint: Sendable, Hashable, CustomStringConvertible {
    /// The 32 digest bytes.
    public let bytes: [UInt8]

    /// Parses the notation above; `nil` for anything else (other algorithms,
    /// wrong length, non-hex characters, misplaced colons).
    public init?(_ text: String) {
        var body = Substring(text.trimmingWhitespace())
        if let colon = body.firstIndex(of: ":"), body[..<colon].lowercased() == "sha256" {
            body = body[body.index(after: colon)...]
        }
        let hex: [Character]
        if body.contains(":") {
            let pairs = body.split(separator: ":", omittingEmptySubsequences: false)
            guard pairs.allSatisfy({ $0.count == 2 }) else { return nil }
            hex = Array(pairs.joined())
        } else {
            hex = Array(body)
        }
        guard hex.count == 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for index in stride(from: 0, to: 64, by: 2) {
            guard let byte = UInt8(String(hex[index...index + 1]), radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    /// Lower-case hex without separators, the form `IMAPConfiguration.TLS.pinnedSHA256` takes.
    public var hex: String {
        bytes.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }

    /// `sha256:AB:CD:…`, the notation `openssl` prints, for messages.
    public var description: String {
        "sha256:" + bytes.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: ":")
    }
}

/// One `[[account]]` table with defaults applied, paths resolved and every
/// cross-key rule checked.
public struct AccountConfiguration: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// How the connection is protected. Raw values are the configuration keywords.
    public enum Security: String, Sendable, Equatable, CaseIterable, ConfigurationKeyword {
        /// TLS from the first byte; default port 993.
        case implicitTLS = "tls"
        /// STARTTLS upgrade, refused if the server does not offer it; default port 143.
        case startTLS = "starttls"
        /// No encryption; credentials need `allow_insecure_auth = true`.
        case plaintext = "plain"

        public var defaultPort: Int { self == .implicitTLS ? 993 : 143 }
    }

    /// The `tls` key's spelling of `security`.
    enum TLSMode: String, Sendable, Equatable, CaseIterable, ConfigurationKeyword {
        case implicit, starttls, none

        var security: Security {
            switch self {
            case .implicit: .implicitTLS
            case .starttls: .startTLS
            case .none: .plaintext
            }
        }
    }

    /// The SASL mechanism family used to log in.
    public enum Authentication: String, Sendable, Equatable, CaseIterable, ConfigurationKeyword {
        /// AUTHENTICATE PLAIN / LOGIN with a password.
        case password
        /// Google/Microsoft XOAUTH2 with a bearer token.
        case xoauth2
        /// RFC 7628 OAUTHBEARER with a bearer token.
        case oauthbearer

        var usesToken: Bool { self != .password }
    }

    /// Folder arrangement under ``maildir``; see the Maildir module's `MaildirLayout`.
    public enum Layout: String, Sendable, Equatable, CaseIterable, ConfigurationKeyword {
        /// Maildir++ (`.Lists.swift-dev`), Dovecot's default.
        case maildirPlusPlus = "maildir++"
        /// Nested directories (`Lists/swift-dev`), Dovecot's `LAYOUT=fs`.
        case nested = "fs"
    }

    /// How folder names are written on disk.
    public enum NameEncoding: String, Sendable, Equatable, CaseIterable, ConfigurationKeyword {
        case utf8
        case modifiedUTF7 = "modified-utf7"
    }

    /// Where newly downloaded mail is delivered.
    public enum NewMailDelivery: String, Sendable, Equatable, CaseIterable, ConfigurationKeyword {
        /// Into `cur/` with flags, like mbsync: the server already decided what is new.
        case cur
        /// Unseen mail into `new/`, for readers that use `new/` as "arrived since last look".
        case new
    }

    public var name: String
    public var host: String
    public var port: Int
    public var security: Security
    public var user: String
    public var authentication: Authentication
    /// Where the password or token comes from; resolved only on request.
    public var secret: SecretSource
    /// Absolute path of an extra PEM trust-anchor file.
    public var caFile: String?
    public var fingerprint: CertificateFingerprint?
    public var allowInsecureAuth: Bool
    public var compress: Bool
    /// Absolute, normalised local root.
    public var maildir: String
    public var layout: Layout
    public var folderNameEncoding: NameEncoding
    public var newMailDelivery: NewMailDelivery
    public var folders: FolderFilter
    /// Daemon: folders watched with IDLE when the server lacks NOTIFY.
    public var idleFolders: [String]
    public var folderNames: FolderNameMapping
    /// Effective policy: `[general]` defaults with this account's overrides.
    public var policy: SyncPolicy

    public init(
        name: String, host: String, port: Int, security: Security, user: String,
        authentication: Authentication, secret: SecretSource, caFile: String? = nil,
        fingerprint: CertificateFingerprint? = nil, allowInsecureAuth: Bool = false, compress: Bool = true,
        maildir: String, layout: Layout = .maildirPlusPlus, folderNameEncoding: NameEncoding = .utf8,
        newMailDelivery: NewMailDelivery = .cur, folders: FolderFilter = FolderFilter(),
        idleFolders: [String] = ["INBOX"], folderNames: FolderNameMapping = FolderNameMapping(),
        policy: SyncPolicy = .defaults
    ) {
        self.name = name
        self.host = host
        self.port = port
        self.security = security
        self.user = user
        self.authentication = authentication
        self.secret = secret
        self.caFile = caFile
        self.fingerprint = fingerprint
        self.allowInsecureAuth = allowInsecureAuth
        self.compress = compress
        self.maildir = maildir
        self.layout = layout
        self.folderNameEncoding = folderNameEncoding
        self.newMailDelivery = newMailDelivery
        self.folders = folders
        self.idleFolders = idleFolders
        self.folderNames = folderNames
        self.policy = policy
    }

    /// Written out by hand so the secret source is shown redacted (see ``SecretSource/description``).
    public var description: String {
        var text = "account \"\(name)\" (\(user) at \(host):\(port) \(security.rawValue), auth: \(authentication.rawValue), "
        text += "secret: \(secret), maildir: \(maildir) [\(layout.rawValue), \(folderNameEncoding.rawValue)], "
        if let caFile { text += "ca_file: \(caFile), " }
        if let fingerprint { text += "fingerprint: \(fingerprint), " }
        if allowInsecureAuth { text += "allow_insecure_auth, " }
        text += "compress: \(compress), new_mail_to: \(newMailDelivery.rawValue), \(folders), "
        text += "idle_folders: \(idleFolders), \(folderNames), \(policy.summary))"
        return text
    }

    public var debugDescription: String { description }
}

/// The whole configuration file, validated.
public struct FerrymailConfiguration: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The file this came from, as named by the caller.
    public var source: String
    public var general: GeneralSettings
    /// In file order; names are unique (case-insensitively) and maildir roots disjoint.
    public var accounts: [AccountConfiguration]
    /// Problems that do not stop ferrymail but deserve attention, formatted like
    /// errors (`config.toml:3:1: warning: …`): a world-writable config file,
    /// settings that have no effect.
    public var warnings: [String]

    public init(source: String, general: GeneralSettings, accounts: [AccountConfiguration], warnings: [String] = []) {
        self.source = source
        self.general = general
        self.accounts = accounts
        self.warnings = warnings
    }

    /// The account called `name` (exact match first, then case-insensitive,
    /// since names are unique case-insensitively).
    public func account(named name: String) -> AccountConfiguration? {
        accounts.first { $0.name == name } ?? accounts.first { $0.name.lowercased() == name.lowercased() }
    }

    public var description: String {
        ([source + ":", "  " + general.description] + accounts.map { "  " + $0.description })
            .joined(separator: "\n")
    }

    public var debugDescription: String { description }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return String(slice)
    }
}
