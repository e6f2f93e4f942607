import ArgumentParser
import Configuration
import Foundation
import Logging
import MailStores
import SyncEngine
import SyncState

/// `ferrymail sync`: one two-way run over every configured account (or the
/// ones named) and every folder (or the ones named), accounts in parallel,
/// each account's folders over up to `connections_per_account` connections.
struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Synchronise the configured accounts with their Maildirs, both ways.",
        discussion: """
            Exit codes: 0 all synced; 1 some accounts or folders failed (the others were synced; \
            the errors say why and how to recover); 2 usage or configuration error.
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(name: .long, help: ArgumentHelp(
        "Only this folder (repeatable): its server or local name, e.g. INBOX, Lists/swift-dev, Sent.",
        discussion: "No other folder is created, deleted or synced. A name that matches no folder is an error (exit code 2)."))
    var folder: [String] = []

    @Flag(name: .long, help: "Print the plan per folder and change nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Only carry changes from the server to the Maildir.")
    var pull = false

    @Flag(name: .long, help: "Only carry changes from the Maildir to the server.")
    var push = false

    @Flag(name: .long, help: "Let this run delete more than the configured share of a folder (mass-deletion guard).")
    var allowMassDelete = false

    func validate() throws {
        if pull && push { throw ValidationError("--pull and --push exclude each other; give neither for a two-way sync") }
    }

    func run() async throws {
        let started = ContinuousClock.now
        let config = try common.loadConfiguration()
        let accounts = try common.selectedAccounts(config)
        let level = common.bootstrapLogging(config)
        let logger = Logger(label: "ferrymail.sync")
        let state = try openState(config)
        defer { try? state.close() }
        logger.debug("configuration read and state opened", metadata: ["ferrymail.elapsed": "\(started.duration(to: .now))"])
        let direction: SyncDirection = pull ? .pull : push ? .push : .both
        let connections = config.general.connectionsPerAccount
        let dryRun = self.dryRun
        let allowMassDelete = self.allowMassDelete
        let onlyFolders = self.folder
        let wireTrace = level == .trace

        // Secrets are resolved up front and one at a time: a password command may
        // prompt (pinentry), and prompts must not interleave.
        var prepared: [(AccountConfiguration, String)] = []
        var failed = 0
        for account in accounts {
            do {
                prepared.append((account, try account.secret.resolve()))
            } catch {
                printError("account \"\(account.name)\": \(error)")
                failed += 1
            }
        }

        // A live progress line on a terminal; plain log lines otherwise.
        let progress = Dictionary(uniqueKeysWithValues: prepared.map { ($0.0.name, TransferProgress()) })
        let ticker = isatty(STDERR_FILENO) == 1 && !dryRun ? Task { await ProgressLine.run(progress) } : nil
        MemoryTuning.apply()
        let trimmer = MemoryTuning.trimming()
        defer { trimmer.cancel() }

        let outcomes = await withTaskGroup(of: (String, Result<SyncReport, any Error>, Duration).self) { group in
            for (account, secret) in prepared {
                let counter = progress[account.name]!
                group.addTask {
                    let start = ContinuousClock.now
                    let stores = AccountStores(account: account, secret: secret, connectionsPerAccount: connections,
                                               direction: direction, dryRun: dryRun, allowMassDelete: allowMassDelete,
                                               onlyFolders: onlyFolders, wireTrace: wireTrace, logger: logger)
                    let far = stores.far, near = stores.near
                    let engine = SyncEngine(account: account.name, state: state,
                                            far: { ProgressStore(try await far(), progress: counter, isNear: false) },
                                            near: { ProgressStore(try await near(), progress: counter, isNear: true) },
                                            options: stores.options, logger: logger, planObserver: counter.observe)
                    do {
                        let report = try await engine.run()
                        return (account.name, .success(report), ContinuousClock.now - start)
                    } catch {
                        return (account.name, .failure(error), ContinuousClock.now - start)
                    }
                }
            }
            var results: [(String, Result<SyncReport, any Error>, Duration)] = []
            for await outcome in group { results.append(outcome) }
            return results.sorted { $0.0 < $1.0 }
        }
        if let ticker {
            ticker.cancel()
            await ticker.value
        }

        var misnamed = false
        for (name, result, elapsed) in outcomes {
            switch result {
            case .success(let report):
                print(SyncReportText.render(report, elapsed: elapsed))
                if !report.succeeded { failed += 1 }
            case .failure(let error):
                // A --folder typo is a usage error (exit 2), like an unknown --account.
                if case .noSuchFolder? = error as? SyncError {
                    printError("error: \(error)")
                    misnamed = true
                } else {
                    print("account \"\(name)\": failed: \(error)")
                    failed += 1
                }
            }
        }
        if misnamed { throw ExitCode(2) }
        if failed > 0 { throw ExitCode(1) }
    }
}

/// Human-readable run reports: ↓ is server → Maildir, ↑ is Maildir → server.
enum SyncReportText {
    static func render(_ report: SyncReport, elapsed: Duration) -> String {
        var lines: [String] = []
        let c = report.counts
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let prefix = report.dryRun ? "dry run, nothing changed: would" : "done in \(String(format: "%.1f", seconds)) s:"
        let skipped = report.mailboxes.filter(\.skipped).count
        lines.append("account \"\(report.account)\" \(prefix) new ↓\(c.fetched) ↑\(c.appended), flags \(c.flagsChanged), "
                     + "deleted ↓\(c.expungedNear) ↑\(c.expungedFar), moved \(c.moved); "
                     + "\(report.mailboxes.count) folders (\(skipped) unchanged, skipped)")
        for change in report.folderChanges { lines.append("  folder: \(change)") }
        for move in report.moves { lines.append("  moved on \(move.movedOn.rawValue): \(move.key) \(move.from) → \(move.to)") }
        for mailbox in report.mailboxes.sorted(by: { $0.farName < $1.farName }) {
            if let plan = mailbox.plan, report.dryRun {
                if plan.isEmpty { continue }
                lines.append("  \(mailbox.farName): new ↓\(plan.copies.near.count) ↑\(plan.copies.far.count), "
                             + "flags ↓\(plan.flagUpdateCount(on: .near)) ↑\(plan.flagUpdateCount(on: .far)), "
                             + "deletions ↓\(plan.removals.near.count + plan.trash.near.count) "
                             + "↑\(plan.removals.far.count + plan.trash.far.count), pairings \(plan.pairings.count)")
            } else if mailbox.copied.far + mailbox.copied.near + mailbox.flagsChanged.far + mailbox.flagsChanged.near
                        + mailbox.deleted.far + mailbox.deleted.near + mailbox.paired > 0 {
                lines.append("  \(mailbox.farName): new ↓\(mailbox.copied.near) ↑\(mailbox.copied.far), "
                             + "flags ↓\(mailbox.flagsChanged.near) ↑\(mailbox.flagsChanged.far), "
                             + "deleted ↓\(mailbox.deleted.near) ↑\(mailbox.deleted.far)"
                             + (mailbox.paired > 0 ? ", paired \(mailbox.paired)" : ""))
            }
            if let error = mailbox.error { lines.append("  \(mailbox.farName): error: \(error)") }
            for failure in mailbox.notCopied { lines.append("  \(mailbox.farName): not copied: \(failure)") }
        }
        for error in report.errors { lines.append("  error: \(error)") }
        return lines.joined(separator: "\n")
    }
}

/// The terminal progress line: per account, messages down and up, bytes
/// moved and the rate, redrawn twice a second on stderr.
enum ProgressLine {
    static func run(_ progress: [String: TransferProgress]) async {
        let names = progress.keys.sorted()
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(500))
            var parts: [String] = []
            for name in names {
                let s = await progress[name]!.current()
                let mb = Double(s.bytes) / 1e6
                var part = "\(name): ↓\(s.downloaded) ↑\(s.uploaded)"
                if s.plannedMessages > 0 { part += " of \(s.plannedMessages)" }
                part += String(format: ", %.1f MB, %.1f MB/s", mb, mb / max(s.elapsed.seconds, 0.001))
                if let left = s.remaining { part += ", ETA " + Self.clock(left) }
                parts.append(part)
            }
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + parts.joined(separator: " | ")).utf8))
        }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }

    /// 42s, 3m05s, 1h02m.
    static func clock(_ duration: Duration) -> String {
        let seconds = Int(duration.seconds.rounded())
        if seconds < 60 { return "\(seconds)s" }
        if seconds < 3600 { return String(format: "%dm%02ds", seconds / 60, seconds % 60) }
        return String(format: "%dh%02dm", seconds / 3600, seconds % 3600 / 60)
    }
}
