import Foundation

/// Everything that can go wrong while setting up or driving the test fixtures.
///
/// Every case carries enough context (command line, exit status, stderr, log tail) that a failing
/// CI log explains the cause without re-running anything.
public enum FixtureError: Error, CustomStringConvertible, Sendable {
    /// A helper program could not be started at all (missing binary, exec failure).
    case spawnFailed(command: String, errno: Int32)
    /// A helper program ran but exited unsuccessfully.
    case commandFailed(command: String, status: String, stdout: String, stderr: String)
    /// A file-system operation on the fixture's private directory failed.
    case fileSystem(operation: String, path: String, errno: Int32)
    /// Dovecot must be started as root so its mail processes can switch to the test user.
    case notRoot(effectiveUID: UInt32)
    /// A required program is not installed.
    case missingProgram(path: String, hint: String)
    /// Dovecot's master process exited before it became ready.
    case dovecotExited(status: String, logTail: String)
    /// Dovecot kept running but never greeted on its IMAP port.
    case dovecotNotReady(seconds: Double, detail: String, logTail: String)
    /// No free port pair could be bound after several attempts.
    case portsUnavailable(attempts: Int, logTail: String)
    /// The named user is not one of the server's configured accounts.
    case unknownUser(String, known: [String])
    /// A mailbox name cannot be mapped onto the configured on-disk layout.
    case invalidMailboxName(String, reason: String)
    /// A flag cannot be expressed in the requested delivery path.
    case unsupportedFlag(String, reason: String)
    /// A raw IMAP connection could not be opened.
    case connectionFailed(host: String, port: Int, errno: Int32)
    /// The server closed the connection or stopped answering before the expected line.
    case connectionClosed(waitingFor: String, transcript: String)
    /// Output of a helper program did not have the expected shape.
    case unexpectedOutput(command: String, output: String)

    public var description: String {
        switch self {
        case let .spawnFailed(command, errno):
            return "could not start `\(command)`: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .commandFailed(command, status, stdout, stderr):
            var text = "`\(command)` failed (\(status))"
            let err = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            let out = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            if !err.isEmpty { text += "\nstderr:\n\(err)" }
            if !out.isEmpty { text += "\nstdout:\n\(out.suffix(2000))" }
            return text
        case let .fileSystem(operation, path, errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .notRoot(uid):
            return "the Dovecot fixture must run as root (euid is \(uid)): Dovecot's master needs root "
                + "to switch mail processes to the unprivileged `\(TestMailAccount.name)` user; run the tests as root "
                + "(CI does) or via sudo"
        case let .missingProgram(path, hint):
            return "\(path) is not installed; \(hint)"
        case let .dovecotExited(status, logTail):
            return "dovecot exited during startup (\(status)); log tail:\n\(logTail)"
        case let .dovecotNotReady(seconds, detail, logTail):
            return "dovecot did not greet on its IMAP port within \(seconds) s (\(detail)); log tail:\n\(logTail)"
        case let .portsUnavailable(attempts, logTail):
            return "could not bind free ports on 127.0.0.1 after \(attempts) attempts (another process kept "
                + "grabbing them); last log tail:\n\(logTail)"
        case let .unknownUser(name, known):
            return "no test user named \(name.debugDescription); this server has \(known)"
        case let .invalidMailboxName(name, reason):
            return "mailbox name \(name.debugDescription) cannot be used: \(reason)"
        case let .unsupportedFlag(flag, reason):
            return "flag \(flag.debugDescription) is not supported: \(reason)"
        case let .connectionFailed(host, port, errno):
            return "could not connect to \(host):\(port): \(String(cString: strerror(errno))) (is the server running?)"
        case let .connectionClosed(waitingFor, transcript):
            return "connection closed or timed out while waiting for \(waitingFor); received so far:\n\(transcript)"
        case let .unexpectedOutput(command, output):
            return "unexpected output from `\(command)`: \(output.prefix(500))"
        }
    }
}
