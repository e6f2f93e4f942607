import Logging

/// Everything needed to open and authenticate one IMAP connection.
public struct IMAPConfiguration: Sendable {
    /// How the byte stream is protected. There is no default: plaintext must be
    /// chosen explicitly so a missing setting never means "no encryption".
    public enum Security: Sendable, Hashable {
        /// TLS from the first byte (port 993).
        case implicitTLS
        /// Plain connect, then STARTTLS before anything else; refuses to continue
        /// if the server does not offer it (RFC 8314 downgrade protection).
        case startTLS
        /// No encryption at all. Credentials are refused unless `allowInsecureAuth`.
        case plaintext
    }

    public struct TLS: Sendable, Hashable {
        /// Extra trust anchors (PEM file) in addition to the system trust store.
        public var caFile: String?
        /// Hex SHA-256 of the leaf certificate's DER encoding (colons/spaces ignored).
        /// When set, the pin alone decides trust: chain and host name are not checked,
        /// which is what a self-signed server needs.
        public var pinnedSHA256: String?
        /// Name sent in SNI and checked against the certificate; defaults to `host`.
        public var serverName: String?
        public init(caFile: String? = nil, pinnedSHA256: String? = nil, serverName: String? = nil) {
            self.caFile = caFile
            self.pinnedSHA256 = pinnedSHA256
            self.serverName = serverName
        }

        /// The pin reduced to lower-case hex digits, for comparison and messages.
        var normalizedPin: String? {
            pinnedSHA256.map { String($0.lowercased().filter { $0.isHexDigit }) }
        }
    }

    public enum Credentials: Sendable, Hashable {
        /// AUTHENTICATE PLAIN (with SASL-IR when offered), LOGIN when PLAIN is not offered.
        case password(user: String, password: String)
        /// Google/Microsoft `AUTHENTICATE XOAUTH2`; the caller supplies a fresh access token.
        case xoauth2(user: String, token: String)
        /// RFC 7628 `AUTHENTICATE OAUTHBEARER`.
        case oauthBearer(user: String, token: String)

        public var user: String {
            switch self {
            case .password(let u, _), .xoauth2(let u, _), .oauthBearer(let u, _): return u
            }
        }
    }

    public struct Timeouts: Sendable, Hashable {
        public var connect: Duration
        /// Longest silence from the server while a command is outstanding. It is an
        /// inactivity limit, not a total: a 2 GB FETCH that keeps streaming never trips it,
        /// and time spent in a slow fetch sink does not count.
        public var command: Duration
        /// IDLE is ended and re-issued after this long; RFC 2177 servers may drop an
        /// IDLE after 30 minutes, so the default stays below 29.
        public var idleReissue: Duration
        public init(connect: Duration = .seconds(20), command: Duration = .seconds(60), idleReissue: Duration = .seconds(25 * 60)) {
            self.connect = connect
            self.command = command
            self.idleReissue = idleReissue
        }
    }

    public var host: String
    public var port: Int
    public var security: Security
    public var tls: TLS
    public var credentials: Credentials?
    public var allowInsecureAuth: Bool
    public var timeouts: Timeouts
    /// Negotiate COMPRESS=DEFLATE when the server offers it.
    public var compress: Bool
    /// Sent with RFC 2971 ID when offered; nil sends nothing.
    public var clientID: [(String, String)]?
    /// Added to log metadata as `ferrymail.account`.
    public var accountName: String?
    /// Log every command (redacted) and response line at `.trace`.
    public var wireTrace: Bool
    public var logger: Logger

    public init(
        host: String,
        port: Int,
        security: Security,
        tls: TLS = TLS(),
        credentials: Credentials?,
        allowInsecureAuth: Bool = false,
        timeouts: Timeouts = Timeouts(),
        compress: Bool = true,
        clientID: [(String, String)]? = [("name", "ferrymail")],
        accountName: String? = nil,
        wireTrace: Bool = false,
        logger: Logger = Logger(label: "ferrymail.imap")
    ) {
        self.host = host
        self.port = port
        self.security = security
        self.tls = tls
        self.credentials = credentials
        self.allowInsecureAuth = allowInsecureAuth
        self.timeouts = timeouts
        self.compress = compress
        self.clientID = clientID
        self.accountName = accountName
        self.wireTrace = wireTrace
        self.logger = logger
    }
}
