import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where an account's password or OAuth2 token comes from.
///
/// The configuration stores only the *source*; the secret itself is fetched by
/// ``resolve()`` when a connection needs it, so parsing a config (say for
/// `ferrymail check`) never runs commands or reads key files, and the secret
/// is never held in a long-lived value that might be logged.
public struct SecretSource: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    public enum Kind: Sendable, Equatable {
        /// A shell command line run with `/bin/sh -c`; the first line of its
        /// standard output is the secret.
        case command(String)
        /// A file (absolute path) whose contents, minus the trailing newline, are
        /// the secret. Must not be accessible by group or others.
        case file(path: String)
        /// An environment variable of the ferrymail process.
        case environment(variable: String)
        /// Written in the configuration file itself (`password = "…"`).
        case inline(String)
    }

    public let kind: Kind
    /// The account this belongs to, so resolution errors can name it.
    public let account: String
    /// The configuration key it came from (`password_command`,
    /// `oauth2_token_command`, …), for messages.
    public let key: String

    public init(kind: Kind, account: String, key: String) {
        self.kind = kind
        self.account = account
        self.key = key
    }

    /// Commands are redacted entirely: people do write `echo hunter2`. File
    /// paths and variable names are not secret and help debugging.
    public var description: String {
        switch kind {
        case .command: "\(key) (command redacted)"
        case .file(let path): "\(key) \(path)"
        case .environment(let variable): "\(key) $\(variable)"
        case .inline: "\(key) (in the configuration file, redacted)"
        }
    }

    public var debugDescription: String { description }

    /// Keeps `dump()` and reflection-based loggers from printing the command.
    public var customMirror: Mirror {
        Mirror(self, children: ["source": description], displayStyle: .struct)
    }

    /// Fetches the secret now. Never cached: tokens expire, and password
    /// managers may want to ask each time.
    ///
    /// - `command`: `/bin/sh -c <command>` with standard input on `/dev/null`
    ///   (a command that waits for input would otherwise hang the daemon; a
    ///   genuinely closed descriptor 0 would let the child's next `open` land on
    ///   it). The first line of standard output, without its line ending, is the
    ///   secret. A non-zero exit is an error quoting the first line of standard
    ///   error, never standard output, which may hold a partial secret.
    /// - `file`: refused when group/others have any permission on it, like ssh
    ///   does with private keys. One trailing line ending is removed.
    /// - `environment`: the variable must exist and be non-empty.
    public func resolve() throws(SecretResolutionError) -> String {
        switch kind {
        case .command(let command): return try runCommand(command)
        case .file(let path): return try readFile(path)
        case .environment(let variable): return try readEnvironment(variable)
        case .inline(let secret): return secret
        }
    }

    private func failure(_ reason: SecretResolutionError.Reason) -> SecretResolutionError {
        SecretResolutionError(account: account, key: key, reason: reason)
    }

    private func runCommand(_ command: String) throws(SecretResolutionError) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardInput = FileHandle.nullDevice
        let stdoutPipe = Pipe()
        let stderrPipe = Pipe()
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe

        do {
            try process.run()
        } catch {
            throw failure(.commandCouldNotStart(String(describing: error)))
        }

        // Drain stderr concurrently: a command that fills the stderr pipe while
        // we block on stdout would otherwise deadlock.
        let stderrBox = CollectedOutput()
        let stderrDone = DispatchSemaphore(value: 0)
        let stderrHandle = stderrPipe.fileHandleForReading
        Thread.detachNewThread {
            stderrBox.set(stderrHandle.readDataToEndOfFile())
            stderrDone.signal()
        }
        let output = stdoutPipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        // A daemon the command started (gpg-agent) may inherit stderr and keep
        // it open; do not wait for it forever.
        _ = stderrDone.wait(timeout: .now() + .seconds(2))

        let status = process.terminationStatus
        guard process.terminationReason == .exit, status == 0 else {
            let stderrLine = stderrBox.get().flatMap { Self.firstLine(of: $0) }.map { String($0.prefix(200)) }
            if process.terminationReason == .uncaughtSignal {
                throw failure(.commandKilled(signal: status, stderr: stderrLine))
            }
            throw failure(.commandFailed(status: status, stderr: stderrLine))
        }
        guard let line = Self.firstLine(of: output), !line.isEmpty else {
            throw failure(.commandProducedNoOutput)
        }
        return line
    }

    private func readFile(_ path: String) throws(SecretResolutionError) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            throw failure(code == ENOENT ? .fileMissing(path: path) : .fileUnreadable(path: path, reason: Self.errnoText(code)))
        }
        let permissions = UInt16(info.st_mode & 0o777)
        guard permissions & 0o077 == 0 else {
            throw failure(.filePermissionsTooOpen(path: path, mode: permissions))
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw failure(.fileUnreadable(path: path, reason: (error as NSError).localizedDescription))
        }
        guard var text = String(data: data, encoding: .utf8) else {
            throw failure(.fileUnreadable(path: path, reason: "not valid UTF-8"))
        }
        if text.hasSuffix("\r\n") {
            text.removeLast(1)  // "\r\n" is a single Character
        } else if text.hasSuffix("\n") {
            text.removeLast()
        }
        guard !text.isEmpty else { throw failure(.fileEmpty(path: path)) }
        return text
    }

    private func readEnvironment(_ variable: String) throws(SecretResolutionError) -> String {
        guard let value = ProcessInfo.processInfo.environment[variable] else {
            throw failure(.environmentVariableMissing(variable))
        }
        guard !value.isEmpty else { throw failure(.environmentVariableEmpty(variable)) }
        return value
    }

    /// The first line without its line ending, or `nil` if not UTF-8.
    static func firstLine(of data: Data) -> String? {
        guard let text = String(data: data, encoding: .utf8) else { return nil }
        var line = Substring(text)
        if let end = line.firstIndex(where: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            line = line[..<end]
        }
        return String(line)
    }

    static func errnoText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}

/// Thread-safe holder for a reader thread's result.
private final class CollectedOutput: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?

    func set(_ value: Data) {
        lock.lock()
        data = value
        lock.unlock()
    }

    func get() -> Data? {
        lock.lock()
        defer { lock.unlock() }
        return data
    }
}

/// Why a secret could not be fetched. Carries no secret material: command
/// output is never included, only the first line of standard error.
public struct SecretResolutionError: Error, Sendable, Equatable, CustomStringConvertible, LocalizedError {
    public enum Reason: Sendable, Equatable {
        case commandCouldNotStart(String)
        case commandFailed(status: Int32, stderr: String?)
        case commandKilled(signal: Int32, stderr: String?)
        case commandProducedNoOutput
        case fileMissing(path: String)
        case fileUnreadable(path: String, reason: String)
        /// `mode` holds the permission bits (e.g. `0o644`).
        case filePermissionsTooOpen(path: String, mode: UInt16)
        case fileEmpty(path: String)
        case environmentVariableMissing(String)
        case environmentVariableEmpty(String)
    }

    public let account: String
    public let key: String
    public let reason: Reason

    public var description: String {
        let prefix = "account \"\(account)\": \(key)"
        switch reason {
        case .commandCouldNotStart(let why):
            return "\(prefix): could not run /bin/sh: \(why)"
        case .commandFailed(let status, let stderr):
            return "\(prefix) exited with status \(status)" + Self.stderrSuffix(stderr)
        case .commandKilled(let signal, let stderr):
            return "\(prefix) was killed by signal \(signal)" + Self.stderrSuffix(stderr)
        case .commandProducedNoOutput:
            return "\(prefix) succeeded but printed nothing on its first line of standard output"
                + " (the secret must be the first line; check the command in a terminal)"
        case .fileMissing(let path):
            return "\(prefix): '\(path)' does not exist"
        case .fileUnreadable(let path, let why):
            return "\(prefix): cannot read '\(path)': \(why)"
        case .filePermissionsTooOpen(let path, let mode):
            return "\(prefix): '\(path)' is accessible by other users (mode \(String(mode, radix: 8)));"
                + " refusing to use it (run: chmod 600 '\(path)')"
        case .fileEmpty(let path):
            return "\(prefix): '\(path)' is empty"
        case .environmentVariableMissing(let variable):
            return "\(prefix): environment variable \(variable) is not set"
        case .environmentVariableEmpty(let variable):
            return "\(prefix): environment variable \(variable) is empty"
        }
    }

    public var errorDescription: String? { description }

    private static func stderrSuffix(_ stderr: String?) -> String {
        guard let stderr, !stderr.trimmingWhitespace().isEmpty else { return " (it printed nothing on standard error)" }
        return ": \(stderr)"
    }
}
