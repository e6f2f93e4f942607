import Archive
import Foundation
import Synchronization
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The real `ferrymail restore` and `ferrymail backup` executables, killed
/// with SIGKILL part-way through and run again, against the fixture Dovecot.
@Suite("ferrymail restore and backup killed part-way", .serialized)
struct RestoreProcessTests {
    static let messages = 300
    static let size = 20_000

    /// The `ferrymail` binary built next to the test bundle.
    static var binary: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ferrymail").path
    }

    /// 300 × 20 KB in three folders, written straight into the account's Maildir.
    static func seed(_ account: ServerAccount) throws {
        let server = account.server, user = account.user.name
        try server.seedMaildir(user: user, mailbox: "INBOX", messages: Corpus.messages(count: 150, size: size), flags: ["\\Seen"])
        try server.seedMaildir(user: user, mailbox: "Lists/swift",
                               messages: Corpus.messages(count: 100, size: size, folder: "Lists/swift"))
        try server.seedMaildir(user: user, mailbox: "Sent", messages: Corpus.messages(count: 50, size: size, folder: "Sent"),
                               flags: ["\\Seen", "\\Answered"])
    }

    /// A configuration naming `accounts` (config name → server account).
    static func writeConfiguration(_ accounts: [(String, ServerAccount)], in directory: String) throws -> String {
        var text = """
            [general]
            state = "\(directory)/state/state.sqlite"
            connections_per_account = 2
            log_level = "warning"

            """
        for (name, account) in accounts {
            let secret = "\(directory)/\(name).pass"
            try Data((account.user.password + "\n").utf8).write(to: URL(fileURLWithPath: secret))
            chmod(secret, 0o600)
            text += """

                [[account]]
                name = "\(name)"
                host = "\(account.server.host)"
                port = \(account.server.plainPort)
                security = "plain"
                allow_insecure_auth = true
                compress = false
                user = "\(account.user.name)"
                password_file = "\(secret)"
                maildir = "\(directory)/Mail/\(name)"

                """
        }
        let path = directory + "/config.toml"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        return path
    }

    // MARK: - restore --from-account

    @Test("ferrymail restore --from-account killed part-way, rerun: every message exactly once; the next run uploads nothing",
          .timeLimit(.minutes(5)))
    func restoreKilledPartWay() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the ferrymail product first (\(Self.binary))")
        let source = try await RestoreServers.shared.account()
        try await offloadBlocking { try Self.seed(source) }
        let expected = try source.checkedTree()
        #expect(expected.values.reduce(0) { $0 + $1.count } == Self.messages)

        // Kill once the target holds some messages; if the run was already
        // over by then, try again sooner on a fresh target.
        var landed: (target: ServerAccount, directory: TemporaryDirectory, config: String, present: Int)?
        for threshold in [60, 1, 1] {
            let target = try await RestoreServers.shared.account()
            let directory = try TemporaryDirectory(prefix: "ferrymail-restore-kill")
            let config = try Self.writeConfiguration([("source", source), ("target", target)], in: directory.path)
            let root = target.user.maildirRoot
            let run = try ChildProcess(Self.binary, Self.restoreFromSource(config),
                                       outputIn: directory.path)
            let killed = try await run.kill(when: { maildirMessageCount(root) >= threshold }, timeout: .seconds(120))
            // Let Dovecot finish an APPEND whose literal had fully arrived.
            try await Task.sleep(for: .milliseconds(500))
            let present = maildirMessageCount(root)
            if killed && present < Self.messages {
                landed = (target, directory, config, present)
                break
            }
            let outcome = killed ? "was killed only after all \(present) messages had arrived" : "finished before the kill: \(run.output)"
            print("restore kill attempt with threshold \(threshold): the run \(outcome); trying again sooner")
        }
        let (target, directory, config, present) = try #require(landed, "three restores all completed before SIGKILL could land part-way")
        #expect(present > 0 && present < Self.messages)

        // Rerun to completion: only the missing messages are uploaded.
        let resumed = try ChildProcess(Self.binary, Self.restoreFromSource(config),
                                       outputIn: directory.path)
        let status = try await resumed.wait(timeout: .seconds(180))
        #expect(status == 0, "rerun exit status \(String(describing: status)): \(resumed.output)")
        let uploaded = try #require(Self.uploaded(in: resumed.output), "no upload count in: \(resumed.output)")
        #expect(uploaded == Self.messages - present, "\(present) were on the target at the kill, the rerun uploaded \(uploaded)")
        expectSameMail(try target.checkedTree(), expected, "after the rerun:")

        let again = try ChildProcess(Self.binary, Self.restoreFromSource(config),
                                     outputIn: directory.path)
        #expect(try await again.wait(timeout: .seconds(120)) == 0, "\(again.output)")
        #expect(Self.uploaded(in: again.output) == 0, "a second rerun uploaded messages: \(again.output)")
        #expect(maildirMessageCount(target.user.maildirRoot) == Self.messages)
    }

    /// `ferrymail restore` of account "source" onto account "target".
    static func restoreFromSource(_ config: String) -> [String] {
        ["restore", "--config", config, "--to-account", "target", "--from-account", "source"]
    }

    /// "uploaded N messages" from the restore report.
    static func uploaded(in output: String) -> Int? {
        guard let range = output.range(of: #"uploaded (\d+) messages"#, options: .regularExpression) else { return nil }
        return Int(output[range].split(separator: " ")[1])
    }

    // MARK: - backup

    @Test("ferrymail backup killed part-way leaves no archive at its path, only a temporary file; the rerun writes a verified archive",
          .timeLimit(.minutes(5)))
    func backupKilledPartWay() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the ferrymail product first (\(Self.binary))")
        let source = try await RestoreServers.shared.account()
        try await offloadBlocking { try Self.seed(source) }
        let expected = try source.checkedTree()
        let directory = try TemporaryDirectory(prefix: "ferrymail-backup-kill")
        let config = try Self.writeConfiguration([("source", source)], in: directory.path)

        var landed: String?
        for (attempt, threshold) in [64 * 1024, 1, 1].enumerated() {
            let out = directory.path + "/out-\(attempt)"
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let output = out + "/backup.tar.gz"
            let run = try ChildProcess(Self.binary, ["backup", "--config", config, "--account", "source", "--output", output, "--level", "9"],
                                       outputIn: directory.path)
            let killed = try await run.kill(when: { Self.partialSize(in: out) >= threshold }, timeout: .seconds(120))
            if killed && !FileManager.default.fileExists(atPath: output) {
                landed = out
                break
            }
            print("backup kill attempt \(attempt): the backup completed before the kill; trying again sooner")
        }
        let out = try #require(landed, "three backups all completed before SIGKILL could land part-way")
        let output = out + "/backup.tar.gz"

        // Only the temporary file is there, and it does not read as an archive.
        let entries = try FileManager.default.contentsOfDirectory(atPath: out)
        #expect(!entries.contains("backup.tar.gz"))
        #expect(!entries.isEmpty && entries.allSatisfy { $0.hasPrefix("backup.tar.gz.partial-") }, "\(entries)")
        for entry in entries {
            #expect(!ArchiveVerifier.verify(paths: [out + "/" + entry]).isIntact, "\(entry) reads as a complete archive")
        }

        let rerun = try ChildProcess(Self.binary, ["backup", "--config", config, "--account", "source", "--output", output],
                                     outputIn: directory.path)
        #expect(try await rerun.wait(timeout: .seconds(180)) == 0, "\(rerun.output)")
        let verification = ArchiveVerifier.verify(paths: [output])
        #expect(verification.isIntact, "\(verification.problems)")
        let manifest = try #require(verification.archives.first?.manifest)
        #expect(manifest.messages.count == Self.messages)
        expectSameMail(manifestTree(manifest), expected, "the archive of the rerun:")

        let verify = try ChildProcess(Self.binary, ["verify-archive", output], outputIn: directory.path)
        #expect(try await verify.wait(timeout: .seconds(60)) == 0, "\(verify.output)")
    }

    // MARK: - sync --folder

    @Test("ferrymail sync --folder syncs that folder only; a --folder matching no folder exits 2", .timeLimit(.minutes(2)))
    func syncFolderLimitsTheRun() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the ferrymail product first (\(Self.binary))")
        let account = try await RestoreServers.shared.account(.sentOnly)
        try await offloadBlocking {
            try account.server.seedMaildir(user: account.user.name, mailbox: "INBOX", messages: Corpus.messages(count: 3, size: 2_000))
            try account.server.seedMaildir(user: account.user.name, mailbox: "Lists/swift",
                                           messages: Corpus.messages(count: 2, size: 2_000, folder: "Lists/swift"))
        }
        let directory = try TemporaryDirectory(prefix: "ferrymail-sync-folder")
        let config = try Self.writeConfiguration([("work", account)], in: directory.path)
        let local = directory.path + "/Mail/work"

        let run = try ChildProcess(Self.binary, ["sync", "--config", config, "--folder", "Lists/swift"], outputIn: directory.path)
        #expect(try await run.wait(timeout: .seconds(60)) == 0, "\(run.output)")
        #expect(run.output.contains("new ↓2 ↑0") && run.output.contains("; 1 folders"), "\(run.output)")
        #expect(maildirMessageCount(URL(fileURLWithPath: local)) == 2, "only Lists/swift was downloaded")
        let folders = ((try? FileManager.default.contentsOfDirectory(atPath: local)) ?? []).filter { $0.hasPrefix(".") }
        #expect(folders == [".Lists.swift"], "no other local folder was created: \(folders)")

        let typo = try ChildProcess(Self.binary, ["sync", "--config", config, "--folder", "Lists/swfit"], outputIn: directory.path)
        #expect(try await typo.wait(timeout: .seconds(60)) == 2, "\(typo.output)")
        #expect(typo.output.contains("account work") && typo.output.contains("\"Lists/swfit\""), "\(typo.output)")
    }

    /// Size of the largest `*.partial-*` file in `directory`.
    static func partialSize(in directory: String) -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return entries.filter { $0.contains(".partial-") }.map { entry -> Int in
            var st = stat()
            return stat(directory + "/" + entry, &st) == 0 ? Int(st.st_size) : 0
        }.max() ?? 0
    }
}

/// A `ferrymail` child process with stdout and stderr in one file.
final class ChildProcess: Sendable {
    let pid: pid_t
    let outputPath: String
    private let reaped = Mutex<Int32?>(nil)

    init(_ binary: String, _ arguments: [String], outputIn directory: String) throws {
        outputPath = directory + "/output-\(UUID().uuidString.prefix(8)).txt"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([binary] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, binary, &actions, nil, argv, environ)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        self.pid = pid
    }

    deinit {
        // Never leave a child behind a failed expectation.
        if reaped.withLock({ $0 }) == nil {
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }

    var output: String {
        (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    }

    /// Exit code (128 + signal when killed), once the child has ended.
    private func poll() -> Int32? {
        if let status = reaped.withLock({ $0 }) { return status }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        reaped.withLock { $0 = code }
        return code
    }

    /// Waits for the exit; nil at the deadline.
    func wait(timeout: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let code = poll() { return code }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// SIGKILLs the child as soon as `condition` holds (checked every few
    /// milliseconds). Returns whether the child died of the SIGKILL: false
    /// when it ended on its own first.
    func kill(when condition: @escaping @Sendable () -> Bool, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if poll() != nil { return false }
            if condition() {
                Glibc.kill(pid, SIGKILL)
                return try await wait(timeout: .seconds(10)) == 128 + SIGKILL
            }
            try await Task.sleep(for: .milliseconds(3))
        }
        Issue.record("the child neither ended nor reached the kill point within \(timeout)")
        return false
    }
}
