import Foundation
import TestSupport

/// `ferrymail-bench restore`: the figures issue 6 asks for, end to end with
/// the real `ferrymail` binary against a private Dovecot, in one run:
///
/// - backup throughput (MB/s of mail), archive size, compression ratio and
///   peak RSS, once with bodies read from the synced Maildir mirror and once
///   downloading everything (an account entry for the same user with an
///   empty mirror);
/// - `verify-archive` time;
/// - restore of that archive into an empty account (messages/s, MB/s, peak
///   RSS) and the no-op second run;
/// - `restore --maildir` of the synced Maildir into another empty account, and
///   OfflineIMAP (Debian `offlineimap3`) pushing the same Maildir files into a
///   third empty account: the like-for-like comparison.
///
/// Every target's message count is checked against the source with doveadm.
/// Wall time and peak RSS come from `SyncBenchmark.measure` (/usr/bin/time).
enum RestoreBenchmark {
    /// Users of the private Dovecot: the seeded source and three empty targets.
    static let source = DovecotServer.Account.alice
    static let archiveTarget = DovecotServer.Account.bob
    static let offlineIMAPTarget = DovecotServer.Account(name: "carol", password: "carol-Secret-3")
    static let maildirTarget = DovecotServer.Account(name: "dave", password: "dave-Secret-4")

    static func run(ferrymail: String, messages count: Int, size: Int, level: Int) async throws {
        // Line-buffered even into a pipe or file, so progress of a long run shows.
        lineBufferStandardOutput()
        guard FileManager.default.isExecutableFile(atPath: ferrymail) else {
            print("restore: no ferrymail binary at \(ferrymail) (build it, or pass --ferrymail PATH)")
            exit(2)
        }
        let server = try await DovecotServer.start(
            .init(users: [source, archiveTarget, offlineIMAPTarget, maildirTarget]))
        defer { server.stop() }
        let work = try TemporaryDirectory.create(prefix: "ferrymail-bench-restore").path
        defer { try? FileManager.default.removeItem(atPath: work) }

        // 1. Seed the source like `SyncBenchmark`: three folders, 3% attachment-sized.
        let perFolder = [("INBOX", count * 6 / 10), ("Lists/swift-dev", count * 3 / 10), ("Archive", count - count * 6 / 10 - count * 3 / 10)]
        var sourceBytes = 0
        var index = 0
        let seedStart = ContinuousClock.now
        for (folder, n) in perFolder where n > 0 {
            var batch: [[UInt8]] = []
            for i in 0..<n {
                let messageSize = (index + i) % 33 == 0 ? size * 20 : size
                batch.append(Corpus.message(index: index + i, size: messageSize, folder: folder))
                sourceBytes += batch.last!.count
                if batch.count == 2_000 {
                    _ = try server.seedMaildir(user: source.name, mailbox: folder, messages: batch, flags: (index + i) % 2 == 0 ? ["\\Seen"] : [])
                    batch.removeAll()
                }
            }
            if !batch.isEmpty { _ = try server.seedMaildir(user: source.name, mailbox: folder, messages: batch, flags: ["\\Seen"]) }
            index += n
        }
        // Dovecot indexes a seeded Maildir on first access: done before any timing.
        _ = try server.doveadm(["mailbox", "status", "-u", source.name, "-t", "messages", "*"])
        let megabytes = Double(sourceBytes) / 1e6
        print(String(format: "restore: seeded %d messages, %.1f MB (~%d bytes each, 3%% × 20) in %.1f s", count, megabytes, size,
                     (ContinuousClock.now - seedStart).benchSeconds)
              + "; source \(source.name), targets \(archiveTarget.name) (restore --archive), \(maildirTarget.name) (restore --maildir), "
              + "\(offlineIMAPTarget.name) (OfflineIMAP)")

        // Configuration: the source twice (with and without a Maildir mirror) and two targets.
        var accounts = ""
        func account(_ name: String, _ user: DovecotServer.Account, maildir: String) throws {
            let passwordFile = "\(work)/password-\(user.name)"
            if !FileManager.default.fileExists(atPath: passwordFile) {
                _ = FileManager.default.createFile(atPath: passwordFile, contents: Data(user.password.utf8), attributes: [.posixPermissions: 0o600])
            }
            accounts += """

                [[account]]
                name = "\(name)"
                host = "\(server.host)"
                port = \(server.plainPort)
                security = "plain"
                allow_insecure_auth = true
                compress = false
                user = "\(user.name)"
                password_file = "\(passwordFile)"
                maildir = "\(maildir)"

                """
        }
        let mirror = "\(work)/mirror"
        try account("source", source, maildir: mirror)
        try account("source-download", source, maildir: "\(work)/no-mirror")
        try account("restored", archiveTarget, maildir: "\(work)/unused-\(archiveTarget.name)")
        try account("restored-maildir", maildirTarget, maildir: "\(work)/unused-\(maildirTarget.name)")
        let config = "\(work)/config.toml"
        try ("[general]\nstate = \"\(work)/state.sqlite\"\n" + accounts).write(toFile: config, atomically: true, encoding: .utf8)

        // 2. Initial sync into the Maildir mirror (what backup reads and the Maildir pushes upload).
        let sync = try timed([ferrymail, "sync", "--config", config, "--account", "source"], in: work)
        report("ferrymail sync (initial, to Maildir)", sync, bytes: sourceBytes, messages: count)
        guard sync.measurement.status == 0 else { return }
        print("    Maildir mirror: \(try countMaildirFiles(mirror)) message files")

        // 3. Backups: bodies from the mirror, then all downloaded.
        let archive = "\(work)/backup.tar.gz"
        let backup = try timed([ferrymail, "backup", "--config", config, "--account", "source", "--output", archive, "--level", String(level)], in: work)
        let archiveBytes = fileSize(archive)
        report("ferrymail backup (Maildir mirror)", backup, bytes: sourceBytes, messages: count,
               extra: String(format: "archive %.1f MB, ratio %.2f× (level %d)", Double(archiveBytes) / 1e6,
                             Double(sourceBytes) / Double(max(archiveBytes, 1)), level))
        echo(backup.output, matching: ["bodies:", "MB of mail"])
        guard backup.measurement.status == 0 else { return }

        let downloadArchive = "\(work)/backup-download.tar.gz"
        let download = try timed([ferrymail, "backup", "--config", config, "--account", "source-download", "--output", downloadArchive,
                                  "--level", String(level)], in: work)
        let downloadBytes = fileSize(downloadArchive)
        report("ferrymail backup (download)", download, bytes: sourceBytes, messages: count,
               extra: String(format: "archive %.1f MB, ratio %.2f×", Double(downloadBytes) / 1e6,
                             Double(sourceBytes) / Double(max(downloadBytes, 1))))
        echo(download.output, matching: ["bodies:", "MB of mail"])
        try? FileManager.default.removeItem(atPath: downloadArchive)

        // 4. Verify the archive.
        let verify = try timed([ferrymail, "verify-archive", archive], in: work)
        report("ferrymail verify-archive", verify, bytes: sourceBytes, messages: count,
               extra: String(format: "reads %.1f MB compressed", Double(archiveBytes) / 1e6))
        echo(verify.output, matching: ["intact", "damaged"])

        // 5. Restore the archive into an empty account, then the no-op second run.
        let restore = try timed([ferrymail, "restore", "--config", config, "--to-account", "restored", "--archive", archive], in: work)
        report("ferrymail restore --archive", restore, bytes: sourceBytes, messages: count)
        echo(restore.output, matching: ["uploaded", "failed"])
        let again = try timed([ferrymail, "restore", "--config", config, "--to-account", "restored", "--archive", archive], in: work)
        report("ferrymail restore --archive (no-op)", again, bytes: nil, messages: nil)
        echo(again.output, matching: ["uploaded", "failed"])

        // 6a. Ferrymail pushing the synced Maildir: what OfflineIMAP does below.
        let push = try timed([ferrymail, "restore", "--config", config, "--to-account", "restored-maildir", "--maildir", mirror], in: work)
        report("ferrymail restore --maildir", push, bytes: sourceBytes, messages: count)
        echo(push.output, matching: ["uploaded", "failed"])

        // 6b. OfflineIMAP pushing the same message files into an empty account.
        var targets = [archiveTarget, maildirTarget]
        if let offlineimap = ["/usr/bin/offlineimap", "/usr/local/bin/offlineimap"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            targets.append(offlineIMAPTarget)
            let rc = try offlineIMAPSetup(work: work, mirror: mirror, server: server)
            let theirs = try timed([offlineimap, "-c", rc, "-o", "-u", "quiet"], in: work)
            report("offlineimap push (maxconnections 1)", theirs, bytes: sourceBytes, messages: count)
            echo(theirs.output, matching: ["ERROR", "Error", "WARNING"], limit: 5)
            print("    \(offlineIMAPTarget.name) now holds \(try folderCounts(server, user: offlineIMAPTarget.name).values.reduce(0, +)) messages")
            let noop = try timed([offlineimap, "-c", rc, "-o", "-u", "quiet"], in: work)
            report("offlineimap (no-op)", noop, bytes: nil, messages: nil)
            echo(noop.output, matching: ["ERROR", "Error", "WARNING"], limit: 5)
            print("    \(offlineIMAPTarget.name) now holds \(try folderCounts(server, user: offlineIMAPTarget.name).values.reduce(0, +)) messages")
        } else {
            print("restore: offlineimap not installed (apt-get install offlineimap3): skipped")
        }

        // Counts on the server, per folder, against the source.
        let expected = try folderCounts(server, user: source.name)
        print("restore: source \(source.name): \(describe(expected))")
        for user in targets {
            let counts = try folderCounts(server, user: user.name)
            let verdict = counts == expected ? "= source" : "DIFFERS from source"
            print("restore: target \(user.name): \(describe(counts)) \(verdict)")
        }
    }

    /// `setvbuf(stdout, nil, _IOLBF, 0)`. Swift 6 refuses to name glibc's
    /// `stdout` (a mutable C global), so it is looked up by symbol.
    static func lineBufferStandardOutput() {
        guard let symbol = dlsym(nil, "stdout") else { return }
        setvbuf(symbol.assumingMemoryBound(to: UnsafeMutablePointer<FILE>?.self).pointee, nil, _IOLBF, 0)
    }

    struct Timed {
        var measurement: SyncBenchmark.Measurement
        /// The command's combined stdout and stderr.
        var output: String
    }

    /// Runs `command` under `SyncBenchmark.measure`, keeping its output: a
    /// shell runs it with output to a file and prints that file afterwards, so
    /// on failure `measure` shows its tail. /usr/bin/time reports the largest
    /// RSS of the shell and its children (the shell's own is ~1 MB).
    static func timed(_ command: [String], in work: String) throws -> Timed {
        let out = "\(work)/output-\(UUID()).log"
        defer { unlink(out) }
        let script = "out=$1; shift; \"$@\" >\"$out\" 2>&1; rc=$?; cat \"$out\"; exit $rc"
        let measurement = try SyncBenchmark.measure(["/bin/sh", "-c", script, "sh", out] + command)
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        return Timed(measurement: measurement, output: output)
    }

    /// One line per step: seconds, MB/s, messages/s, peak RSS.
    static func report(_ name: String, _ run: Timed, bytes: Int?, messages: Int?, extra: String = "") {
        let m = run.measurement
        var line = "restore: " + name.padding(toLength: 38, withPad: " ", startingAt: 0)
            + String(format: " %7.2f s", m.seconds)
        if let bytes { line += String(format: " %7.1f MB/s", Double(bytes) / 1e6 / max(m.seconds, 0.0001)) }
        if let messages { line += String(format: " %7.0f msgs/s", Double(messages) / max(m.seconds, 0.0001)) }
        line += String(format: " | peak RSS %6.1f MB", m.maxRSSMegabytes)
        if !extra.isEmpty { line += " | " + extra }
        if m.status != 0 { line += " | FAILED (exit \(m.status))" }
        print(line)
    }

    /// Prints the output lines containing any of `needles`, indented.
    static func echo(_ output: String, matching needles: [String], limit: Int = 10) {
        let lines = output.split(separator: "\n").filter { line in needles.contains { line.contains($0) } }
        for line in lines.prefix(limit) { print("    " + line.trimmingCharacters(in: .whitespaces)) }
        if lines.count > limit { print("    … \(lines.count - limit) more") }
    }

    /// A minimal offlineimaprc pushing a hard-linked copy of the mirror.
    ///
    /// OfflineIMAP cannot use a Maildir++ tree whose root is INBOX (it would
    /// see a folder named ""), and it renames every uploaded file to record
    /// the server's UID. So it gets its own tree in the layout it expects
    /// (`INBOX/`, `Lists/swift-dev/`, `sep = /`) of hard links to the very same
    /// message files, set up untimed; the mirror itself stays untouched.
    /// Every parent folder (`Lists`) is an empty Maildir of its own.
    static func offlineIMAPSetup(work: String, mirror: String, server: DovecotServer) throws -> String {
        let local = "\(work)/offlineimap-mail"
        let fm = FileManager.default
        for entry in try fm.contentsOfDirectory(atPath: mirror) where entry == "cur" || entry.hasPrefix(".") {
            let (from, folder): (String, String)
            if entry == "cur" {
                (from, folder) = (mirror, "INBOX")
            } else {
                guard fm.fileExists(atPath: "\(mirror)/\(entry)/cur") else { continue }
                (from, folder) = ("\(mirror)/\(entry)", entry.dropFirst().replacingOccurrences(of: ".", with: "/"))
            }
            // Parents are folders too: OfflineIMAP creates "Lists" on the server
            // for "Lists/swift-dev", then fails the run on finding no local "Lists".
            let components = folder.split(separator: "/")
            for depth in 1..<max(components.count, 1) {
                for sub in ["cur", "new", "tmp"] {
                    try fm.createDirectory(atPath: "\(local)/\(components.prefix(depth).joined(separator: "/"))/\(sub)",
                                           withIntermediateDirectories: true)
                }
            }
            for sub in ["cur", "new", "tmp"] {
                let to = "\(local)/\(folder)/\(sub)"
                try fm.createDirectory(atPath: to, withIntermediateDirectories: true)
                guard sub != "tmp", let files = try? fm.contentsOfDirectory(atPath: "\(from)/\(sub)") else { continue }
                for file in files where !file.hasPrefix(".") {
                    guard link("\(from)/\(sub)/\(file)", "\(to)/\(file)") == 0 else {
                        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                    }
                }
            }
        }
        let rc = "\(work)/offlineimaprc"
        try """
            [general]
            accounts = bench
            metadata = \(work)/offlineimap-metadata
            maxsyncaccounts = 1

            [Account bench]
            localrepository = local
            remoterepository = remote

            [Repository local]
            type = Maildir
            localfolders = \(local)
            sep = /

            [Repository remote]
            type = IMAP
            remotehost = \(server.host)
            remoteport = \(server.plainPort)
            remoteuser = \(offlineIMAPTarget.name)
            remotepass = \(offlineIMAPTarget.password)
            ssl = no
            starttls = no
            auth_mechanisms = PLAIN
            usecompression = no
            maxconnections = 1
            createfolders = True

            """.write(toFile: rc, atomically: true, encoding: .utf8)
        chmod(rc, 0o600)
        return rc
    }

    /// Messages per folder from `doveadm mailbox status` (folders with none left out).
    static func folderCounts(_ server: DovecotServer, user: String) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in try server.doveadm(["mailbox", "status", "-u", user, "messages", "*"]).split(separator: "\n") {
            guard let range = line.range(of: " messages=", options: .backwards), let n = Int(line[range.upperBound...]), n > 0 else { continue }
            counts[String(line[..<range.lowerBound])] = n
        }
        return counts
    }

    static func describe(_ counts: [String: Int]) -> String {
        "\(counts.values.reduce(0, +)) messages (" + counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"
    }

    static func countMaildirFiles(_ root: String) throws -> Int {
        var total = 0
        let fm = FileManager.default
        for folder in [root] + (try fm.contentsOfDirectory(atPath: root)).filter({ $0.hasPrefix(".") }).map({ "\(root)/\($0)" }) {
            for sub in ["cur", "new"] {
                total += ((try? fm.contentsOfDirectory(atPath: "\(folder)/\(sub)")) ?? []).count
            }
        }
        return total
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }
}

extension Duration {
    fileprivate var benchSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
