import Foundation

extension DovecotServer {
    /// Login credentials of one passwd-file user to create on a test server.
    public struct Account: Sendable, Hashable {
        public var name: String
        public var password: String

        public init(name: String, password: String) {
            self.name = name
            self.password = password
        }

        public static let alice = Account(name: "alice", password: "alice-Secret-1")
        public static let bob = Account(name: "bob", password: "bob-Secret-2")
    }

    /// How mailbox hierarchy is stored on disk.
    public enum MailLayout: Sendable, Hashable {
        /// `maildir:~/Maildir` – Maildir++: every folder is a dot-directory directly under the root
        /// (`Lists/swift` → `~/Maildir/.Lists.swift`), INBOX is the root itself.
        case maildirPlusPlus
        /// `maildir:~/Maildir:LAYOUT=fs` – nested directories (`Lists/swift` → `~/Maildir/Lists/swift`),
        /// INBOX is the root itself.
        case fs
    }

    /// Everything that varies between test servers. All defaults describe a full-featured server.
    public struct Options: Sendable {
        /// Users in the passwd-file (default: alice and bob with fixed passwords).
        public var users: [Account]
        /// Capabilities to hide from the post-login CAPABILITY list (case-insensitive), e.g.
        /// `["QRESYNC", "CONDSTORE"]`.
        ///
        /// Implemented with Dovecot's `imap_capability`, which replaces the whole list, so it is set
        /// to `DovecotServer.postLoginCapabilities(for:)` minus these. Side effect of Dovecot's design:
        /// with an explicit list, the *pre-login* greeting also shows that full list (plus STARTTLS
        /// and AUTH=); the server still implements the hidden extensions if a client uses them anyway.
        public var disabledCapabilities: Set<String>
        /// Load `imap_zlib` so COMPRESS=DEFLATE is offered.
        public var compress: Bool
        /// On-disk mailbox layout.
        public var mailLayout: MailLayout
        /// Store mailbox names on disk as UTF-8 (Dovecot's `UTF-8` mail_location flag) instead of
        /// modified UTF-7. IMAP clients see the same names either way.
        public var utf8Names: Bool
        /// Configure Sent/Drafts/Trash/Junk/Archive with special_use flags and `auto = subscribe`
        /// (so SPECIAL-USE is advertised and the folders appear on first login).
        public var specialUse: Bool
        /// `mailbox_list_index = yes`, which is what makes Dovecot offer NOTIFY.
        public var notify: Bool
        /// `disable_plaintext_auth = yes`: LOGIN/AUTHENTICATE refused until TLS (LOGINDISABLED).
        public var requireTLSForAuth: Bool
        /// Whether the plain port advertises STARTTLS.
        ///
        /// Dovecot decides TLS availability per *local IP*, not per listener, so with `false` the
        /// plain listener on 127.0.0.1 gets `ssl = no` and the implicit-TLS listener moves to
        /// 127.0.0.2 (see `DovecotServer.tlsHost`; the certificate covers that address too).
        public var offerSTARTTLS: Bool
        /// Also offer AUTH=XOAUTH2 and AUTH=OAUTHBEARER, validated locally by Dovecot's oauth2
        /// passdb against HS256 JWTs signed with a per-server key (no external token service);
        /// mint tokens with `DovecotServer.oauthToken(user:expiresIn:)`.
        public var oauth: Bool
        /// Raw Dovecot configuration appended at the end of the generated file, for one-off needs.
        public var extraConfiguration: String
        /// How long `start` waits for the greeting before failing.
        public var startTimeout: Double

        public init(
            users: [Account] = [.alice, .bob],
            disabledCapabilities: Set<String> = [],
            compress: Bool = true,
            mailLayout: MailLayout = .maildirPlusPlus,
            utf8Names: Bool = false,
            specialUse: Bool = true,
            notify: Bool = true,
            requireTLSForAuth: Bool = false,
            offerSTARTTLS: Bool = true,
            oauth: Bool = false,
            extraConfiguration: String = "",
            startTimeout: Double = 10
        ) {
            self.users = users
            self.disabledCapabilities = disabledCapabilities
            self.compress = compress
            self.mailLayout = mailLayout
            self.utf8Names = utf8Names
            self.specialUse = specialUse
            self.notify = notify
            self.requireTLSForAuth = requireTLSForAuth
            self.offerSTARTTLS = offerSTARTTLS
            self.oauth = oauth
            self.extraConfiguration = extraConfiguration
            self.startTimeout = startTimeout
        }
    }

    /// One passwd-file user of a running server.
    public struct TestUser: Sendable, Hashable {
        public var name: String
        public var password: String
        /// The user's home directory (owned by `TestMailAccount`).
        public var home: URL
        /// `home/Maildir`: the root of the user's Maildir (INBOX lives directly in it).
        public var maildirRoot: URL
    }

    /// Special-use mailboxes created when `Options.specialUse` is on, with their flags.
    public static let specialUseMailboxes: [(name: String, flag: String)] = [
        ("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"),
        ("Archive", "\\Archive"),
    ]

    /// Dovecot 2.3's compiled-in post-login list (`CAPABILITY_STRING` in src/imap/imap-common.h),
    /// verified against 2.3.19.1. Dovecot appends LITERAL+, NOTIFY (with mailbox_list_index),
    /// SPECIAL-USE (with special_use mailboxes) and COMPRESS=DEFLATE (imap_zlib) to it at runtime.
    public static let builtinPostLoginCapabilities: [String] = [
        "IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "SORT", "SORT=DISPLAY",
        "THREAD=REFERENCES", "THREAD=REFS", "THREAD=ORDEREDSUBJECT", "MULTIAPPEND", "URL-PARTIAL",
        "CATENATE", "UNSELECT", "CHILDREN", "NAMESPACE", "UIDPLUS", "LIST-EXTENDED", "I18NLEVEL=1",
        "CONDSTORE", "QRESYNC", "ESEARCH", "ESORT", "SEARCHRES", "WITHIN", "CONTEXT=SEARCH",
        "LIST-STATUS", "BINARY", "MOVE", "SNIPPET=FUZZY", "PREVIEW=FUZZY", "PREVIEW", "STATUS=SIZE",
        "SAVEDATE",
    ]

    /// Dovecot 2.3's pre-login list (`CAPABILITY_BANNER_STRING` + LITERAL+); STARTTLS,
    /// LOGINDISABLED and AUTH=… are appended per connection.
    public static let builtinPreLoginCapabilities: [String] = [
        "IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "LITERAL+",
    ]

    /// The post-login CAPABILITY list a server with `options` advertises, in Dovecot's order.
    public static func postLoginCapabilities(for options: Options) -> [String] {
        var list = builtinPostLoginCapabilities + ["LITERAL+"]
        if options.notify { list.append("NOTIFY") }
        if options.specialUse { list.append("SPECIAL-USE") }
        if options.compress { list.append("COMPRESS=DEFLATE") }
        let disabled = Set(options.disabledCapabilities.map { $0.uppercased() })
        return list.filter { !disabled.contains($0.uppercased()) }
    }
}
