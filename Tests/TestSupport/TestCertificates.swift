import Foundation

/// Self-signed TLS material for one test server, generated with the `openssl` CLI.
///
/// EC P-256 keys are used because they are generated in milliseconds (RSA would dominate the
/// fixture's start-up time when many servers start in parallel).
struct TestCertificates: Sendable {
    var caCertificatePath: String
    var serverCertificatePath: String
    var serverKeyPath: String
    /// A CA that did not sign the server certificate, for "wrong CA must be rejected" tests.
    var wrongCAPath: String
    /// Lower-case hex SHA-256 of the server certificate's DER encoding (what pinning compares).
    var serverCertificateSHA256: String

    static let openssl = "/usr/bin/openssl"

    /// Generates a CA, a server certificate signed by it (SAN: 127.0.0.1, 127.0.0.2, localhost)
    /// and an unrelated second CA into `directory`.
    static func generate(in directory: URL) throws -> TestCertificates {
        guard FileManager.default.isExecutableFile(atPath: openssl) else {
            throw FixtureError.missingProgram(path: openssl, hint: "run scripts/install-deps.sh (package `openssl`)")
        }
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        for (name, subject) in [("ca", "/CN=Ferrymail Test CA"), ("wrong-ca", "/CN=Ferrymail Unrelated CA")] {
            try Subprocess.check(openssl, ["req", "-x509"] + curve + [
                "-keyout", path("\(name).key"), "-out", path("\(name).pem"), "-days", "3650", "-sha256",
                "-subj", subject,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        }
        try Subprocess.check(openssl, ["req", "-new"] + curve + [
            "-keyout", path("server.key"), "-out", path("server.csr"), "-subj", "/CN=127.0.0.1",
        ])
        let extensions = """
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature,keyEncipherment
            extendedKeyUsage = serverAuth
            subjectAltName = IP:127.0.0.1,IP:127.0.0.2,DNS:localhost

            """
        try Data(extensions.utf8).write(to: URL(fileURLWithPath: path("server.ext")))
        try Subprocess.check(openssl, [
            "x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
            "-CAcreateserial", "-CAserial", path("ca.srl"), "-days", "3650", "-sha256",
            "-extfile", path("server.ext"), "-out", path("server.pem"),
        ])
        let fingerprint = try Subprocess.check(openssl, [
            "x509", "-in", path("server.pem"), "-noout", "-fingerprint", "-sha256",
        ]).stdoutText
        // "sha256 Fingerprint=AB:CD:..." (the prefix's case differs between OpenSSL versions)
        guard let equals = fingerprint.firstIndex(of: "=") else {
            throw FixtureError.unexpectedOutput(command: "openssl x509 -fingerprint", output: fingerprint)
        }
        let hex = fingerprint[fingerprint.index(after: equals)...]
            .trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: ":", with: "").lowercased()
        guard hex.count == 64 else {
            throw FixtureError.unexpectedOutput(command: "openssl x509 -fingerprint", output: fingerprint)
        }
        return TestCertificates(
            caCertificatePath: path("ca.pem"), serverCertificatePath: path("server.pem"),
            serverKeyPath: path("server.key"), wrongCAPath: path("wrong-ca.pem"), serverCertificateSHA256: hex)
    }
}
