import ArgumentParser
import Configuration
import Foundation
import IMAPClient
import IMAPCodec
import Logging
import MailStores

/// `ferrymail check`: validate the configuration, connect, log in, and show what
/// the server offers and which fast paths a sync will use — the first thing to run
/// after writing a configuration, and the first thing to run when a sync fails.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the configuration, log in to each account and show capabilities and fast paths."
    )

    @OptionGroup var common: CommonOptions

    @ArgumentParser.Flag(name: .long, help: "Only validate the configuration; do not connect.")
    var offline = false

    func run() async throws {
        let config = try common.loadConfiguration()
        let accounts = try common.selectedAccounts(config)
        let level = common.bootstrapLogging(config)
        print("configuration \(config.source): \(config.accounts.count) account(s), state \(config.general.statePath)")
        if offline { return }
        var failures = 0
        for account in accounts {
            if !(await check(account, wireTrace: level == .trace)) { failures += 1 }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    /// Returns false when the account could not be reached or logged in to; the
    /// reason is printed, and the other accounts are still checked.
    private func check(_ account: AccountConfiguration, wireTrace: Bool) async -> Bool {
        print("\naccount \"\(account.name)\": \(account.user) at \(account.host):\(account.port) (\(account.security.rawValue))")
        let secret: String
        do {
            secret = try account.secret.resolve()
        } catch {
            print("  error: \(error)")
            return false
        }
        let logger = Logger(label: "ferrymail.check")
        let imap = IMAPConfiguration(account: account, secret: secret, wireTrace: wireTrace, logger: logger)
        do {
            try await IMAPConnection.withConnection(configuration: imap) { connection in
                let capabilities = await connection.capabilities
                let enabled = await connection.enabledExtensions
                let compressed = await connection.isCompressionActive
                let tls = await connection.isTLSActive
                print("  login: ok\(tls ? ", TLS" : ", NOT encrypted")")
                print("  capabilities: \(capabilities.map(\.name).sorted().joined(separator: " "))")
                if !enabled.isEmpty { print("  enabled: \(enabled.map(\.name).sorted().joined(separator: " "))") }
                let paths = FastPaths(capabilities: capabilities, enabled: enabled, compressionActive: compressed,
                                      serverName: await connection.serverID?["name"])
                print("  fast paths:")
                for (what, how) in paths.summary { print("    \(what): \(how)") }
                var options = ListOptions(returnSpecialUse: true, returnStatus: [.messages, .uidNext, .uidValidity])
                if capabilities.contains(.condStore) { options.returnStatus.append(.highestModSeq) }
                let mailboxes = try await connection.list(options: options, inboxStatusFirst: paths.folderStatus == .inboxStatusFirst)
                let delimiter = mailboxes.first?.entry.delimiter
                let included = mailboxes.filter { account.folders.includes($0.name, delimiter: delimiter) }
                print("  folders: \(mailboxes.count) on the server, \(included.count) included")
                for mailbox in mailboxes.sorted(by: { $0.name < $1.name }) {
                    let isIncluded = account.folders.includes(mailbox.name, delimiter: delimiter)
                    let role = mailbox.specialUse.flatMap { SpecialUseRole(attribute: $0.rawValue) }
                    let local = account.folderNames.localName(forServerName: mailbox.name, role: role)
                    let count = mailbox.status?.messages.map { "\($0) messages" } ?? "not selectable"
                    let roleText = mailbox.specialUse.map { " \($0)" } ?? ""
                    let target = isIncluded ? "→ \(local)" : "(excluded)"
                    print("    \(mailbox.name)\(roleText) \(target)  \(count)")
                }
            }
        } catch {
            print("  error: \(error)")
            return false
        }
        let exists = FileManager.default.fileExists(atPath: account.maildir)
        print("  maildir: \(account.maildir) (\(exists ? "exists" : "will be created, 0700"))")
        return true
    }
}
