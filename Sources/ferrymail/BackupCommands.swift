import Archive
import ArgumentParser
import Configuration
import Foundation
import IMAPClient
import Logging
import Maildir
import MailStores
import SyncEngine
import SyncState

/// `ferrymail backup`: one compressed archive of an account (a one-way sync
/// from the server into an archive writer, see Sources/Archive/FORMAT.md).
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Write one compressed archive (tar.gz + manifest) of an account.",
        discussion: """
            The archive is a gzip-compressed POSIX tar: `tar xzf` gives a Maildir per folder and \
            manifest.jsonl lists every message with flags, keywords, date, size and SHA-256. It is \
            written under a temporary name and renamed only when complete, mode 0600.
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(name: .long, help: "Archive file, or a directory for ACCOUNT-TIME.tar.gz (default: $XDG_DATA_HOME/ferrymail/backups/ACCOUNT/).")
    var output: String?

    @ArgumentParser.Flag(name: .long, help: "Store only messages absent from this account's previous archives.")
    var incremental = false

    @Option(name: .long, help: "gzip level 1 (fastest, the default) … 9 (smallest).")
    var level: Int32 = 1

    func validate() throws {
        if common.account.count != 1 { throw ValidationError("name exactly one --account to back up") }
        if !(1...9).contains(level) { throw ValidationError("--level must be between 1 and 9") }
    }

    func run() async throws {
        let config = try common.loadConfiguration()
        guard let account = try common.selectedAccounts(config).first else { throw ExitCode(2) }
        let level = common.bootstrapLogging(config)
        let logger = Logger(label: "ferrymail.backup")
        let secret: String
        do { secret = try account.secret.resolve() } catch {
            printError("account \"\(account.name)\": \(error)")
            throw ExitCode(1)
        }
        // The main state records the chain; it is opened (and locked) only to
        // read and record it, so a backup can run beside a daemon's sync.
        var chain: ArchiveChain?
        if incremental {
            let records = try archiveRecords(config, account: account.name)
            if records.isEmpty {
                print("no earlier archive of \"\(account.name)\" is recorded: writing a full backup")
            } else {
                do {
                    chain = try ArchiveChain.open(paths: records.map(\.path))
                } catch {
                    printError("error: the previous archives cannot be read, so an incremental backup would not restore: \(error)\n"
                               + "hint: run a full backup (without --incremental)")
                    throw ExitCode(1)
                }
            }
        }
        let path: String
        var isDirectory: ObjCBool = false
        if let output, FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory), isDirectory.boolValue {
            path = (output as NSString).appendingPathComponent(Self.archiveName(account: account.name))
        } else {
            path = try output ?? defaultOutput(account: account.name)
        }
        // The engine's own pairing state for this run: an archive is written
        // once, so a fresh in-memory state is the truth about it.
        let runState = try StateStore.inMemory()
        let store: ArchiveWriterStore
        do {
            store = try ArchiveWriterStore(output: path, account: account.name, previous: chain, sourceState: runState,
                                           options: ArchiveWriterOptions(compressionLevel: self.level))
        } catch {
            printError("error: \(error)")
            throw ExitCode(1)
        }
        let stores = AccountStores(account: account, secret: secret, connectionsPerAccount: config.general.connectionsPerAccount,
                                   direction: .pull, wireTrace: level == .trace, logger: logger)
        // Server names are kept: the archive records each folder's role itself.
        let options = SyncOptions(direction: .pull, maxConcurrentMailboxes: config.general.connectionsPerAccount,
                                  mapping: MailboxMapping(nearDelimiter: "/"))
        // Bodies come from the synced Maildir where it is current (see MirroredIMAPStore).
        let counter = MirrorCounter()
        var far = stores.far
        if FileManager.default.fileExists(atPath: config.general.statePath),
           let mirrorState = try? StateStore.openForReading(at: config.general.statePath),
           let mirror = try? MaildirStore(root: account.maildir, layout: account.layout == .nested ? .nested : .maildirPlusPlus,
                                          folderNameEncoding: account.folderNameEncoding == .modifiedUTF7 ? .modifiedUTF7 : .utf8,
                                          logger: logger) {
            let server = stores.far
            let name = account.name
            far = { MirroredIMAPStore(inner: try await server(), state: mirrorState, account: name, maildir: mirror,
                                      counter: counter, logger: logger) }
        }
        let start = ContinuousClock.now
        let engine = SyncEngine(account: account.name, state: runState, far: far, near: { store },
                                options: options, logger: logger)
        let report: SyncReport
        do {
            report = try await engine.run()
        } catch {
            await store.abandon()
            printError("account \"\(account.name)\": backup failed, no archive written: \(error)")
            throw ExitCode(1)
        }
        guard report.succeeded else {
            await store.abandon()
            for error in report.allErrors { printError("account \"\(account.name)\": \(error)") }
            printError("backup failed, no archive written")
            throw ExitCode(1)
        }
        let summary: ArchiveSummary
        do {
            summary = try await store.finish()
        } catch {
            printError("error: \(error)")
            throw ExitCode(1)
        }
        do {
            try recordArchive(config, account: account.name, summary: summary)
        } catch {
            printError("warning: the archive is complete, but recording it in \(config.general.statePath) failed: \(error)\n"
                       + "hint: a later --incremental backup will not know about it and writes a full backup")
        }
        let seconds = (ContinuousClock.now - start).seconds
        let compressed = (try? FileManager.default.attributesOfItem(atPath: summary.path)[.size] as? Int64) ?? 0
        print("archive \(summary.path)")
        print("  \(summary.folders) folders, \(summary.messages) messages (\(summary.storedMessages) stored, \(summary.links) links"
              + (summary.previous.isEmpty ? "" : ", incremental on \(summary.previous.count) earlier archive(s)") + ")")
        let (mirrored, downloaded) = (await counter.fromMirror, await counter.fromServer)
        print("  bodies: \(mirrored) from the synced Maildir, \(downloaded) downloaded")
        print(String(format: "  %.1f MB of mail → %.1f MB compressed in %.1f s (%.1f MB/s)",
                     Double(summary.messageBytes) / 1e6, Double(compressed) / 1e6, seconds,
                     Double(summary.messageBytes) / 1e6 / max(seconds, 0.001)))
    }

    /// The recorded chain; read without the process lock, so it works while
    /// the daemon runs.
    private func archiveRecords(_ config: FerrymailConfiguration, account: String) throws -> [ArchiveRecord] {
        let path = config.general.statePath
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let state = try StateStore.openForReading(at: path)
        defer { try? state.close() }
        guard let record = try state.accounts().first(where: { $0.name == account }), let id = record.id else { return [] }
        return try state.archiveChain(account: id)
    }

    /// Records a finished archive. Takes the process lock when it is free;
    /// when the daemon holds it, appends through a shared connection (the
    /// archive table is not pairing state, see `StateStore.openShared`).
    private func recordArchive(_ config: FerrymailConfiguration, account: String, summary: ArchiveSummary) throws {
        let path = config.general.statePath
        let state: StateStore
        switch Result(catching: { () throws(StateError) -> StateStore in try StateStore.open(at: path) }) {
        case .success(let opened): state = opened
        case .failure(.locked): state = try StateStore.openShared(at: path)
        case .failure(let error): throw error
        }
        defer { try? state.close() }
        let accountId: Int64
        if let existing = try state.accounts().first(where: { $0.name == account }), let id = existing.id {
            accountId = id
        } else {
            accountId = try state.account(named: account).id!
        }
        try state.recordArchive(ArchiveRecord(accountId: accountId, archiveId: summary.id, path: summary.path,
                                              previousArchiveId: summary.previous.last,
                                              messages: summary.messages, bytes: summary.messageBytes))
    }

    private func defaultOutput(account: String) throws -> String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_DATA_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? (NSHomeDirectory() + "/.local/share")
        let directory = "\(base)/ferrymail/backups/\(account)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        return "\(directory)/\(Self.archiveName(account: account))"
    }

    static func archiveName(account: String) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return "\(account)-\(formatter.string(from: Date())).tar.gz"
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// `ferrymail verify-archive`: reads every entry, checks every hash against the
/// manifest and the chain's links, without needing the account or a config.
struct VerifyArchiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-archive",
        abstract: "Check an archive (or an incremental chain, oldest first) entry by entry."
    )

    @Argument(help: "Archive files; several form a chain (full backup first).")
    var paths: [String]

    func run() async throws {
        let summary = ArchiveVerifier.verify(paths: paths)
        for archive in summary.archives {
            let id = archive.header?.id ?? "unreadable header"
            print("\(archive.path): \(id), \(archive.messages) messages (\(archive.storedEntries) stored, \(archive.links) links), "
                  + String(format: "%.1f MB of mail, %.1f MB compressed", Double(archive.messageBytes) / 1e6,
                           Double(archive.compressedBytes) / 1e6))
        }
        for (folder, count) in summary.folders.sorted(by: { $0.key < $1.key }) {
            print("  \(folder): \(count.messages) messages, \(count.bytes) bytes")
        }
        if summary.isIntact {
            print("intact: every entry's SHA-256 matches its manifest record")
        } else {
            for problem in summary.problems { print("damaged: \(problem)") }
            throw ExitCode(1)
        }
    }
}

/// `ferrymail restore`: puts mail from an archive (chain), a Maildir or another
/// account onto an account's server. Resumable and idempotent: progress is
/// journaled in the state database under a restore-specific name, and
/// messages already on the target are recognised by Message-ID + size + date.
struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Upload mail from an archive, a Maildir or another account into an account.",
        discussion: """
            Folders are created as needed, special-use roles mapped to the target server's \
            folders, and every message uploaded with its flags, keywords and INTERNALDATE, bytes \
            unchanged. Running it again uploads nothing; a run that was interrupted carries on.
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(name: .long, help: "The account to restore into.")
    var toAccount: String

    @Option(name: .long, parsing: .upToNextOption, help: "Archive file(s); an incremental chain oldest first.")
    var archive: [String] = []

    @Option(name: .long, help: "A Maildir to upload.")
    var maildir: String?

    @Option(name: .long, help: "Layout of --maildir: maildir++ (default) or fs.")
    var maildirLayout: String = "maildir++"

    @Option(name: .long, help: "Another configured account to copy from.")
    var fromAccount: String?

    @Option(name: .long, help: "Rename a folder on the way: OLD=NEW (repeatable).")
    var folderMap: [String] = []

    @ArgumentParser.Flag(name: .long, help: "Show what would be uploaded; change nothing.")
    var dryRun = false

    func validate() throws {
        let sources = (archive.isEmpty ? 0 : 1) + (maildir == nil ? 0 : 1) + (fromAccount == nil ? 0 : 1)
        if sources != 1 { throw ValidationError("give exactly one source: --archive PATH…, --maildir PATH or --from-account NAME") }
        if !["maildir++", "fs"].contains(maildirLayout) { throw ValidationError("--maildir-layout is maildir++ or fs") }
        for entry in folderMap where entry.split(separator: "=", maxSplits: 1).count != 2 {
            throw ValidationError("--folder-map takes OLD=NEW, got \(entry)")
        }
    }

    func run() async throws {
        let config = try common.loadConfiguration()
        let level = common.bootstrapLogging(config)
        let logger = Logger(label: "ferrymail.restore")
        guard let target = config.account(named: toAccount) else {
            printError("error: no account named \"\(toAccount)\" in \(config.source)")
            throw ExitCode(2)
        }
        var renames: [String: String] = [:]
        for entry in folderMap {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            renames[parts[0]] = parts[1]
        }
        let targetSecret = try resolve(target)
        let targetStores = AccountStores(account: target, secret: targetSecret, connectionsPerAccount: config.general.connectionsPerAccount,
                                         wireTrace: level == .trace, logger: logger)
        let far: StoreFactory
        let near: StoreFactory
        let direction: SyncDirection
        var mapping: MailboxMapping
        let sourceLabel: String
        if !archive.isEmpty {
            // Verified before anything touches the target: a damaged archive is refused whole.
            let chain: ArchiveChain
            do {
                chain = try ArchiveChain.open(paths: archive)
            } catch {
                printError("error: \(error)\nnothing was uploaded")
                throw ExitCode(1)
            }
            far = { ArchiveReaderStore(chain: chain) }
            near = targetStores.far
            direction = .pull
            mapping = try await targetRoleMapping(targetStores.far, renames: renames)
            sourceLabel = "archive:" + (chain.ids.first ?? "")
        } else if let fromAccount {
            guard let source = config.account(named: fromAccount) else {
                printError("error: no account named \"\(fromAccount)\" in \(config.source)")
                throw ExitCode(2)
            }
            let sourceStores = AccountStores(account: source, secret: try resolve(source), wireTrace: level == .trace, logger: logger)
            far = sourceStores.far
            near = targetStores.far
            direction = .pull
            mapping = try await targetRoleMapping(targetStores.far, renames: renames)
            sourceLabel = "account:" + source.name
        } else {
            // A Maildir is the near side of a push: its base names are its keys.
            let root = (maildir! as NSString).expandingTildeInPath
            // A mistyped path must not become an empty Maildir that "restores" nothing.
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: root + "/cur", isDirectory: &isDirectory), isDirectory.boolValue else {
                printError("error: \(root) is not a Maildir (no cur/ directory); nothing was uploaded")
                throw ExitCode(2)
            }
            let layout: MaildirLayout = maildirLayout == "fs" ? .nested : .maildirPlusPlus
            near = { try MaildirMailStore(root: root, layout: layout, account: target.name, logger: logger) }
            far = targetStores.far
            direction = .push
            mapping = MailboxMapping(nearDelimiter: "/", nearNamesByFarName: Dictionary(renames.map { ($1, $0) }, uniquingKeysWith: { a, _ in a }))
            sourceLabel = "maildir:" + root
        }
        let options = SyncOptions(direction: direction, dryRun: dryRun, expungePolicy: .keepLocal,
                                  maxConcurrentMailboxes: config.general.connectionsPerAccount, mapping: mapping)
        let runName = "restore \(target.name) ← \(sourceLabel)"
        let state = try openState(config)
        defer { try? state.close() }
        let start = ContinuousClock.now
        let counter = TransferProgress()
        let ticker = isatty(STDERR_FILENO) == 1 && !dryRun ? Task { await ProgressLine.run([target.name: counter]) } : nil
        let engine = SyncEngine(account: runName, state: state,
                                far: { ProgressStore(try await far(), progress: counter, isNear: false) },
                                near: { ProgressStore(try await near(), progress: counter, isNear: true) },
                                options: options, logger: logger, planObserver: counter.observe)
        let outcome: Result<SyncReport, any Error>
        do { outcome = .success(try await engine.run()) } catch { outcome = .failure(error) }
        if let ticker {
            ticker.cancel()
            await ticker.value
        }
        let report: SyncReport
        switch outcome {
        case .success(let value): report = value
        case .failure(let error):
            printError("\(runName): failed: \(error)")
            throw ExitCode(1)
        }
        let uploaded = direction == .push ? report.counts.appended : report.counts.fetched
        // Every message the state pairs for this restore is on the target; the
        // ones not uploaded by this run were there already (an earlier run, or
        // recognised by Message-ID, size and date).
        var present = report.mailboxes.reduce(0) { $0 + $1.paired }
        if !dryRun, let record = try? state.accounts().first(where: { $0.name == runName }), let id = record.id,
           let boxes = try? state.mailboxPairs(account: id) {
            let paired = boxes.compactMap(\.id).reduce(0) { $0 + ((try? state.pairCount(in: $1)) ?? 0) }
            present = max(0, paired - uploaded)
        }
        let seconds = (ContinuousClock.now - start).seconds
        print("\(runName)\(dryRun ? " (dry run: nothing changed)" : ""):")
        print(String(format: "  %@ %d messages in %.1f s (%.1f messages/s), %d already present, %d folders",
                     dryRun ? "would upload" : "uploaded", uploaded, seconds, Double(uploaded) / max(seconds, 0.001),
                     present, report.mailboxes.count))
        for change in report.folderChanges { print("  folder: \(change)") }
        let errors = report.allErrors
        for error in errors { print("  failed: \(error)") }
        if !errors.isEmpty { throw ExitCode(1) }
    }

    private func resolve(_ account: AccountConfiguration) throws -> String {
        do { return try account.secret.resolve() } catch {
            printError("account \"\(account.name)\": \(error)")
            throw ExitCode(1)
        }
    }

    /// Folders with a special-use role land in the target server's folder of
    /// that role (its `\Sent` may be called "Sent Items"), unless renamed.
    private func targetRoleMapping(_ target: StoreFactory, renames: [String: String]) async throws -> MailboxMapping {
        let store = try await target()
        let mailboxes: [MailboxInfo]
        do {
            mailboxes = try await store.listMailboxes()
            await store.close()
        } catch {
            await store.close()
            throw error
        }
        return MailboxMapping.onto(target: mailboxes, renames: renames)
    }
}
