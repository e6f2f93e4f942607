import IMAPCodec

/// The security decisions of connection setup, as pure functions of what the
/// server advertised and how the connection is protected, so the downgrade and
/// credential rules are tested without a network.
enum SessionPolicy {
    enum TLSStep: Equatable {
        /// Issue STARTTLS now.
        case startTLS
        /// Continue (TLS already active, or plaintext chosen explicitly).
        case proceed
    }

    /// Decides what to do after the greeting (and capability read) on a connection
    /// that is not yet encrypted.
    static func tlsStep(security: IMAPConfiguration.Security, tlsActive: Bool,
                        capabilities: Set<Capability>, host: String) throws(IMAPClientError) -> TLSStep {
        switch security {
        case .implicitTLS, .plaintext: return .proceed
        case .startTLS:
            if tlsActive { return .proceed }
            guard capabilities.contains(.startTLS) else { throw .startTLSNotOffered(host: host) }
            return .startTLS
        }
    }

    enum AuthPlan: Equatable {
        /// `AUTHENTICATE mech` with `initialResponse` (base64) inline when SASL-IR is
        /// offered, else sent after the server's first `+`.
        case authenticate(mechanism: String, initialResponse: String, inline: Bool)
        case login(user: String, password: String)
    }

    /// Picks the SASL mechanism for the credentials and refuses to expose them on an
    /// unencrypted connection unless the caller explicitly allowed it.
    static func authPlan(credentials: IMAPConfiguration.Credentials, capabilities: Set<Capability>,
                         encrypted: Bool, allowInsecureAuth: Bool, host: String) throws(IMAPClientError) -> AuthPlan {
        guard encrypted || allowInsecureAuth else { throw .insecureAuthRefused(host: host) }
        let inline = capabilities.contains(.saslIR)
        switch credentials {
        case .password(let user, let password):
            if capabilities.contains(.auth("PLAIN")) {
                return .authenticate(mechanism: "PLAIN", initialResponse: base64(Array("\0\(user)\0\(password)".utf8)), inline: inline)
            }
            if capabilities.contains(.loginDisabled) { throw .authenticationMechanismUnavailable(host: host, mechanism: "PLAIN") }
            return .login(user: user, password: password)
        case .xoauth2(let user, let token):
            guard capabilities.contains(.auth("XOAUTH2")) else {
                throw .authenticationMechanismUnavailable(host: host, mechanism: "XOAUTH2")
            }
            return .authenticate(mechanism: "XOAUTH2",
                                 initialResponse: base64(Array("user=\(user)\u{1}auth=Bearer \(token)\u{1}\u{1}".utf8)), inline: inline)
        case .oauthBearer(let user, let token):
            guard capabilities.contains(.auth("OAUTHBEARER")) else {
                throw .authenticationMechanismUnavailable(host: host, mechanism: "OAUTHBEARER")
            }
            // RFC 7628 §3.1: gs2 header with the authzid, then kvpairs.
            var escaped = ""
            for c in user {
                switch c {
                case "=": escaped += "=3D"
                case ",": escaped += "=2C"
                default: escaped.append(c)
                }
            }
            return .authenticate(mechanism: "OAUTHBEARER",
                                 initialResponse: base64(Array("n,a=\(escaped),\u{1}auth=Bearer \(token)\u{1}\u{1}".utf8)), inline: inline)
        }
    }

    /// Extensions to ENABLE after authentication, in a fixed order (RFC 7162 says
    /// QRESYNC implies CONDSTORE, but naming both is harmless and clearer in traces).
    static func extensionsToEnable(_ capabilities: Set<Capability>) -> [Capability] {
        guard capabilities.contains(.enable) || capabilities.contains(.imap4rev2) else { return [] }
        return [.condStore, .qresync, .utf8Accept].filter { capabilities.contains($0) }
    }

    static func shouldCompress(configured: Bool, capabilities: Set<Capability>) -> Bool {
        configured && capabilities.contains(.compressDeflate)
    }

    /// RFC 4648 base64 without Foundation, so the module stays Foundation-free.
    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
