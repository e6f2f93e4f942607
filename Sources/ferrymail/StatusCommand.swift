import ArgumentParser
import Configuration
import Foundation
import SyncState

/// `ferrymail status`: what the state database knows about each account — last
/// run, its counts and error, pending work, and the daemon's own report. Reads
/// the database without taking the process lock, so it works while a sync or
/// the daemon runs.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show each account's last sync, pending work and last error from the state database."
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let config = try common.loadConfiguration()
        let accounts = try common.selectedAccounts(config)
        let path = config.general.statePath
        guard FileManager.default.fileExists(atPath: path) else {
            print("no state yet at \(path): run `ferrymail sync` first")
            return
        }
        let state: StateStore
        do {
            state = try StateStore.openForReading(at: path)
        } catch {
            printError("error: \(error)")
            throw ExitCode(1)
        }
        let statuses = try state.daemonStatuses()
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = .current
        func when(_ date: Date?) -> String { date.map { formatter.string(from: $0) } ?? "never" }
        var anyError = false
        for account in accounts {
            print("account \"\(account.name)\"")
            guard let status = statuses.first(where: { $0.account.name == account.name }), let accountId = status.account.id else {
                print("  never synced")
                continue
            }
            let pairs = try state.mailboxPairs(account: accountId)
            var pending = 0
            var messages = 0
            for pair in pairs {
                guard let id = pair.id else { continue }
                pending += try state.pendingCopies(in: id).count + state.pendingExpunges(in: id).count
                messages += try state.pairCount(in: id)
            }
            print("  folders: \(pairs.count), messages paired: \(messages), pending changes: \(pending)")
            if let run = status.lastRun {
                let counts = run.counts
                let outcome = run.finishedAt == nil ? "interrupted or running" : "finished \(when(run.finishedAt))"
                print("  last run: started \(when(run.startedAt)), \(outcome)")
                print("    downloaded \(counts.fetched), uploaded \(counts.appended), flag changes \(counts.flagsChanged), "
                      + "deleted here \(counts.expungedNear), deleted on server \(counts.expungedFar), moved \(counts.moved)")
                if let error = run.lastError {
                    anyError = true
                    print("    error: \(error)")
                }
            }
            if let daemon = status.daemon {
                print("  daemon: \(daemon.state.rawValue) since \(when(daemon.since))\(daemon.detail.map { " (\($0))" } ?? "")")
                print("    last success: \(when(daemon.lastSuccessAt))")
                if let error = daemon.lastError { print("    last error (\(when(daemon.lastErrorAt))): \(error)") }
            }
        }
        if anyError { throw ExitCode(1) }
    }
}
