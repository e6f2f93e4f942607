import Configuration
import IMAPClient
import Logging

extension IMAPConfiguration {
    /// The client settings for one configured account. The secret is passed in
    /// already resolved so that running a password command stays an explicit,
    /// visible step of the caller (and happens once per run, not per connection).
    public init(account: AccountConfiguration, secret: String, wireTrace: Bool = false, logger: Logger) {
        let security: IMAPConfiguration.Security
        switch account.security {
        case .implicitTLS: security = .implicitTLS
        case .startTLS: security = .startTLS
        case .plaintext: security = .plaintext
        }
        let credentials: IMAPConfiguration.Credentials
        switch account.authentication {
        case .password: credentials = .password(user: account.user, password: secret)
        case .xoauth2: credentials = .xoauth2(user: account.user, token: secret)
        case .oauthbearer: credentials = .oauthBearer(user: account.user, token: secret)
        }
        var logger = logger
        logger[metadataKey: "ferrymail.account"] = .string(account.name)
        self.init(
            host: account.host,
            port: account.port,
            security: security,
            tls: TLS(caFile: account.caFile, pinnedSHA256: account.fingerprint?.hex),
            credentials: credentials,
            allowInsecureAuth: account.allowInsecureAuth,
            compress: account.compress,
            accountName: account.name,
            wireTrace: wireTrace,
            logger: logger
        )
    }
}
