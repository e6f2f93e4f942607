import Foundation
import Testing

@testable import Configuration

@Suite("Validation errors")
struct ValidationTests {
    @Test("unknown key with a typo suggestion, compiler-style")
    func unknownKey() throws {
        let issue = try #require(singleIssue(
            """
            [[account]]
            name = "work"
            host = "imap.example.org"
            user = "me@example.org"
            pasword_command = "pass show work"
            password_env = "PW"
            maildir = "~/Mail/work"
            """))
        #expect(issue.line == 5)
        #expect(issue.column == 1)
        #expect(issue.account == "work")
        #expect(issue.key == "pasword_command")
        #expect(issue.description == "\(testSource):5:1: error: account \"work\": unknown key 'pasword_command'"
            + " (did you mean 'password_command'?)")
    }

    @Test("keys in the wrong section say where they belong")
    func misplacedKeys() {
        let found = issues(
            """
            log_level = "info"
            [general]
            host = "x"
            \(minimalAccount)
            connections_per_account = 2
            """)
        #expect(found.map(\.line) == [1, 3, 10])
        #expect(found[0].hint?.contains("[general]") == true)
        #expect(found[1].message == "unknown key 'host'")
        #expect(found[1].hint?.contains("[[account]]") == true)
        #expect(found[2].account == "work")
        #expect(found[2].hint?.contains("move it to [general]") == true)
    }

    @Test("an inline password with another source is one error, without echoing the password")
    func inlinePasswordConflict() throws {
        let issue = try #require(singleIssue(minimalAccount + "\npassword = \"hunter2\""))
        #expect(issue.line == 7)
        #expect(issue.message == "more than one password source: 'password_command', 'password'")
        #expect(!issue.description.contains("hunter2"))
    }

    @Test("tls and security, or state in two places, are refused as contradictions")
    func aliasConflicts() {
        let found = issues("state = \"/tmp/a.sqlite\"\n[general]\nstate = \"/tmp/b.sqlite\"\n" + minimalAccount
                           + "\ntls = \"none\"\nsecurity = \"tls\"")
        #expect(found.map(\.message).contains("'state' is set both at the top and in [general]"))
        #expect(found.map(\.message).contains("'tls' and 'security' say the same thing"))
    }

    @Test("wrong types name the expected type and how to write it")
    func wrongTypes() {
        let found = issues(minimalAccount + "\nport = \"993\"\ncompress = \"yes\"\nexclude = \"Spam\"")
        #expect(found.map(\.line) == [7, 8, 9])
        #expect(found[0].message == "'port' must be an integer, not a string")
        #expect(found[0].hint == "write port = 993 without quotes")
        #expect(found[1].message == "'compress' must be true or false, not a string")
        #expect(found[2].hint == "write exclude = [\"Spam\"]")
    }

    @Test("missing required keys point at the account header")
    func missingKeys() {
        let found = issues(
            """
            [general]
            log_level = "info"

            [[account]]
            name = "work"
            password_command = "pass show work"
            """)
        #expect(found.count == 3)
        #expect(found.allSatisfy { $0.line == 4 && $0.account == "work" })
        #expect(Set(found.map(\.message)) == [
            "missing required key 'host'", "missing required key 'user'", "missing required key 'maildir'",
        ])
    }

    @Test("an account without a name is labelled by position")
    func unnamedAccount() throws {
        let text = minimalAccount + "\n\n[[account]]\nhost = \"h\"\nuser = \"u\"\npassword_env = \"X\"\nmaildir = \"/m\""
        let issue = try #require(singleIssue(text))
        #expect(issue.line == 8)
        #expect(issue.account == "#2")
        #expect(issue.description.contains("error: account #2: missing required key 'name'"))
    }

    @Test("bad keywords list the allowed values and suggest the closest")
    func badKeyword() throws {
        let issue = try #require(singleIssue(minimalAccount + "\nsecurity = \"tsl\""))
        #expect(issue.line == 7)
        #expect(issue.key == "security")
        #expect(issue.message == "invalid security 'tsl'; expected one of: tls, starttls, plain")
        #expect(issue.hint == "did you mean 'tls'?")

        let general = try #require(singleIssue("[general]\ndeletions = \"keep_local\"\n" + minimalAccount))
        #expect(general.line == 2)
        #expect(general.account == nil)
        #expect(general.message.contains("propagate, keep-local, trash"))
        #expect(general.hint == "did you mean 'keep-local'?")
    }

    @Test("duplicate account names, also differing only in case")
    func duplicateNames() throws {
        let text = minimalAccount + "\n\n" + minimalAccount
            .replacingOccurrences(of: "\"work\"", with: "\"Work\"")
            .replacingOccurrences(of: "~/Mail/work", with: "~/Mail/other")
        let issue = try #require(singleIssue(text))
        #expect(issue.line == 9)
        #expect(issue.account == "Work")
        #expect(issue.message.contains("duplicate account name 'Work'"))
        #expect(issue.message.contains("line 2"))
    }

    @Test("two accounts sharing a maildir, or one inside another")
    func overlappingMaildirs() throws {
        func second(_ maildir: String) -> String {
            minimalAccount + "\n\n" + minimalAccount
                .replacingOccurrences(of: "\"work\"", with: "\"home\"")
                .replacingOccurrences(of: "~/Mail/work", with: maildir)
        }
        let same = try #require(singleIssue(second("/home/tester/Mail/./work/")))
        #expect(same.line == 13)
        #expect(same.account == "home")
        #expect(same.message == "maildir '/home/tester/Mail/work' is also the maildir of account \"work\"")

        let inside = try #require(singleIssue(second("~/Mail/work/home")))
        #expect(inside.message.contains("lies inside the maildir of account \"work\""))

        let outside = try #require(singleIssue(second("~/Mail")))
        #expect(outside.message.contains("contains the maildir of account \"work\""))

        // A shared prefix is not nesting.
        #expect(throws: Never.self) { try parseConfig(second("~/Mail/workshop")) }
    }

    @Test("maildirs reached through a symlink are recognised as the same")
    func symlinkedMaildirs() throws {
        let directory = try makeTemporaryDirectory()
        defer { cleanUp(directory) }
        try FileManager.default.createDirectory(atPath: directory + "/real", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: directory + "/link", withDestinationPath: directory + "/real")
        let text = minimalAccount.replacingOccurrences(of: "~/Mail/work", with: directory + "/real/a") + "\n\n"
            + minimalAccount.replacingOccurrences(of: "\"work\"", with: "\"b\"")
            .replacingOccurrences(of: "~/Mail/work", with: directory + "/link/a")
        let issue = try #require(singleIssue(text))
        #expect(issue.account == "b")
        #expect(issue.message.contains("is also the maildir of account \"work\""))
    }

    @Test(arguments: [0, 65536, -1])
    func portOutOfRange(port: Int) throws {
        let issue = try #require(singleIssue(minimalAccount + "\nport = \(port)"))
        #expect(issue.line == 7)
        #expect(issue.key == "port")
        #expect(issue.message == "port \(port) is out of range (1-65535)")
    }

    @Test("more than one password source is reported at the second one")
    func twoPasswordSources() throws {
        let issue = try #require(singleIssue(minimalAccount + "\npassword_file = \"~/.pw\""))
        #expect(issue.line == 7)
        #expect(issue.key == "password_file")
        #expect(issue.message == "more than one password source: 'password_command', 'password_file'")
    }

    @Test("no password source at all")
    func noPasswordSource() throws {
        let text = minimalAccount.replacingOccurrences(of: "password_command = \"pass show work\"\n", with: "")
        let issue = try #require(singleIssue(text))
        #expect(issue.line == 1)
        #expect(issue.message == "no password or token source")
    }

    @Test("auth and the password source must agree")
    func authMismatch() {
        let tokenWithPassword = issues(minimalAccount + "\nauth = \"xoauth2\"")
        #expect(tokenWithPassword.map(\.line) == [5])
        #expect(tokenWithPassword.first?.message.contains("OAuth2 token, not a password") == true)

        let passwordWithToken = issues(
            minimalAccount.replacingOccurrences(of: "password_command", with: "oauth2_token_command")
                + "\nauth = \"password\"")
        #expect(passwordWithToken.map(\.line) == [7])
        #expect(passwordWithToken.first?.message.contains("cannot use oauth2_token_command") == true)
    }

    @Test("plain security with a password needs allow_insecure_auth, and says why")
    func plainSecurity() throws {
        let issue = try #require(singleIssue(minimalAccount + "\nsecurity = \"plain\""))
        #expect(issue.line == 7)
        #expect(issue.key == "security")
        #expect(issue.message.contains("would send the password unencrypted"))
        #expect(issue.hint?.contains("allow_insecure_auth = true") == true)
        #expect(issue.hint?.contains("starttls") == true)
    }

    @Test("allow_insecure_auth without plain security is a warning, not an error")
    func insecureAuthWarning() throws {
        let configuration = try parseConfig(minimalAccount + "\nallow_insecure_auth = true")
        #expect(configuration.warnings == [
            "\(testSource):7:1: warning: account \"work\": allow_insecure_auth has no effect with security = \"tls\""
                + " (remove it; it only permits logging in over security = \"plain\")",
        ])
    }

    @Test("relative maildirs resolve against the config directory; ~user and home itself are refused")
    func maildirPaths() throws {
        let relative = try parseConfig(minimalAccount.replacingOccurrences(of: "~/Mail/work", with: "../../Mail/w"))
        #expect(relative.accounts[0].maildir == "/home/tester/Mail/w")

        let otherUser = try #require(singleIssue(minimalAccount.replacingOccurrences(of: "~/Mail/work", with: "~bob/Mail")))
        #expect(otherUser.line == 6)
        #expect(otherUser.message.contains("'~user' paths are not supported"))

        let home = try #require(singleIssue(minimalAccount.replacingOccurrences(of: "~/Mail/work", with: "~")))
        #expect(home.message.contains("your home directory"))
    }

    @Test(arguments: [
        "sha1:AB:CD", "AB:CD", String(repeating: "g", count: 64), String(repeating: "a", count: 63),
        "sha256:" + String(repeating: "ABC:", count: 16),
    ])
    func invalidFingerprint(fingerprint: String) throws {
        let issue = try #require(singleIssue(minimalAccount + "\nfingerprint = \"\(fingerprint)\""))
        #expect(issue.line == 7)
        #expect(issue.message == "invalid fingerprint '\(fingerprint)'")
        #expect(issue.hint?.contains("openssl") == true)
    }

    @Test("fingerprints with and without colons and prefix are the same pin")
    func validFingerprints() throws {
        let hex = (0..<32).map { String(format: "%02X", $0 * 7 % 256) }
        let forms = [hex.joined(), hex.joined(separator: ":"), "sha256:" + hex.joined(separator: ":"),
            "SHA256:" + hex.joined().lowercased()]
        let pins = forms.map { CertificateFingerprint($0) }
        #expect(pins.allSatisfy { $0 != nil && $0 == pins[0] })
        #expect(pins[0]?.description == "sha256:" + hex.joined(separator: ":"))
        #expect(pins[0]?.hex == hex.joined().lowercased())
    }

    @Test("invalid account names")
    func invalidNames() {
        for name in ["", "wörk", "a b", "..", String(repeating: "x", count: 65), "a/b"] {
            let found = issues(minimalAccount.replacingOccurrences(of: "\"work\"", with: "\"\(name)\""))
            #expect(found.map(\.line) == [2], "name \(name)")
        }
    }

    @Test("a single [account] table instead of [[account]]")
    func singleBrackets() throws {
        let issue = try #require(singleIssue("[account]\nname = \"x\""))
        #expect(issue.line == 1)
        #expect(issue.hint?.contains("[[account]]") == true)
    }

    @Test("no accounts")
    func noAccounts() throws {
        let issue = try #require(singleIssue("[general]\nlog_level = \"info\""))
        #expect(issue.line == nil)
        #expect(issue.message == "no accounts are configured")
    }

    @Test("general ranges and durations")
    func generalRanges() {
        let found = issues(
            """
            [general]
            connections_per_account = 17
            mass_delete_threshold = 1.5
            poll_interval = 300
            backoff_max = "1.5h"
            full_reconcile_interval = "0s"
            \(minimalAccount)
            """)
        #expect(found.map(\.line) == [2, 3, 4, 5, 6])
        #expect(found[0].message.contains("between 1 and 16"))
        #expect(found[1].message.contains("between 0 and 1"))
        #expect(found[2].hint == "write poll_interval = \"300s\" for 300 seconds")
        #expect(found[3].message == "'backoff_max' is not a duration: '1.5h'")
        #expect(found[4].message == "'full_reconcile_interval' must be longer than zero")
    }

    @Test("folder_map and special_use problems")
    func folderTables() {
        let found = issues(minimalAccount + """

            [account.folder_map]
            "Sent Items" = "Sent"
            "Sent Messages" = "Sent"
            [account.special_use]
            snet = "Sent"
            trash = ""
            """)
        #expect(found.map(\.line) == [9, 11, 12])
        #expect(found[0].key == "folder_map.Sent Messages")
        #expect(found[0].message.contains("maps both 'Sent Items' and 'Sent Messages'"))
        #expect(found[1].hint == "did you mean 'sent'?")
        #expect(found[2].message == "'special_use.trash' is empty")
    }

    @Test("inline tables and dotted keys are located too")
    func inlineTables() {
        let found = issues(minimalAccount + """

            folder_map = { "A" = "X", "B" = 3 }
            special_use.snet = "Sent"
            """)
        #expect(found.map(\.line) == [7, 8])
        #expect(found.first?.key == "folder_map.B")
        #expect(found.first?.column == 27)
        #expect(found.first?.message == "'folder_map.B' must be a string, not an integer")
        #expect(found.last?.key == "special_use.snet")
    }

    @Test("ca_file must exist")
    func caFile() throws {
        let issue = try #require(singleIssue(minimalAccount + "\nca_file = \"/nonexistent/ca.pem\""))
        #expect(issue.line == 7)
        #expect(issue.message.contains("'/nonexistent/ca.pem' does not exist"))
    }

    @Test("host must be a host name")
    func hostShape() {
        let url = issues(minimalAccount.replacingOccurrences(of: "\"imap.example.org\"", with: "\"imaps://imap.example.org\""))
        #expect(url.first?.hint == "drop the scheme: host = \"imap.example.org\"")
        let withPort = issues(minimalAccount.replacingOccurrences(of: "\"imap.example.org\"", with: "\"imap.example.org:993\""))
        #expect(withPort.first?.message == "'host' must not include the port")
    }

    @Test("TOML syntax errors carry toml++'s line and column")
    func syntaxError() throws {
        let issue = try #require(singleIssue("[general]\nlog_level = \"info\"\nport = = 3\n"))
        #expect(issue.line == 3)
        #expect(issue.column != nil)
        #expect(issue.message.hasPrefix("TOML syntax error: "))
    }

    @Test("all errors are reported together, in file order")
    func multipleErrors() {
        let found = issues(
            """
            [general]
            log_level = "loud"

            [[account]]
            name = "work"
            host = "imap.example.org"
            user = "me@example.org"
            password_command = "pass show work"
            password_env = "PW"
            security = "plain"
            port = 70000
            maildir = "~/Mail/work"
            layout = "mbox"

            [[account]]
            name = "work"
            host = "other.example.org"
            user = "me"
            password_file = "~/.pw"
            maildir = "~/Mail/work/sub"
            """)
        #expect(found.map(\.line) == [2, 9, 10, 11, 13, 16, 20])
        let error = ConfigurationError(issues: found)
        let lines = error.description.split(separator: "\n")
        #expect(lines.count == 7)
        #expect(lines.allSatisfy { $0.hasPrefix(testSource + ":") && $0.contains(": error: ") })
    }
}
