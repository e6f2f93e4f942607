import Archive
import Foundation
@testable import MailStores
import SyncEngine
import SyncState
import TestSupport
import Testing

/// The four one-way transfers of issue 6, built as `RestoreCommand` and
/// `BackupCommand` build them.
enum Transfer: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// `restore --archive`: archive reader far, target account near, pull.
    case archiveToAccount
    /// `restore --maildir`: target account far, Maildir near, push.
    case maildirToAccount
    /// `restore --from-account`: source account far, target account near, pull.
    case accountToAccount
    /// `backup`: source account far, archive writer near, pull, fresh state per run.
    case accountToArchive

    var testDescription: String { rawValue }
}

/// Which side of the transfer fails.
enum FaultSide: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// The destination crashes right after its k-th mutation (`FaultInjectingStore`).
    case target
    /// The source fails at its k-th read step (`ReadFaultStore`): a call, or
    /// before a message. Messages cut off half-way: for an archive target
    /// here; for IMAP targets in `sourceFailingMidMessage` (a known bug makes
    /// each such run wait out the target's command timeout).
    case source

    var testDescription: String { rawValue }
}

/// Where one attempt writes to.
enum TransferTarget: Sendable {
    case account(ServerAccount)
    case archive(ArchiveWriterStore, directory: String)
}

enum TransferFaults: Sendable {
    case none
    case target(FaultSchedule)
    case source(ReadFaults)

    var hit: Bool {
        get async {
            switch self {
            case .none: false
            case .target(let schedule): await schedule.crashed
            case .source(let faults): await faults.failed
            }
        }
    }
}

/// One transfer's source (7 messages in INBOX, Sent and Lists/swift, with
/// flags, keywords and an unseen message) and what every target must end
/// up holding.
final class TransferFixture: Sendable {
    let transfer: Transfer
    let directory: TemporaryDirectory
    let source: ServerAccount?
    let maildirRoot: String?
    let chain: ArchiveChain?
    /// Folder → messages, as the independent checker reads the source.
    let expected: [String: [CheckedMessage]]
    let expectedDates: [String: [String: [Int64]]]
    static let messageCount = 7
    static let archiveName = "backup.tar.gz"

    init(_ transfer: Transfer) async throws {
        self.transfer = transfer
        directory = try TemporaryDirectory(prefix: "ferrymail-interrupted-\(transfer.rawValue)")
        let messages = seedMessages(perFolder: ["INBOX": 3, "Sent": 2, "Lists/swift": 2])
        switch transfer {
        case .maildirToAccount:
            let root = directory.path + "/Mail"
            try MaildirWriter.write(messages, root: root, encodesNames: false)
            source = nil
            chain = nil
            maildirRoot = root
            expected = try MaildirChecker.read(root: URL(fileURLWithPath: root), encodesNames: false)
            expectedDates = try MaildirDates.read(root: URL(fileURLWithPath: root), encodesNames: false)
        case .archiveToAccount, .accountToAccount, .accountToArchive:
            let account = try await RestoreServers.shared.account(.sentOnly)
            try MaildirWriter.seed(messages, into: account)
            source = account
            maildirRoot = nil
            expected = try account.checkedTree()
            expectedDates = try account.checkedDates()
            if transfer == .archiveToAccount {
                // The archive to restore from: a clean backup of the source.
                let path = directory.path + "/source.tar.gz"
                let state = try StateStore.inMemory()
                let writer = try ArchiveWriterStore(output: path, account: "source", sourceState: state)
                let report = try await SyncEngine(account: "source", state: state, far: { try await account.restoreStore() },
                                                  near: { writer }, options: SyncOptions(direction: .pull), logger: silentLogger).run()
                #expect(report.allErrors.isEmpty, "\(report.allErrors)")
                _ = try await writer.finish()
                chain = try ArchiveChain.open(paths: [path])
            } else {
                chain = nil
            }
        }
        #expect(expected.values.reduce(0) { $0 + $1.count } == Self.messageCount)
    }

    func newTarget(_ attempt: Int) async throws -> TransferTarget {
        switch transfer {
        case .accountToArchive:
            let directory = self.directory.path + "/attempt-\(attempt)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return .archive(try archiveWriter(in: directory), directory: directory)
        default:
            return .account(try await RestoreServers.shared.account(.sentOnly))
        }
    }

    func archiveWriter(in directory: String) throws -> ArchiveWriterStore {
        try ArchiveWriterStore(output: directory + "/" + Self.archiveName, account: "source")
    }

    /// One run of the transfer into `target`, with `faults` on one side.
    func run(into target: TransferTarget, state: StateStore, faults: TransferFaults,
             tracker: AppendTracker = AppendTracker()) async throws -> RunOutcome {
        var sourceFactory: StoreFactory
        switch transfer {
        case .archiveToAccount:
            let chain = self.chain!
            sourceFactory = { ArchiveReaderStore(chain: chain) }
        case .maildirToAccount:
            let root = maildirRoot!
            sourceFactory = { try MaildirMailStore(root: root, layout: .maildirPlusPlus, account: "target", logger: silentLogger) }
        case .accountToAccount, .accountToArchive:
            let source = self.source!
            sourceFactory = { try await source.restoreStore() }
        }
        var targetFactory: StoreFactory
        let mapping: MailboxMapping
        switch target {
        case .account(let account):
            // Short, so a stalled connection (see `sourceFailingMidMessage`) costs seconds, not minutes.
            targetFactory = { AppendTrackingStore(inner: try await account.restoreStore(commandTimeout: .seconds(8)), tracker: tracker) }
            mapping = transfer == .maildirToAccount ? MailboxMapping(nearDelimiter: "/") : try await targetRoleMapping(account)
        case .archive(let writer, _):
            targetFactory = { AppendTrackingStore(inner: writer, tracker: tracker) }
            mapping = MailboxMapping(nearDelimiter: "/")
        }
        switch faults {
        case .none:
            break
        case .target(let schedule):
            let inner = targetFactory
            targetFactory = { FaultInjectingStore(try await inner(), schedule: schedule) }
        case .source(let readFaults):
            let inner = sourceFactory
            sourceFactory = { ReadFaultStore(inner: try await inner(), faults: readFaults) }
        }
        let options: SyncOptions
        let engine: SyncEngine
        switch transfer {
        case .maildirToAccount:
            options = SyncOptions(direction: .push, expungePolicy: .keepLocal, maxConcurrentMailboxes: 4, mapping: mapping)
            engine = SyncEngine(account: "restore ← maildir", state: state, far: targetFactory, near: sourceFactory,
                                options: options, logger: silentLogger)
        case .archiveToAccount, .accountToAccount:
            options = SyncOptions(direction: .pull, expungePolicy: .keepLocal, maxConcurrentMailboxes: 4, mapping: mapping)
            engine = SyncEngine(account: "restore ← \(transfer.rawValue)", state: state, far: sourceFactory, near: targetFactory,
                                options: options, logger: silentLogger)
        case .accountToArchive:
            options = SyncOptions(direction: .pull, maxConcurrentMailboxes: 4, mapping: mapping)
            engine = SyncEngine(account: "source", state: state, far: sourceFactory, near: targetFactory,
                                options: options, logger: silentLogger)
        }
        return try #require(await runEngine(engine), "\(transfer) did not finish within its deadline (a hang)")
    }

    /// The target account holds every message exactly once, with the
    /// source's flags, keywords and dates.
    func expectComplete(_ account: ServerAccount, _ context: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        expectSameMail(try account.checkedTree(), expected, context, sourceLocation: sourceLocation)
        let dates = try account.checkedDates()
        for (folder, expected) in expectedDates where !expected.isEmpty {
            #expect(dates[folder] == expected, "\(context) INTERNALDATEs of \(folder)", sourceLocation: sourceLocation)
        }
    }
}

/// Issue 6's crash safety for restore and backup against real Dovecot: a
/// transfer interrupted at each of its steps in turn, then run again without
/// faults (restores with the same state database, backups as `ferrymail
/// backup` runs them: a fresh state and archive writer), ends with every
/// message exactly once on the target, flags converged.
@Suite("Restore and backup interrupted at every step against Dovecot")
struct InterruptedTransferTests {
    @Test("interrupted at step k, for every k, then rerun: every message exactly once, flags and dates converged",
          .timeLimit(.minutes(5)), arguments: Transfer.allCases, FaultSide.allCases)
    func interruptedAtEveryStep(transfer: Transfer, side: FaultSide) async throws {
        let fixture = try await TransferFixture(transfer)
        var interruptions = 0
        var step = 1
        while true {
            let context = "\(transfer) with the \(side) failing at step \(step):"
            let target = try await fixture.newTarget(step)
            let isBackup = transfer == .accountToArchive
            let state = isBackup ? try StateStore.inMemory() : try StateStore.open(at: fixture.directory.path + "/state-\(step).sqlite")
            defer { try? state.close() }
            let faults: TransferFaults = switch side {
            case .target: .target(FaultSchedule(crashAfter: step))
            case .source: .source(ReadFaults(failAt: step, midMessage: isBackup))
            }

            let tracker = AppendTracker()
            let interrupted = try await fixture.run(into: target, state: state, faults: faults, tracker: tracker)
            // Every append the engine began is finished or cancelled, else an
            // IMAP connection is left inside its APPEND literal.
            let leftOpen = await tracker.stillOpen
            #expect(leftOpen.isEmpty, "\(context) appends left open in \(leftOpen)")
            guard await faults.hit else {
                // The run had fewer steps than `step`: it completed; every step was tried.
                #expect(interrupted.succeeded, "\(context) \(interrupted.errors)")
                switch target {
                case .account(let account): try fixture.expectComplete(account, "\(context) (no fault hit)")
                case .archive(let writer, let directory): try await expectArchive(writer, in: directory, fixture: fixture, context)
                }
                break
            }
            interruptions += 1
            #expect(!interrupted.succeeded, "\(context) the fault did not surface in the report")

            switch target {
            case .account(let account):
                let resumed = try await fixture.run(into: target, state: state, faults: .none)
                #expect(resumed.succeeded, "\(context) rerun: \(resumed.errors)")
                try fixture.expectComplete(account, "\(context) after the rerun:")
                let quiet = try await fixture.run(into: target, state: state, faults: .none)
                #expect(quiet.succeeded && quiet.copiedToTarget == 0 && quiet.paired == 0 && quiet.flagChanges == 0,
                        "\(context) a run after the rerun changed something: copied \(quiet.copiedToTarget), paired \(quiet.paired), flags \(quiet.flagChanges), \(quiet.errors)")
            case .archive(let crashed, let directory):
                // As after kill -9: the crashed writer is neither finished nor
                // abandoned. Nothing at the archive's path; only temporary files.
                let entries = try FileManager.default.contentsOfDirectory(atPath: directory)
                #expect(!entries.contains(TransferFixture.archiveName), "\(context) a file at the archive's final path")
                #expect(!entries.isEmpty && entries.allSatisfy { $0.hasPrefix(TransferFixture.archiveName + ".partial-") },
                        "\(context) unexpected files: \(entries)")
                for entry in entries {
                    #expect(!ArchiveVerifier.verify(paths: [directory + "/" + entry]).isIntact, "\(context) \(entry) reads as a complete archive")
                }
                // The rerun: `ferrymail backup` again, to the same path, its leftovers still there.
                let writer = try fixture.archiveWriter(in: directory)
                let resumed = try await fixture.run(into: .archive(writer, directory: directory), state: try StateStore.inMemory(), faults: .none)
                #expect(resumed.succeeded, "\(context) rerun: \(resumed.errors)")
                try await expectArchive(writer, in: directory, fixture: fixture, "\(context) after the rerun:")
                withExtendedLifetime(crashed) {}
            }
            step += 1
            if step > 60 {
                Issue.record("\(transfer): more than 60 steps; the loop does not converge")
                break
            }
        }
        // Every message is at least one step on either side, so fewer
        // interruptions than messages means the faults were not injected.
        #expect(interruptions >= TransferFixture.messageCount, "\(transfer): only \(interruptions) interruption points on the \(side) side")
    }

    /// A `restore --maildir` whose source fails once, half-way through the
    /// first message of INBOX, one folder at a time (so the next folder gets
    /// the same target connection).
    @Test("a source failing mid-message stalls nothing and fails no other folder; the rerun completes exactly once",
          .timeLimit(.minutes(2)))
    func sourceFailingMidMessage() async throws {
        let target = try await RestoreServers.shared.account(.sentOnly)
        let imap = {
            var configuration = target.imap
            configuration.timeouts.command = .seconds(40)
            return configuration
        }()
        let directory = try TemporaryDirectory(prefix: "ferrymail-mid-message")
        let root = directory.path + "/Mail"
        try MaildirWriter.write(seedMessages(perFolder: ["INBOX": 3, "Sent": 2, "Lists/swift": 2]), root: root, encodesNames: false)
        let local = try MaildirChecker.read(root: URL(fileURLWithPath: root), encodesNames: false)
        let state = try StateStore.open(at: directory.path + "/state.sqlite")
        defer { try? state.close() }

        let tracker = AppendTracker()
        func restore(_ faults: ReadFaults?) async throws -> RunOutcome {
            let engine = SyncEngine(
                account: "restore ← maildir", state: state,
                far: {
                    let store = try await IMAPStore.open(configuration: imap, logger: silentLogger)
                    return AppendTrackingStore(inner: FilteredStore(store) { _ in true }, tracker: tracker)
                },
                near: {
                    let store = try MaildirMailStore(root: root, layout: .maildirPlusPlus, account: "target", logger: silentLogger)
                    guard let faults else { return store }
                    return ReadFaultStore(inner: store, faults: faults)
                },
                options: SyncOptions(direction: .push, expungePolicy: .keepLocal, maxConcurrentMailboxes: 1,
                                     mapping: MailboxMapping(nearDelimiter: "/")),
                logger: silentLogger)
            return try #require(await runEngine(engine, timeout: 60))
        }

        let start = ContinuousClock.now
        let interrupted = try await restore(ReadFaults(failAt: 1, transient: true, midMessage: true, onlyMessages: true))
        let elapsed = start.duration(to: .now)
        let report = try #require(interrupted.report, "\(interrupted.errors)")
        let failed = report.mailboxes.filter { $0.error != nil }
        #expect(!failed.isEmpty, "the source failure surfaces in the report")
        let leftOpen = await tracker.stillOpen
        #expect(leftOpen.isEmpty, "the cut-off append was never cancelled: \(leftOpen)")
        // A stall waits out the 40 s command timeout; the run itself takes
        // a few seconds, and took 23 s on a machine busy with a benchmark.
        #expect(elapsed < .seconds(35), "the run stalled \(elapsed) (the target's command timeout is 40 s)")
        #expect(failed.count == 1, "only the folder whose message was cut may fail: \(failed.map { "\($0.farName): \($0.error!)" })")

        let resumed = try await restore(nil)
        #expect(resumed.succeeded, "\(resumed.errors)")
        expectSameMail(try target.checkedTree(), local, "after the rerun:")
    }

    /// Finishes the archive and checks it with the verifier and its manifest.
    private func expectArchive(_ writer: ArchiveWriterStore, in directory: String, fixture: TransferFixture, _ context: String,
                               sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let summary = try await writer.finish()
        #expect(summary.messages == TransferFixture.messageCount, "\(context) \(summary.messages) messages in the archive",
                sourceLocation: sourceLocation)
        let verification = ArchiveVerifier.verify(paths: [directory + "/" + TransferFixture.archiveName])
        #expect(verification.isIntact, "\(context) \(verification.problems)", sourceLocation: sourceLocation)
        let manifest = try #require(verification.archives.first?.manifest, sourceLocation: sourceLocation)
        expectSameMail(manifestTree(manifest), fixture.expected, context, sourceLocation: sourceLocation)
        var dates: [String: [String: [Int64]]] = [:]
        for message in manifest.messages {
            dates[message.folder, default: [:]][message.sha256, default: []].append(message.internalDate ?? -1)
        }
        for (folder, expected) in fixture.expectedDates where !expected.isEmpty {
            #expect(dates[folder]?.mapValues { $0.sorted() } == expected, "\(context) dates of \(folder)", sourceLocation: sourceLocation)
        }
    }
}
