import Foundation
import Testing

@testable import Configuration

@Suite("Parsing valid configurations")
struct ParsingTests {
    @Test("issue 4's minimal form works exactly as written")
    func issueMinimalForm() throws {
        let directory = try makeTemporaryDirectory()
        defer { cleanUp(directory) }
        let certificate = directory + "/cert.pem"
        FileManager.default.createFile(atPath: certificate, contents: Data("-----BEGIN CERTIFICATE-----\n".utf8))
        let configuration = try parseConfig("""
            state = "/var/tmp/ferry/state.sqlite"    # optional; default under $XDG_STATE_HOME

            [[account]]
            name = "work"
            host = "127.0.0.1"
            port = 10993
            tls = "implicit"                 # implicit | starttls | none
            ca_file = "\(certificate)"    # optional extra trust anchor
            user = "alice"
            password = "secret-alice"        # or password_command / password_file / password_env
            maildir = "/var/tmp/ferry/Mail/work"
            layout = "maildir++"             # maildir++ | fs

            [[account]]
            name = "lab"
            host = "127.0.0.1"
            port = 10143
            tls = "none"
            allow_insecure = true
            user = "bob"
            password_env = "LAB_PASSWORD"
            maildir = "/var/tmp/ferry/Mail/lab"
            """)
        #expect(configuration.general.statePath == "/var/tmp/ferry/state.sqlite")
        let (work, lab) = (configuration.accounts[0], configuration.accounts[1])
        #expect(work.security == .implicitTLS)
        #expect(work.port == 10993)
        #expect(try work.secret.resolve() == "secret-alice")
        #expect(!String(describing: work).contains("secret-alice"))
        #expect(work.layout == .maildirPlusPlus)
        #expect(lab.security == .plaintext)
        #expect(lab.allowInsecureAuth)
        #expect(lab.secret.kind == .environment(variable: "LAB_PASSWORD"))
    }

    @Test("a password in a file other users can read gets a warning")
    func inlinePasswordInAReadableFile() throws {
        let directory = try makeTemporaryDirectory()
        defer { cleanUp(directory) }
        let file = directory + "/config.toml"
        let text = minimalAccount.replacingOccurrences(of: "password_command = \"pass show work\"", with: "password = \"hunter2\"")
        FileManager.default.createFile(atPath: file, contents: Data(text.utf8), attributes: [.posixPermissions: 0o644])
        let open = try FerrymailConfiguration.load(path: file, environment: testEnvironment)
        #expect(open.warnings.contains { $0.contains("other users on this machine can read it") })
        #expect(!open.warnings.joined().contains("hunter2"))
        chmod(file, 0o600)
        let closed = try FerrymailConfiguration.load(path: file, environment: testEnvironment)
        #expect(closed.warnings.isEmpty)
    }

    @Test("a full configuration with two accounts")
    func fullConfiguration() throws {
        let configuration = try parseConfig(
            """
            [general]
            state = "state/ferry.sqlite"
            connections_per_account = 6
            log_level = "debug"
            deletions = "keep-local"
            mass_delete_threshold = 0.25
            full_reconcile_interval = "2h"
            poll_interval = "90s"
            backoff_max = "1h30m"

            [[account]]
            name = "work"
            host = "imap.example.org"
            port = 1993
            security = "starttls"
            user = "me@example.org"
            password_file = "~/.secrets/work"
            fingerprint = "sha256:\(String(repeating: "AB:", count: 31))CD"
            compress = false
            maildir = "mail/work/"
            layout = "fs"
            folder_name_encoding = "modified-utf7"
            new_mail_to = "new"
            include = ["INBOX", "Lists/%"]
            exclude = ["Lists/spam"]
            idle_folders = ["INBOX", "Lists/swift"]
            deletions = "trash"
            poll_interval = "10m"
            [account.folder_map]
            "INBOX.Sent Items" = "Sent"
            [account.special_use]
            junk = "Spam"

            [[account]]
            name = "gmail"
            host = "imap.gmail.com"
            user = "me@gmail.com"
            oauth2_token_command = "oauth2-helper me"
            auth = "oauthbearer"
            maildir = "/srv/mail/gmail"
            """)

        let general = configuration.general
        #expect(general.statePath == "/home/tester/.config/ferrymail/state/ferry.sqlite")
        #expect(general.connectionsPerAccount == 6)
        #expect(general.logLevel == .debug)
        #expect(general.defaults.deletions == .keepLocal)
        #expect(general.defaults.massDeleteThreshold == 0.25)
        #expect(general.defaults.fullReconcileInterval == .seconds(7200))
        #expect(general.defaults.pollInterval == .seconds(90))
        #expect(general.defaults.backoffMax == .seconds(5400))
        #expect(configuration.warnings.isEmpty)

        #expect(configuration.accounts.map(\.name) == ["work", "gmail"])
        let work = try #require(configuration.account(named: "work"))
        #expect(work.host == "imap.example.org")
        #expect(work.port == 1993)
        #expect(work.security == .startTLS)
        #expect(work.authentication == .password)
        #expect(work.secret.kind == .file(path: "/home/tester/.secrets/work"))
        #expect(work.secret.account == "work")
        #expect(work.fingerprint?.hex == String(repeating: "ab", count: 31) + "cd")
        #expect(work.compress == false)
        // Relative to the config file's directory, normalised.
        #expect(work.maildir == "/home/tester/.config/ferrymail/mail/work")
        #expect(work.layout == .nested)
        #expect(work.folderNameEncoding == .modifiedUTF7)
        #expect(work.newMailDelivery == .new)
        #expect(work.folders == FolderFilter(include: ["INBOX", "Lists/%"], exclude: ["Lists/spam"]))
        #expect(work.idleFolders == ["INBOX", "Lists/swift"])
        #expect(work.folderNames.serverToLocal == ["INBOX.Sent Items": "Sent"])
        #expect(work.folderNames.specialUse[.junk] == "Spam")
        #expect(work.folderNames.specialUse[.sent] == "Sent")
        // Overrides apply per key; the rest comes from [general].
        #expect(work.policy.deletions == .trash)
        #expect(work.policy.pollInterval == .seconds(600))
        #expect(work.policy.massDeleteThreshold == 0.25)
        #expect(work.policy.backoffMax == .seconds(5400))

        let gmail = try #require(configuration.account(named: "GMAIL"))
        #expect(gmail.authentication == .oauthbearer)
        #expect(gmail.secret.kind == .command("oauth2-helper me"))
        #expect(gmail.secret.key == "oauth2_token_command")
        #expect(gmail.maildir == "/srv/mail/gmail")
        #expect(gmail.policy == general.defaults)
    }

    @Test("defaults fill everything that is optional")
    func defaultsApplied() throws {
        let configuration = try parseConfig(minimalAccount, environment: ["HOME": "/home/tester"])
        #expect(configuration.general.statePath == "/home/tester/.local/state/ferrymail/state.sqlite")
        #expect(configuration.general.connectionsPerAccount == 4)
        #expect(configuration.general.logLevel == .info)
        #expect(configuration.general.defaults == .defaults)
        #expect(SyncPolicy.defaults.deletions == .propagate)
        #expect(SyncPolicy.defaults.massDeleteThreshold == 0.5)
        #expect(SyncPolicy.defaults.fullReconcileInterval == .seconds(3600))
        #expect(SyncPolicy.defaults.pollInterval == .seconds(300))
        #expect(SyncPolicy.defaults.backoffMax == .seconds(900))

        let account = try #require(configuration.accounts.first)
        #expect(account.port == 993)
        #expect(account.security == .implicitTLS)
        #expect(account.authentication == .password)
        #expect(account.secret.kind == .command("pass show work"))
        #expect(account.caFile == nil)
        #expect(account.fingerprint == nil)
        #expect(account.allowInsecureAuth == false)
        #expect(account.compress == true)
        #expect(account.maildir == "/home/tester/Mail/work")
        #expect(account.layout == .maildirPlusPlus)
        #expect(account.folderNameEncoding == .utf8)
        #expect(account.newMailDelivery == .cur)
        #expect(account.folders == FolderFilter(include: ["*"], exclude: []))
        #expect(account.idleFolders == ["INBOX"])
        #expect(account.folderNames == FolderNameMapping())
        #expect(account.policy == .defaults)
    }

    @Test("starttls and plain default to port 143; xoauth2 is inferred for token commands")
    func derivedDefaults() throws {
        let configuration = try parseConfig(
            """
            [[account]]
            name = "a"
            host = "h"
            user = "u"
            security = "starttls"
            oauth2_token_command = "token"
            maildir = "/m/a"

            [[account]]
            name = "b"
            host = "localhost"
            user = "u"
            security = "plain"
            allow_insecure_auth = true
            password_env = "B_PASSWORD"
            maildir = "/m/b"
            """)
        #expect(configuration.accounts[0].port == 143)
        #expect(configuration.accounts[0].authentication == .xoauth2)
        #expect(configuration.accounts[1].port == 143)
        #expect(configuration.accounts[1].allowInsecureAuth)
        #expect(configuration.accounts[1].secret.kind == .environment(variable: "B_PASSWORD"))
    }

    @Test("keywords are accepted in any case")
    func keywordCase() throws {
        let configuration = try parseConfig(minimalAccount + "\nsecurity = \"TLS\"\nlayout = \"Maildir++\"")
        #expect(configuration.accounts[0].security == .implicitTLS)
        #expect(configuration.accounts[0].layout == .maildirPlusPlus)
    }

    @Test("state and config paths follow XDG, ignoring relative XDG values")
    func xdgPaths() {
        #expect(FerrymailConfiguration.defaultPath(environment: ["HOME": "/h", "XDG_CONFIG_HOME": "/x/cfg/"])
            == "/x/cfg/ferrymail/config.toml")
        #expect(FerrymailConfiguration.defaultPath(environment: ["HOME": "/h"]) == "/h/.config/ferrymail/config.toml")
        #expect(FerrymailConfiguration.defaultPath(environment: ["HOME": "/h", "XDG_CONFIG_HOME": "rel"])
            == "/h/.config/ferrymail/config.toml")
        #expect(FerrymailConfiguration.defaultStatePath(environment: ["HOME": "/h", "XDG_STATE_HOME": "/s"])
            == "/s/ferrymail/state.sqlite")
        #expect(FerrymailConfiguration.defaultStatePath(environment: ["HOME": "/h"])
            == "/h/.local/state/ferrymail/state.sqlite")
    }

    @Test("config.example.toml parses and validates without warnings")
    func exampleFile() throws {
        let example = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config.example.toml").path
        let configuration = try FerrymailConfiguration.load(path: example, environment: testEnvironment)
        #expect(configuration.warnings.isEmpty, "\(configuration.warnings)")
        #expect(configuration.accounts.map(\.name) == ["work", "gmail"])
        #expect(configuration.accounts[0].policy.deletions == .trash)
        #expect(configuration.accounts[0].folderNames.serverToLocal["INBOX.Sent Items"] == "Sent")
        #expect(configuration.accounts[1].authentication == .xoauth2)
        #expect(configuration.accounts[1].maildir == "/home/tester/Mail/gmail")
    }

    @Test("load reads a file, resolves paths against its directory and warns when it is world-writable")
    func loadFromDisk() throws {
        let directory = try makeTemporaryDirectory()
        defer { cleanUp(directory) }
        let file = directory + "/config.toml"
        try (minimalAccount.replacingOccurrences(of: "~/Mail/work", with: "../mail")).write(
            toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o600)
        let quiet = try FerrymailConfiguration.load(path: file, environment: testEnvironment)
        #expect(quiet.warnings.isEmpty)
        #expect(quiet.accounts[0].maildir == PathResolver.normalize(directory + "/../mail"))

        chmod(file, 0o666)
        let loud = try FerrymailConfiguration.load(path: file, environment: testEnvironment)
        #expect(loud.warnings.count == 1)
        #expect(loud.warnings.first?.contains("\(file): warning: the configuration file is writable by every user") == true)
    }

    @Test("a missing file is one clear error")
    func missingFile() {
        #expect {
            _ = try FerrymailConfiguration.load(path: "/nonexistent/ferrymail.toml", environment: testEnvironment)
        } throws: { error in
            let text = String(describing: error)
            return text.hasPrefix("/nonexistent/ferrymail.toml: error: cannot read configuration file")
                && text.contains("--config")
        }
    }
}

@Suite("Durations")
struct DurationTests {
    @Test(arguments: [
        ("30s", Duration.seconds(30)), ("5m", .seconds(300)), ("1h", .seconds(3600)),
        ("1h30m", .seconds(5400)), ("2d", .seconds(172_800)), ("250ms", .milliseconds(250)),
        ("1m30s500ms", .milliseconds(90_500)), ("0s", .zero), ("1h 5m", .seconds(3900)),
    ])
    func parses(text: String, expected: Duration) {
        #expect(DurationText.parse(text) == expected)
    }

    @Test(arguments: ["", "5", "1.5h", "5M", "m5", "30m1h", "1h1h", "-5m", "5 m", "5mins", "99999999999999999999s"])
    func rejects(text: String) {
        #expect(DurationText.parse(text) == nil)
    }

    @Test func formats() {
        #expect(DurationText.format(.seconds(5400)) == "1h30m")
        #expect(DurationText.format(.milliseconds(90_500)) == "1m30s500ms")
        #expect(DurationText.format(.zero) == "0s")
        #expect(DurationText.format(.seconds(86_400)) == "1d")
    }
}
