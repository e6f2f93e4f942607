import ArgumentParser
import Configuration
import Foundation
import Logging
import SyncState

/// The `ferrymail` command. Subcommands parse arguments and call into the
/// library modules; they hold no sync logic of their own.
@main
struct Ferrymail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferrymail",
        abstract: "Keep IMAP accounts and local Maildir trees in sync, safely.",
        discussion: """
            Exit codes: 0 everything succeeded; 1 some accounts or folders failed (the rest \
            were still synced); 2 usage or configuration error.
            """,
        subcommands: [SyncCommand.self, DaemonCommand.self, CheckCommand.self, StatusCommand.self, BackupCommand.self, VerifyArchiveCommand.self, RestoreCommand.self]
    )
}

/// Options every subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (default: $XDG_CONFIG_HOME/ferrymail/config.toml).")
    var config: String?

    @Option(name: .long, help: "Only this account (repeatable).")
    var account: [String] = []

    @Flag(name: .shortAndLong, help: "More log output; twice for an IMAP wire trace (credentials and bodies redacted).")
    var verbose: Int

    /// Loads and validates the configuration, printing warnings; configuration
    /// errors end the process with exit code 2, as documented.
    func loadConfiguration() throws -> FerrymailConfiguration {
        let path = config ?? FerrymailConfiguration.defaultPath()
        let loaded: FerrymailConfiguration
        do {
            loaded = try FerrymailConfiguration.load(path: path)
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        for warning in loaded.warnings { printError(warning) }
        return loaded
    }

    func selectedAccounts(_ configuration: FerrymailConfiguration) throws -> [AccountConfiguration] {
        if account.isEmpty { return configuration.accounts }
        var result: [AccountConfiguration] = []
        for name in account {
            guard let found = configuration.account(named: name) else {
                let known = configuration.accounts.map(\.name).joined(separator: ", ")
                printError("error: no account named \"\(name)\" in \(configuration.source) (accounts: \(known))")
                throw ExitCode(2)
            }
            result.append(found)
        }
        return result
    }

    /// Logs go to stderr so stdout stays the command's own output.
    func bootstrapLogging(_ configuration: FerrymailConfiguration) -> Logger.Level {
        var level = Logger.Level(configuration.general.logLevel)
        if verbose >= 1 { level = min(level, .debug) }
        if verbose >= 2 { level = .trace }
        let chosen = level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = chosen
            return handler
        }
        return chosen
    }
}

extension Logger.Level {
    init(_ level: GeneralSettings.LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        }
    }
}

/// Opens (and locks) the configuration's state database; a failure — most
/// often another ferrymail process holding it — ends the command with exit 1.
func openState(_ config: FerrymailConfiguration) throws -> StateStore {
    do {
        return try StateStore.open(at: config.general.statePath)
    } catch {
        printError("error: \(error)")
        throw ExitCode(1)
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
