import ArgumentParser
import Configuration
import Foundation
import Logging
import Service

/// `ferrymail daemon`: continuous two-way sync of every configured account
/// (see Sources/Service and systemd/). SIGTERM/SIGINT stop it gracefully,
/// a second one at once; SIGHUP reloads the configuration.
struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Keep every account in sync continuously (NOTIFY/IDLE, inotify); for systemd or a terminal."
    )

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if !common.account.isEmpty {
            throw ValidationError("the daemon runs every account of the configuration; use a separate configuration for a subset")
        }
    }

    func run() async throws {
        let path = common.config ?? FerrymailConfiguration.defaultPath()
        // Validated here so a bad configuration exits 2 before anything starts.
        let config = try common.loadConfiguration()
        var level = Logger.Level(config.general.logLevel)
        if common.verbose >= 1 { level = min(level, .debug) }
        if common.verbose >= 2 { level = .trace }
        // journald priorities under systemd, plain lines on a terminal.
        JournalLogHandler.bootstrap(level: level, environment: ProcessInfo.processInfo.environment)
        MemoryTuning.apply()
        let trimmer = MemoryTuning.trimming(every: .seconds(2))
        defer { trimmer.cancel() }
        do {
            try await Daemon(configurationPath: path).run()
        } catch {
            printError("ferrymail daemon: \(error)")
            throw ExitCode(1)
        }
    }
}
