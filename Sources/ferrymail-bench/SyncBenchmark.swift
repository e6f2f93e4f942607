import Foundation
import TestSupport

/// `ferrymail-bench sync`: Ferrymail against mbsync (Debian `isync`) on the same
/// Dovecot, each on its own identically seeded user, in the same run:
/// initial sync, no-op re-sync, re-sync after server changes (200 flag changes,
/// 100 new, 50 expunges), re-sync after local changes (100 flag changes, 20
/// deletions). Wall time and peak RSS of each run come from wait4(2).
enum SyncBenchmark {
    struct Measurement {
        var seconds: Double
        var maxRSSMegabytes: Double
        var status: Int32
    }

    /// Runs a command to completion, output discarded unless it fails. Peak
    /// RSS comes from /usr/bin/time: a child spawned by this (large) process
    /// would report this process's RSS at spawn time in its own ru_maxrss.
    static func measure(_ command: [String], environment: [String: String] = [:]) throws -> Measurement {
        let rssFile = FileManager.default.temporaryDirectory.appendingPathComponent("ferrymail-bench-\(UUID()).rss").path
        defer { unlink(rssFile) }
        let timed = FileManager.default.isExecutableFile(atPath: "/usr/bin/time")
        let argv = timed ? ["/usr/bin/time", "-f", "%M", "-o", rssFile] + command : command
        var pid: pid_t = 0
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ferrymail-bench-\(UUID()).log").path
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        defer { unlink(log) }
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArgs + cEnv).forEach { free($0) } }
        let start = ContinuousClock.now
        let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, cEnv)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let elapsed = ContinuousClock.now - start
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        if exit != 0 {
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            print("  \(command[0]) exited \(exit):\n" + output.split(separator: "\n").suffix(15).joined(separator: "\n"))
        }
        let kilobytes = timed ? Double(((try? String(contentsOfFile: rssFile, encoding: .utf8)) ?? "")
            .split(separator: "\n").last.map(String.init) ?? "") ?? 0 : Double(usage.ru_maxrss)
        return Measurement(seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                           maxRSSMegabytes: kilobytes / 1024, status: exit)
    }

    /// `hold`: after the rounds, print the config and wait for a line on stdin
    /// before tearing down, so the seeded account can be profiled by hand.
    ///
    /// `listIndex`: Dovecot's own default (`mailbox_list_index = yes`, as
    /// Debian ships it), where STATUS of an unchanged mailbox other than INBOX
    /// is answered from the list index; `false` (`--no-list-index`) makes
    /// every STATUS open the mailbox's own index.
    ///
    /// `folders`: the messages spread evenly over INBOX and `folders - 1`
    /// others (`--folders`), for an account whose size is in its number of
    /// folders; nil keeps the default 60/30/10 split over three.
    static func run(ferrymail: String, messages count: Int, size: Int, hold: Bool = false, withMbsync: Bool = true,
                    listIndex: Bool = true, folders: Int? = nil) async throws {
        var options = DovecotServer.Options()
        options.notify = listIndex
        let server = try await DovecotServer.start(options)
        defer { server.stop() }
        let (alice, bob) = (server.users[0], server.users[1])
        print("sync: Dovecot with mailbox_list_index = \(listIndex ? "yes (its default)" : "no (--no-list-index)")")
        print("sync: seeding \(count) messages of ~\(size) bytes for two users (ferrymail: \(alice.name), mbsync: \(bob.name))")
        let perFolder: [(String, Int)]
        if let folders, folders > 0 {
            perFolder = (0..<folders).map { i in
                (i == 0 ? "INBOX" : "Folder-\(i)", count / folders + (i < count % folders ? 1 : 0))
            }
        } else {
            perFolder = [("INBOX", count * 6 / 10), ("Lists/swift-dev", count * 3 / 10), ("Archive", count - count * 6 / 10 - count * 3 / 10)]
        }
        // bob is mbsync's: not seeded when mbsync will not run.
        let mbsync = withMbsync && FileManager.default.isExecutableFile(atPath: "/usr/bin/mbsync")
        for user in mbsync ? [alice.name, bob.name] : [alice.name] {
            var index = 0
            for (folder, n) in perFolder where n > 0 {
                var batch: [[UInt8]] = []
                for i in 0..<n {
                    // 3% carry an attachment-sized body, like real accounts.
                    let messageSize = (index + i) % 33 == 0 ? size * 20 : size
                    batch.append(Corpus.message(index: index + i, size: messageSize, folder: folder))
                    if batch.count == 2_000 {
                        _ = try server.seedMaildir(user: user, mailbox: folder, messages: batch, flags: (index + i) % 2 == 0 ? ["\\Seen"] : [])
                        batch.removeAll()
                    }
                }
                if !batch.isEmpty { _ = try server.seedMaildir(user: user, mailbox: folder, messages: batch, flags: ["\\Seen"]) }
                index += n
            }
            // Dovecot indexes a seeded Maildir on first access: done before timing, as for both tools.
            _ = try server.doveadm(["mailbox", "status", "-u", user, "-t", "messages", "*"])
        }
        // The seeded files written back before timing, so that neither tool
        // waits for the seeding's writes (the first to run would).
        sync()
        let work = try TemporaryDirectory.create(prefix: "ferrymail-bench-sync").path
        defer { try? FileManager.default.removeItem(atPath: work) }
        let passwordFile = work + "/password"
        FileManager.default.createFile(atPath: passwordFile, contents: Data(alice.password.utf8), attributes: [.posixPermissions: 0o600])
        let config = work + "/config.toml"
        try """
            [general]
            state = "\(work)/state.sqlite"
            [[account]]
            name = "bench"
            host = "\(server.host)"
            port = \(server.plainPort)
            security = "plain"
            allow_insecure_auth = true
            compress = false
            user = "\(alice.name)"
            password_file = "\(passwordFile)"
            maildir = "\(work)/ferrymail-mail"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let mbsyncMail = work + "/mbsync-mail"
        try FileManager.default.createDirectory(atPath: mbsyncMail, withIntermediateDirectories: true)
        let mbsyncrc = work + "/mbsyncrc"
        try """
            IMAPAccount bench
            Host \(server.host)
            Port \(server.plainPort)
            User \(bob.name)
            Pass \(bob.password)
            SSLType None
            AuthMechs PLAIN

            IMAPStore remote
            Account bench

            MaildirStore local
            Path \(mbsyncMail)/
            Inbox \(mbsyncMail)/INBOX
            SubFolders Verbatim

            Channel bench
            Far :remote:
            Near :local:
            Patterns *
            Create Both
            Expunge Both
            SyncState *

            """.write(toFile: mbsyncrc, atomically: true, encoding: .utf8)
        if !mbsync { print(withMbsync ? "sync: mbsync not installed (apt-get install isync): measuring Ferrymail only" : "sync: --no-mbsync: measuring Ferrymail only") }

        /// One round of both tools; with `repeats`, each tool runs that many
        /// times, alternating, and the median time is shown: a single no-op
        /// of 0.1 s varies by more than itself on a shared machine. Each run
        /// starts two seconds after the previous one ended, when Dovecot has
        /// written back the indexes of the last session (60,000 messages for
        /// INBOX) instead of doing it on the next run's two cores.
        func round(_ name: String, repeats: Int = 1) throws {
            var ours: [Measurement] = [], theirs: [Measurement] = []
            func settled(_ command: [String]) throws -> Measurement {
                Thread.sleep(forTimeInterval: 2)
                return try measure(command)
            }
            for _ in 0..<repeats {
                ours.append(try settled([ferrymail, "sync", "--config", config]))
                if mbsync { theirs.append(try settled(["/usr/bin/mbsync", "-c", mbsyncrc, "-a", "-q"])) }
            }
            func median(_ runs: [Measurement]) -> Measurement { runs.sorted { $0.seconds < $1.seconds }[runs.count / 2] }
            let label = repeats > 1 ? "\(name), median of \(repeats)" : name
            let mine = median(ours)
            var line = "sync " + label.padding(toLength: 33, withPad: " ", startingAt: 0)
                + String(format: " ferrymail %6.2f s %5.1f MB", mine.seconds, ours.map(\.maxRSSMegabytes).max() ?? 0)
            if mbsync {
                let other = median(theirs)
                line += String(format: " | mbsync %6.2f s %5.1f MB | ×%.1f", other.seconds, theirs.map(\.maxRSSMegabytes).max() ?? 0,
                               other.seconds / max(mine.seconds, 0.0001))
            }
            print(line)
        }

        try round("initial")
        try round("no-op")
        // Server changes, identical for both users: 200 flag changes, 100 new, 50 expunges in INBOX.
        for user in mbsync ? [alice.name, bob.name] : [alice.name] {
            _ = try server.doveadm(["flags", "add", "-u", user, "\\Flagged", "mailbox", "INBOX", "uid", "1:200"])
            var batch: [[UInt8]] = []
            for i in 0..<100 { batch.append(Corpus.message(index: 1_000_000 + i, size: size)) }
            for message in batch { _ = try server.saveMessage(user: user, mailbox: "INBOX", bytes: message) }
            _ = try server.doveadm(["expunge", "-u", user, "mailbox", "INBOX", "uid", "201:250"])
        }
        try round("after server changes")
        // Local changes: 100 flag changes (add S or F by renaming) and 20 deletions in INBOX.
        for root in ["\(work)/ferrymail-mail/cur"] + (mbsync ? ["\(mbsyncMail)/INBOX/cur"] : []) {
            let files = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
            for file in files.prefix(100) {
                let renamed = file.contains(":2,") && !file.hasSuffix("T") ? file + "T" : file
                try FileManager.default.moveItem(atPath: root + "/" + file, toPath: root + "/" + renamed)
            }
            for file in files.dropFirst(100).prefix(20) { try FileManager.default.removeItem(atPath: root + "/" + file) }
        }
        try round("after local changes")
        // The first no-op after a run that changed a folder rescans it once (its
        // scan token was taken while the directory was still settling); the
        // second one shows the steady state, where unchanged folders are skipped.
        try round("no-op")
        try round("no-op, steady state", repeats: 5)
        if hold {
            print("sync: holding; config \(config), mbsyncrc \(mbsyncrc). Press Enter to tear down.")
            _ = readLine()
        }
    }
}
