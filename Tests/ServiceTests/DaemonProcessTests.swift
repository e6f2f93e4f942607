import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The daemon as users run it: the real `ferrymail daemon` executable in its
/// own process, real signals, systemd's notify socket faked by the test.
@Suite(.serialized) struct DaemonProcessTests {
    /// The `ferrymail` binary built next to the test bundle.
    static var binary: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ferrymail").path
    }

    static func spawn(_ arguments: [String], environment: [String: String]) throws -> pid_t {
        var pid: pid_t = 0
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let argv = ([binary] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        let rc = posix_spawn(&pid, binary, &actions, nil, argv, envp)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        return pid
    }

    /// Waits for the child on a plain thread; nil if it is still running at the deadline.
    static func waitForExit(_ pid: pid_t, timeout: Duration) async throws -> Int32? {
        try await offloadBlocking {
            let deadline = ContinuousClock.now + timeout
            var status: Int32 = 0
            while ContinuousClock.now < deadline {
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
                usleep(20_000)
            }
            return nil
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func readyReloadOnSIGHUPAndGracefulStopOnSIGTERM() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary), "build the ferrymail product first")
        let fixture = try await DaemonFixture(DovecotServer.Options())
        let notify = try NotifySocket()
        let config = try fixture.writeConfiguration(users: ["alice"])
        let pid = try Self.spawn(["daemon", "--config", config], environment: ["NOTIFY_SOCKET": notify.address])
        var exited = false
        defer { if !exited { kill(pid, SIGKILL); _ = try? waitpidBlocking(pid) } }

        let ready = try await offloadBlocking { notify.receive(timeout: .seconds(30)) { $0.contains { $0.hasPrefix("READY=1") } } }
        #expect(ready.contains { $0.hasPrefix("READY=1") }, "no READY=1 from the daemon: \(ready)")

        // Server → Maildir while running as a separate process.
        let server = fixture.server
        try await offloadBlocking { _ = try server.saveMessage(user: "alice", bytes: Corpus.message(index: 7)) }
        try await Poll.until(timeout: .seconds(20)) {
            Poll.messageCount(fixture.maildir("alice")) == 1
        }

        // SIGHUP: reload with a second account added.
        _ = try fixture.writeConfiguration(users: ["alice", "bob"])
        try await offloadBlocking { _ = try server.saveMessage(user: "bob", bytes: Corpus.message(index: 8)) }
        kill(pid, SIGHUP)
        let reloading = try await offloadBlocking { notify.receive(timeout: .seconds(20)) { $0.contains { $0.hasPrefix("RELOADING=1") } } }
        #expect(reloading.contains { $0.hasPrefix("RELOADING=1") })
        try await Poll.until(timeout: .seconds(20)) {
            Poll.messageCount(fixture.maildir("bob")) == 1
        }

        // SIGTERM: STOPPING=1 and a clean exit well within the grace period.
        let start = ContinuousClock.now
        kill(pid, SIGTERM)
        let status = try await Self.waitForExit(pid, timeout: .seconds(15))
        exited = status != nil
        #expect(status == 0, "exit status \(String(describing: status)) after SIGTERM")
        #expect(start.duration(to: .now) < .seconds(12))
        let stopping = notify.receive(timeout: .seconds(1)) { $0.contains { $0.hasPrefix("STOPPING=1") } }
        #expect(stopping.contains { $0.hasPrefix("STOPPING=1") })
    }
}

private func waitpidBlocking(_ pid: pid_t) throws -> Int32 {
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return status
}

/// Polling helpers (deadlines, never fixed sleeps).
enum Poll {
    static func until(timeout: Duration, _ condition: @escaping @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("condition not met within \(timeout)")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Files in a Maildir++ root's INBOX (`cur/` and `new/`).
    static func messageCount(_ root: String) -> Int {
        ["cur", "new"].reduce(0) { $0 + ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + $1))?.count ?? 0) }
    }
}
