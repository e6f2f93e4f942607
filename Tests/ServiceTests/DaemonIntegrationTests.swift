import Foundation
import Logging
@testable import Service
import SyncState
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Log level for daemon tests: `FERRYMAIL_TEST_LOG=debug swift test …` to watch.
let testLogger: Logger = {
    let level = ProcessInfo.processInfo.environment["FERRYMAIL_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
    return Logger(label: "ferrymail.test") { JournalLogHandler(label: $0, format: .plain, level: level) }
}()

/// A private Dovecot plus a scratch directory holding configuration files,
/// secrets, the state DB and the local Maildirs.
final class DaemonFixture: Sendable {
    let server: DovecotServer
    let directory: TemporaryDirectory

    init(_ options: DovecotServer.Options) async throws {
        server = try await DovecotServer.start(options)
        directory = try TemporaryDirectory(prefix: "ferrymail-daemon")
    }

    deinit { directory.remove() }

    func maildir(_ user: String) -> String { directory.path + "/Mail/" + user }

    /// Writes `config.toml` for `users` (test server passwords in 0600 files).
    @discardableResult
    func writeConfiguration(users: [String], name: String = "config.toml", backoffMax: String = "2s") throws -> String {
        var text = """
        [general]
        state = "\(directory.path)/state/state.sqlite"
        connections_per_account = 2
        log_level = "info"
        poll_interval = "5m"
        full_reconcile_interval = "1h"
        backoff_max = "\(backoffMax)"

        """
        for user in users {
            let account = try server.testUser(named: user)
            let secretPath = directory.path + "/\(user).pass"
            try Data((account.password + "\n").utf8).write(to: URL(fileURLWithPath: secretPath))
            chmod(secretPath, 0o600)
            text += """

            [[account]]
            name = "\(user)"
            host = "\(server.host)"
            port = \(server.plainPort)
            security = "plain"
            allow_insecure_auth = true
            compress = false
            user = "\(user)"
            password_file = "\(secretPath)"
            maildir = "\(maildir(user))"

            """
        }
        let path = directory.path + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        return path
    }

    func serverCount(_ user: String, _ query: String = "ALL") async throws -> Int {
        let server = self.server
        let output = try await offloadBlocking { try server.doveadm(["search", "-u", user, "mailbox", "INBOX", query]) }
        return output.split(separator: "\n").count
    }

    /// Writes a message straight into the local Maildir, as a mail reader would.
    func deliverLocally(_ user: String, index: Int) throws -> String {
        let name = "\(Int(Date().timeIntervalSince1970)).M\(UInt32.random(in: 0...UInt32.max))P\(getpid()).test:2,"
        let tmp = maildir(user) + "/tmp/" + name
        try Data(Corpus.message(index: index, size: 800)).write(to: URL(fileURLWithPath: tmp))
        let final = maildir(user) + "/cur/" + name
        guard rename(tmp, final) == 0 else { throw POSIXError(.init(rawValue: errno)!) }
        return final
    }

    /// The Message-IDs of the local INBOX, to check for duplicates.
    func localMessageIds(_ user: String) -> [String] {
        DaemonBenchmark.messageFiles(maildir(user)).compactMap { path in
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            let text = String(decoding: data.prefix(4096), as: UTF8.self)
            return text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("message-id:") }.map(String.init)
        }
    }
}

/// Runs a daemon in-process until `stop()`.
final class RunningDaemon: Sendable {
    let daemon: Daemon
    let task: Task<Void, any Error>

    init(configurationPath: String, environment: [String: String] = [:]) {
        let daemon = Daemon(configurationPath: configurationPath,
                            options: DaemonOptions(handlesSignals: false, environment: environment), logger: testLogger)
        self.daemon = daemon
        task = Task { try await daemon.run() }
    }

    /// The first sync of an empty account takes under a second alone; at
    /// the start of the whole suite, with every suite's Dovecot starting on
    /// two cores, it took 18 s (9.7 s of it to LIST and pair the folders).
    func waitForSyncs(_ account: String, atLeast count: Int, timeout: Duration = .seconds(45)) async throws {
        try await DaemonBenchmark.waitUntil(timeout: timeout) { (self.daemon.accounts[account]?.completedSyncs ?? 0) >= count }
    }

    /// Graceful stop; returns how long it took.
    func stop() async throws -> Duration {
        let start = ContinuousClock.now
        await daemon.stop()
        try await task.value
        return start.duration(to: .now)
    }
}

@Suite(.serialized) struct DaemonIntegrationTests {
    /// Two-way sync through notifications, recovery from a server restart,
    /// reload with an added account, sd_notify and status DB along the way.
    @Test(.timeLimit(.minutes(2)))
    func syncsBothWaysRecoversAndReloads() async throws {
        let fixture = try await DaemonFixture(DovecotServer.Options())
        let server = fixture.server
        let notify = try NotifySocket()
        let config = try fixture.writeConfiguration(users: ["alice"])
        let running = RunningDaemon(configurationPath: config, environment: ["NOTIFY_SOCKET": notify.address])
        do {
            try await running.waitForSyncs("alice", atLeast: 1)
            let ready = notify.receive(timeout: .seconds(2)) { $0.contains { $0.hasPrefix("READY=1") } }
            #expect(ready.contains { $0.hasPrefix("READY=1\nSTATUS=1 account") })

            // Server → Maildir.
            let inbox = fixture.maildir("alice")
            let start = ContinuousClock.now
            try await offloadBlocking { try server.saveMessage(user: "alice", bytes: Corpus.message(index: 1)) }
            try await DaemonBenchmark.waitUntil(timeout: .seconds(10)) { DaemonBenchmark.messageFiles(inbox).count == 1 }
            let pullLatency = start.duration(to: .now)

            // Maildir → server: the reader marks it read.
            let file = try #require(DaemonBenchmark.messageFiles(inbox).first)
            #expect(rename(file, DaemonBenchmark.adding("S", to: file)) == 0)
            try await DaemonBenchmark.waitUntil(timeout: .seconds(10), interval: .milliseconds(50)) {
                try await fixture.serverCount("alice", "SEEN") == 1
            }

            // Server down: a local delivery waits; after the restart a new
            // server message arrives too, and nothing is lost or doubled.
            try await offloadBlocking { server.stop() }
            _ = try fixture.deliverLocally("alice", index: 2)
            try await DaemonBenchmark.waitUntil(timeout: .seconds(10)) {
                running.daemon.accounts["alice"]?.state == .backingOff
            }
            try await offloadBlocking { try server.restart() }
            try await offloadBlocking { try server.saveMessage(user: "alice", bytes: Corpus.message(index: 3)) }
            // The reconnection backs off 1, 2, 4, 8, 16 s: on a loaded machine,
            // where stopping and restarting Dovecot takes seconds, the retry
            // after the restart can come 16 s later, and the sync after it.
            try await DaemonBenchmark.waitUntil(timeout: .seconds(45), interval: .milliseconds(100)) {
                DaemonBenchmark.messageFiles(inbox).count == 3
            }
            try await DaemonBenchmark.waitUntil(timeout: .seconds(10), interval: .milliseconds(100)) {
                try await fixture.serverCount("alice") == 3
            }
            #expect(Set(fixture.localMessageIds("alice")).count == 3)

            // Reload with an added account.
            try await offloadBlocking { try server.saveMessage(user: "bob", bytes: Corpus.message(index: 4)) }
            try fixture.writeConfiguration(users: ["alice", "bob"])
            running.daemon.reload()
            try await DaemonBenchmark.waitUntil(timeout: .seconds(15)) {
                DaemonBenchmark.messageFiles(fixture.maildir("bob")).count == 1
            }
            let reload = notify.receive(timeout: .seconds(3)) { $0.contains { $0.hasPrefix("RELOADING=1") } }
            #expect(reload.contains { $0.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") })

            // `ferrymail status` (another process) sees what the daemon does.
            let reader = try StateStore.openForReading(at: fixture.directory.path + "/state/state.sqlite")
            try await DaemonBenchmark.waitUntil(timeout: .seconds(10)) {
                try reader.daemonStatuses().filter { $0.daemon?.lastSuccessAt != nil }.count == 2
            }
            let statuses = try reader.daemonStatuses()
            #expect(Set(statuses.compactMap { $0.daemon == nil ? nil : $0.account.name }) == ["alice", "bob"])
            try reader.close()

            let stopTime = try await running.stop()
            #expect(stopTime < .seconds(5))
            let stopping = notify.receive(timeout: .seconds(2)) { $0.contains { $0.hasPrefix("STOPPING=1") } }
            #expect(stopping.contains { $0.hasPrefix("STOPPING=1") })
            let after = try StateStore.openForReading(at: fixture.directory.path + "/state/state.sqlite")
            #expect(try after.daemonStatuses().allSatisfy { $0.daemon?.state == .stopped })
            try after.close()
            print("daemon test: server → Maildir \(pullLatency), graceful stop \(stopTime)")
        } catch {
            _ = try? await running.stop()
            throw error
        }
    }

    /// A graceful stop in the middle of a large first download ends quickly,
    /// keeps every finished message, and the next start completes without
    /// downloading any of them again.
    @Test(.timeLimit(.minutes(2)))
    func gracefulStopDuringALargeDownloadResumesWithoutRedownloading() async throws {
        let fixture = try await DaemonFixture(DovecotServer.Options(users: [.init(name: "carol", password: "carol-Secret-3")]))
        let total = 500
        try await offloadBlocking {
            try fixture.server.seedMaildir(user: "carol", messages: Corpus.messages(count: total, size: 24_000))
        }
        let config = try fixture.writeConfiguration(users: ["carol"])
        let inbox = fixture.maildir("carol")

        let first = RunningDaemon(configurationPath: config)
        try await DaemonBenchmark.waitUntil(timeout: .seconds(30), interval: .milliseconds(5)) {
            DaemonBenchmark.messageFiles(inbox).count >= 20
        }
        let stopTime = try await first.stop()
        let kept = DaemonBenchmark.messageFiles(inbox).count
        #expect(stopTime < .seconds(10), "graceful stop took \(stopTime)")
        #expect(kept < total, "the download finished before the stop; the test needs a larger mailbox")
        // Only complete messages are visible: nothing half-written in cur/ or new/.
        for path in DaemonBenchmark.messageFiles(inbox) {
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            #expect(size >= 20_000, "\(path) is \(size) bytes")
        }

        let resumed = ContinuousClock.now
        let second = RunningDaemon(configurationPath: config)
        do {
            try await second.waitForSyncs("carol", atLeast: 1, timeout: .seconds(60))
            print("daemon test: resumed download of \(total - kept) messages took \(resumed.duration(to: .now))")
            #expect(DaemonBenchmark.messageFiles(inbox).count == total)
            #expect(Set(fixture.localMessageIds("carol")).count == total, "no duplicates")
            let copied = second.daemon.accounts["carol"]?.messagesCopied ?? -1
            #expect(copied == total - kept, "re-downloaded \(copied - (total - kept)) finished messages")
            _ = try await second.stop()
        } catch {
            _ = try? await second.stop()
            throw error
        }
        print("daemon test: stop during download after \(kept)/\(total) messages took \(stopTime)")
    }

    /// Without NOTIFY the daemon IDLEs on INBOX.
    @Test(.timeLimit(.minutes(1)))
    func idleWatchesInboxWhenTheServerLacksNotify() async throws {
        let fixture = try await DaemonFixture(DovecotServer.Options(disabledCapabilities: ["NOTIFY"]))
        let config = try fixture.writeConfiguration(users: ["alice"])
        let running = RunningDaemon(configurationPath: config)
        do {
            try await running.waitForSyncs("alice", atLeast: 1)
            // Give the IDLE connection a moment to be established.
            try await Task.sleep(for: .milliseconds(500))
            try await offloadBlocking { try fixture.server.saveMessage(user: "alice", bytes: Corpus.message(index: 5)) }
            try await DaemonBenchmark.waitUntil(timeout: .seconds(10)) {
                DaemonBenchmark.messageFiles(fixture.maildir("alice")).count == 1
            }
            _ = try await running.stop()
        } catch {
            _ = try? await running.stop()
            throw error
        }
    }
}
