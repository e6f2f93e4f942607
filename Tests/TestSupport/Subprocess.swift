import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Outcome of a finished helper program.
struct CommandResult: Sendable {
    var status: ExitStatus
    var stdout: [UInt8]
    var stderr: [UInt8]

    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// How a child process ended, decoded from `waitpid`'s status word.
enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus: Int32) {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
        let signal = waitStatus & 0x7f
        if signal == 0 {
            self = .exited((waitStatus >> 8) & 0xff)
        } else {
            self = .signaled(signal)
        }
    }

    var isSuccess: Bool { self == .exited(0) }

    var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signaled(let signal): return "killed by signal \(signal)"
        }
    }
}

/// Minimal `posix_spawn` wrapper.
///
/// Foundation's `Process` is avoided on purpose: its pipes can leak into concurrently spawned
/// long-lived children (a Dovecot master started by a parallel test would then hold a pipe's
/// write end open, and `readDataToEndOfFile` would hang until that server stops), and it gives no
/// control over process groups. Here every child gets only fds 0–2 (everything else is closed via
/// `posix_spawn_file_actions_addclosefrom_np` when glibc has it, and our own fds are `O_CLOEXEC`
/// anyway), output goes to unlinked temporary files instead of pipes, and long-lived children
/// can be put in their own process group so `stop` can signal the whole tree.
enum Subprocess {
    /// Runs `executable` to completion and captures its output.
    ///
    /// Blocking; callers in async code should expect it to occupy the calling thread for the
    /// program's runtime (milliseconds for doveadm/openssl).
    static func run(_ executable: String, _ arguments: [String], stdin: [UInt8]? = nil) throws -> CommandResult {
        let stdoutFD = try anonymousFile()
        defer { close(stdoutFD) }
        let stderrFD = try anonymousFile()
        defer { close(stderrFD) }
        let stdinFD: Int32
        if let stdin {
            stdinFD = try anonymousFile()
            try writeAll(fd: stdinFD, bytes: stdin, path: "<stdin of \(executable)>")
            lseek(stdinFD, 0, SEEK_SET)
        } else {
            stdinFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        }
        defer { close(stdinFD) }

        let pid = try spawn(executable, arguments, stdin: stdinFD, stdout: stdoutFD, stderr: stderrFD,
                            newProcessGroup: false)
        let status = waitForExit(pid)
        return CommandResult(status: status, stdout: try readAll(fd: stdoutFD), stderr: try readAll(fd: stderrFD))
    }

    /// Runs a program and throws `FixtureError.commandFailed` (with its stderr) unless it exits 0.
    @discardableResult
    static func check(_ executable: String, _ arguments: [String], stdin: [UInt8]? = nil) throws -> CommandResult {
        let result = try run(executable, arguments, stdin: stdin)
        guard result.status.isSuccess else {
            throw FixtureError.commandFailed(
                command: commandLine(executable, arguments), status: result.status.description,
                stdout: result.stdoutText, stderr: result.stderrText)
        }
        return result
    }

    static func commandLine(_ executable: String, _ arguments: [String]) -> String {
        ([executable] + arguments).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    }

    /// Starts a child with the given fds as its stdin/stdout/stderr and returns its pid.
    static func spawn(_ executable: String, _ arguments: [String], stdin: Int32, stdout: Int32, stderr: Int32,
                      newProcessGroup: Bool) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto 0/1/2 clears FD_CLOEXEC on the targets, so the child keeps exactly these.
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        if let addClosefrom = addClosefromFunction {
            _ = addClosefrom(&actions, 3)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        // The test runner may block or ignore signals (SIGPIPE is ignored by Swift runtimes);
        // the child must start with a clean slate or `dovecot` would ignore SIGPIPE etc.
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else {
            throw FixtureError.spawnFailed(command: commandLine(executable, arguments), errno: rc)
        }
        return pid
    }

    /// Blocks until `pid` exits and reaps it.
    static func waitForExit(_ pid: pid_t) -> ExitStatus {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return .exited(-1) }
        }
        return ExitStatus(waitStatus: status)
    }

    /// Reaps `pid` if it has exited; `nil` while it is still running.
    static func exitStatusIfExited(_ pid: pid_t) -> ExitStatus? {
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid { return ExitStatus(waitStatus: status) }
        if rc < 0 && errno == ECHILD { return .exited(-1) }
        return nil
    }

    /// Waits up to `seconds` for `pid` to exit.
    static func waitForExit(_ pid: pid_t, seconds: Double) -> ExitStatus? {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if let status = exitStatusIfExited(pid) { return status }
            usleep(10_000)
        } while Date() < deadline
        return exitStatusIfExited(pid)
    }

    // MARK: - File helpers

    /// An unlinked, close-on-exec temporary file: no cleanup needed, nothing left behind on crash.
    static func anonymousFile() throws -> Int32 {
        var template = Array("/tmp/ferrymail-subprocess.XXXXXX".utf8CString)
        // mkostemp(O_CLOEXEC) is GNU-only and not imported; children we spawn close every fd
        // above 2 anyway, so setting FD_CLOEXEC right after creation is enough.
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw FixtureError.fileSystem(operation: "mkstemp", path: "/tmp", errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        return fd
    }

    static func writeAll(fd: Int32, bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw FixtureError.fileSystem(operation: "write", path: path, errno: errno)
            }
            offset += written
        }
    }

    static func readAll(fd: Int32) throws -> [UInt8] {
        lseek(fd, 0, SEEK_SET)
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FixtureError.fileSystem(operation: "read", path: "<captured output>", errno: errno)
            }
            if count == 0 { break }
            result.append(contentsOf: buffer[0..<count])
        }
        return result
    }

    private typealias AddClosefrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc ≥ 2.34 has `posix_spawn_file_actions_addclosefrom_np`, but it is declared only under
    /// `_GNU_SOURCE`, which Swift's Glibc module does not define, so it is looked up dynamically.
    private static let addClosefromFunction: AddClosefrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(symbol, to: AddClosefrom.self)
    }()
}
