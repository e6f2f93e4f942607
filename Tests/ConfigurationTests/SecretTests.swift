import Foundation
import Testing

@testable import Configuration

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@Suite("Secrets")
struct SecretTests {
    let secret = "hunter2-Zq9"

    func source(_ kind: SecretSource.Kind, key: String = "password_command") -> SecretSource {
        SecretSource(kind: kind, account: "work", key: key)
    }

    @Test("a command's first stdout line is the secret")
    func commandSuccess() throws {
        let value = try source(.command("printf '\(secret)\\nsecond line\\n'")).resolve()
        #expect(value == secret)
        #expect(try source(.command("printf '\(secret)\\r\\n'")).resolve() == secret)
    }

    @Test("the command's stdin is not the terminal: a reader gets EOF instead of hanging")
    func commandStdin() throws {
        #expect(try source(.command("read line || echo eof")).resolve() == "eof")
    }

    @Test("a failing command reports status and stderr, never stdout")
    func commandFailure() throws {
        let error = try #require(throws: SecretResolutionError.self) {
            try source(.command("echo \(secret); echo 'gpg: decryption failed: No secret key' >&2; echo more >&2; exit 3"))
                .resolve()
        }
        #expect(error.reason == .commandFailed(status: 3, stderr: "gpg: decryption failed: No secret key"))
        #expect(error.description
            == "account \"work\": password_command exited with status 3: gpg: decryption failed: No secret key")
        #expect(!error.description.contains(secret))
        #expect(!error.description.contains("echo"))
    }

    @Test("a command that prints nothing fails")
    func commandEmpty() throws {
        let error = try #require(throws: SecretResolutionError.self) { try source(.command("true")).resolve() }
        #expect(error.reason == .commandProducedNoOutput)
    }

    @Test("a command with a lot of stderr does not deadlock")
    func commandNoisyStderr() throws {
        let value = try source(.command("head -c 200000 /dev/zero | tr '\\0' x >&2; echo \(secret)")).resolve()
        #expect(value == secret)
    }

    @Test("a password file is read with its trailing newline trimmed")
    func fileSuccess() throws {
        let directory = try makeTemporaryDirectory()
        defer { cleanUp(directory) }
        let path = directory + "/pw"
        try (secret + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        #expect(try source(.file(path: path), key: "password_file").resolve() == secret)
    }

    @Test("a group- or world-readable password file is refused with a chmod hint")
    func filePermissions() throws {
        let directory = try makeTemporaryDirectory()
        defer { cleanUp(directory) }
        let path = directory + "/pw"
        try secret.write(toFile: path, atomically: true, encoding: .utf8)
        for mode: mode_t in [0o644, 0o640, 0o604] {
            chmod(path, mode)
            let error = try #require(throws: SecretResolutionError.self) {
                try source(.file(path: path), key: "password_file").resolve()
            }
            #expect(error.reason == .filePermissionsTooOpen(path: path, mode: UInt16(mode)))
            #expect(error.description.contains("chmod 600"))
            #expect(!error.description.contains(secret))
        }
    }

    @Test("missing and empty password files")
    func fileMissingOrEmpty() throws {
        let directory = try makeTemporaryDirectory()
        defer { cleanUp(directory) }
        let missing = try #require(throws: SecretResolutionError.self) {
            try source(.file(path: directory + "/none"), key: "password_file").resolve()
        }
        #expect(missing.reason == .fileMissing(path: directory + "/none"))

        let path = directory + "/empty"
        try "\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o400)
        let empty = try #require(throws: SecretResolutionError.self) {
            try source(.file(path: path), key: "password_file").resolve()
        }
        #expect(empty.reason == .fileEmpty(path: path))
    }

    @Test("environment variables must exist and be non-empty")
    func environment() throws {
        let name = "FERRYMAIL_TEST_SECRET_\(UInt32.random(in: 0...UInt32.max))"
        let missing = try #require(throws: SecretResolutionError.self) {
            try source(.environment(variable: name), key: "password_env").resolve()
        }
        #expect(missing.reason == .environmentVariableMissing(name))
        #expect(missing.description == "account \"work\": password_env: environment variable \(name) is not set")

        setenv(name, "", 1)
        defer { unsetenv(name) }
        let empty = try #require(throws: SecretResolutionError.self) {
            try source(.environment(variable: name), key: "password_env").resolve()
        }
        #expect(empty.reason == .environmentVariableEmpty(name))

        setenv(name, secret, 1)
        #expect(try source(.environment(variable: name), key: "password_env").resolve() == secret)
    }

    @Test("parsing never resolves: a command with side effects does not run")
    func resolutionIsLazy() throws {
        let directory = try makeTemporaryDirectory()
        defer { cleanUp(directory) }
        let marker = directory + "/ran"
        let configuration = try parseConfig(
            minimalAccount.replacingOccurrences(of: "pass show work", with: "touch \(marker); echo pw"))
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(try configuration.accounts[0].secret.resolve() == "pw")
        #expect(FileManager.default.fileExists(atPath: marker))
    }

    @Test("the secret never shows up in descriptions, dumps or errors")
    func redaction() throws {
        let text = minimalAccount.replacingOccurrences(of: "pass show work", with: "printf \(secret)")
            + "\n\n[[account]]\nname = \"b\"\nhost = \"h\"\nuser = \"u\"\npassword_env = \"B_PW\"\nmaildir = \"/m/b\""
        let configuration = try parseConfig(text)
        #expect(try configuration.accounts[0].secret.resolve() == secret)

        var dumped = ""
        dump(configuration, to: &dumped)
        for rendering in [
            String(describing: configuration), String(reflecting: configuration), dumped,
            String(describing: configuration.accounts[0]), String(reflecting: configuration.accounts[0]),
            String(describing: configuration.accounts[0].secret), "\(configuration.accounts)",
        ] {
            #expect(!rendering.contains(secret), "leaked in: \(rendering)")
        }
        #expect(String(describing: configuration.accounts[0]).contains("password_command (command redacted)"))
        #expect(String(describing: configuration.accounts[1]).contains("password_env $B_PW"))

        // Errors about a secret-bearing key do not echo its value either.
        let failing = try #require(throws: ConfigurationError.self) {
            try parseConfig(text + "\npassword_command = \"printf \(secret)\"\npassword = \"\(secret)\"")
        }
        #expect(failing.issues.map(\.message) == ["more than one password source: 'password_env', 'password_command', 'password'"])
        #expect(!String(describing: failing).contains(secret))
        #expect(!failing.localizedDescription.contains(secret))
    }
}
