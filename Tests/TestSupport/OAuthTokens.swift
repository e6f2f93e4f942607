import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension DovecotServer {
    /// An HS256 JWT bearer token for `user` that this server's oauth2 passdb accepts
    /// (requires `Options.oauth`). A negative `expiresIn` yields an already expired token, for
    /// testing the rejection path.
    ///
    /// Use it as `auth=Bearer <token>` in XOAUTH2 or OAUTHBEARER. The signature is computed with
    /// the `openssl` CLI because TestSupport has no crypto dependency.
    public func oauthToken(user: String, expiresIn: TimeInterval = 3_600) throws -> String {
        guard options.oauth else {
            throw FixtureError.unsupportedFlag("oauth", reason: "start the server with Options(oauth: true) to use bearer tokens")
        }
        _ = try testUser(named: user)
        let now = Int(Date().timeIntervalSince1970)
        let header = Self.base64URL(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let claims = #"{"sub":"\#(user)","iat":\#(now),"nbf":\#(now - 60),"exp":\#(now + Int(expiresIn))}"#
        let signingInput = header + "." + Self.base64URL(Array(claims.utf8))
        let hexKey = oauthKey.map { String(format: "%02x", $0) }.joined()
        let signature = try Subprocess.check(TestCertificates.openssl, [
            "dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:\(hexKey)", "-binary",
        ], stdin: Array(signingInput.utf8)).stdout
        guard signature.count == 32 else {
            throw FixtureError.unexpectedOutput(command: "openssl dgst -mac HMAC", output: "\(signature.count) bytes")
        }
        return signingInput + "." + Self.base64URL(signature)
    }

    /// Writes the oauth2 passdb settings and the HS256 validation key (Dovecot expects the key
    /// base64-encoded in `<prefix>/<azp>/<alg>/<kid>`).
    static func writeOAuthFiles(directory: URL, key: [UInt8]) throws {
        let keyDirectory = directory.appendingPathComponent("oauth-keys/default/HS256", isDirectory: true)
        try FileManager.default.createDirectory(at: keyDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        for path in ["oauth-keys", "oauth-keys/default"] {
            chmod(directory.appendingPathComponent(path).path, 0o755)
        }
        let keyFile = keyDirectory.appendingPathComponent("default")
        try Data(Data(key).base64EncodedString().utf8).write(to: keyFile)
        // Read by Dovecot's unprivileged auth process; a throwaway test secret.
        chmod(keyFile.path, 0o644)
        let settings = """
            introspection_mode = local
            local_validation_key_dict = fs:posix:prefix=\(directory.path)/oauth-keys/
            username_attribute = sub

            """
        try Data(settings.utf8).write(to: directory.appendingPathComponent("oauth2.conf.ext"))
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
