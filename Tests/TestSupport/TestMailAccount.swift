import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The unprivileged system account that Dovecot's mail processes run as.
///
/// Dovecot refuses to run mail processes as root, so every passwd-file user of every test server
/// maps to this one account; it is created on first use with `useradd`.
public enum TestMailAccount {
    /// Name of the system user (and its primary group).
    public static let name = "ferrymail-test"

    /// uid/gid of the account, creating it if needed.
    ///
    /// Safe to call from many threads and many test processes at once: the `static let` makes the
    /// work happen once per process, and an `flock` on a lock file in /tmp serializes `useradd`
    /// across processes (useradd itself fails rather than waits when /etc/passwd is locked).
    public static func ids() throws -> (uid: uid_t, gid: gid_t) {
        try cached.get()
    }

    private static let cached: Result<(uid: uid_t, gid: gid_t), any Error> = Result { try ensureExists() }

    private static func ensureExists() throws(FixtureError) -> (uid: uid_t, gid: gid_t) {
        if let ids = lookup() { return ids }
        guard geteuid() == 0 else { throw .notRoot(effectiveUID: geteuid()) }

        let lockPath = "/tmp/.ferrymail-test-useradd.lock"
        let lockFD = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lockFD >= 0 else { throw .fileSystem(operation: "open lock file", path: lockPath, errno: errno) }
        defer { close(lockFD) }
        while flock(lockFD, LOCK_EX) != 0 {
            guard errno == EINTR else { throw .fileSystem(operation: "flock", path: lockPath, errno: errno) }
        }
        defer { flock(lockFD, LOCK_UN) }

        if let ids = lookup() { return ids }
        let useradd = "/usr/sbin/useradd"
        let arguments = ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                         "--shell", "/usr/sbin/nologin", "--comment", "Ferrymail integration tests", name]
        let result: CommandResult
        do {
            result = try Subprocess.run(useradd, arguments)
        } catch let error as FixtureError {
            throw error
        } catch {
            throw .unexpectedOutput(command: useradd, output: "\(error)")
        }
        // Exit status 9 means "username already in use": another process won the race without
        // holding our lock (e.g. an older checkout); that is fine.
        guard result.status.isSuccess || result.status == .exited(9), let ids = lookup() else {
            throw .commandFailed(command: Subprocess.commandLine(useradd, arguments),
                                 status: result.status.description, stdout: result.stdoutText,
                                 stderr: result.stderrText)
        }
        return ids
    }

    /// `getpwnam_r`, because plain `getpwnam` uses a static buffer shared by all threads.
    private static func lookup() -> (uid: uid_t, gid: gid_t)? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        let rc = getpwnam_r(name, &entry, &buffer, buffer.count, &result)
        guard rc == 0, result != nil else { return nil }
        return (entry.pw_uid, entry.pw_gid)
    }
}
