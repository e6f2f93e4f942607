import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A private, throwaway Dovecot 2.3 IMAP server on loopback for integration tests.
///
/// Each instance lives entirely in its own temporary directory (configuration, run/state dirs,
/// log, certificates, passwd-file, users' Maildirs) and listens on random free ports, so any
/// number of servers can run in parallel without touching /etc/dovecot or the system service.
///
/// ```swift
/// let server = try await DovecotServer.start()
/// defer { server.stop() }
/// // connect to server.host:server.plainPort (STARTTLS) or server.tlsHost:server.tlsPort (implicit TLS),
/// // trusting server.caCertificatePath, and log in as server.users[0]
/// ```
///
/// Requirements: root (Dovecot's master must switch mail processes to `TestMailAccount`), and
/// the Debian packages installed by scripts/install-deps.sh.
///
/// Addresses: the plain listener is on 127.0.0.1, except with `requireTLSForAuth`, where it moves
/// to 127.0.0.2 because Dovecot treats a connection whose remote and local IPs are equal as
/// "secured" and would allow plaintext LOGIN anyway (a client connecting to 127.0.0.2 gets source
/// address 127.0.0.1). The implicit-TLS listener shares the plain listener's address unless
/// `offerSTARTTLS` is false (Dovecot enables TLS per local IP, so the two must then differ).
/// Always connect to `host` / `tlsHost` rather than hard-coding 127.0.0.1.
///
/// `doveadm`, `saveMessage`, `seedMaildir` and `restart` block the calling thread (they run
/// helper programs or do bulk I/O); `start` moves its work to a dedicated thread so it never
/// starves Swift's cooperative thread pool when many tests start servers at once. Wrap heavy
/// blocking calls in `offloadBlocking { }` for the same reason.
public final class DovecotServer: Sendable {
    /// Address of the plain (STARTTLS-capable) listener.
    public let host: String
    /// Address of the implicit-TLS listener (equals `host` unless `offerSTARTTLS` is false).
    public let tlsHost: String
    /// IMAP port: plaintext, STARTTLS offered unless `Options.offerSTARTTLS` is false.
    public let plainPort: Int
    /// Implicit-TLS (IMAPS) port.
    public let tlsPort: Int
    /// PEM of the self-signed CA that issued the server certificate
    /// (SAN IP:127.0.0.1, IP:127.0.0.2, DNS:localhost).
    public let caCertificatePath: String
    /// PEM of the server certificate itself.
    public let serverCertificatePath: String
    /// PEM of an unrelated CA that did *not* sign the server certificate.
    public let wrongCAPath: String
    /// Lower-case hex SHA-256 of the server certificate's DER, for pinning tests.
    public let certificateSHA256: String
    /// The passwd-file users, with their Maildir locations.
    public let users: [TestUser]
    /// The options the server was started with.
    public let options: Options
    /// The post-login CAPABILITY list this server advertises (Dovecot's order).
    public let capabilities: [String]
    /// The server's private directory (removed when the object is deallocated, unless the
    /// environment variable `FERRYMAIL_KEEP_DOVECOT` is set, which helps post-mortem debugging).
    public let directory: URL
    /// The generated dovecot.conf.
    public let configPath: String
    /// Dovecot's log file (`log_path`).
    public let logPath: String
    /// uid/gid that owns the users' mail (see `TestMailAccount`).
    public let mailUID: UInt32
    public let mailGID: UInt32

    private let consoleOutputPath: String
    /// HMAC key for `oauthToken` (only configured in Dovecot when `Options.oauth` is on).
    let oauthKey: [UInt8]
    /// pid (= process group id) of the running master, nil while stopped.
    private let masterPID = Locked<pid_t?>(nil)
    static let dovecotBinary = "/usr/sbin/dovecot"
    static let doveadmBinary = "/usr/bin/doveadm"

    // MARK: - Lifecycle

    /// Creates and starts a server; returns once it has sent its IMAP greeting.
    ///
    /// Throws `FixtureError` with Dovecot's log tail if it does not come up within
    /// `options.startTimeout` seconds.
    public static func start(_ options: Options = Options()) async throws -> DovecotServer {
        try await offloadBlocking { try DovecotServer(options: options) }
    }

    /// Blocking variant of `start`, for synchronous code such as benchmark executables.
    public init(options: Options) throws {
        guard geteuid() == 0 else { throw FixtureError.notRoot(effectiveUID: geteuid()) }
        for program in [Self.dovecotBinary, Self.doveadmBinary] where !FileManager.default.isExecutableFile(atPath: program) {
            throw FixtureError.missingProgram(
                path: program, hint: "run scripts/install-deps.sh (packages dovecot-core, dovecot-imapd)")
        }
        StaleServerReaper.reapOnce()
        let ids = try TestMailAccount.ids()
        mailUID = ids.uid
        mailGID = ids.gid
        self.options = options
        capabilities = Self.postLoginCapabilities(for: options)
        host = options.requireTLSForAuth ? "127.0.0.2" : "127.0.0.1"
        tlsHost = options.offerSTARTTLS ? host : (host == "127.0.0.1" ? "127.0.0.2" : "127.0.0.1")

        // A short base path: Dovecot's UNIX sockets live under it and sun_path holds 108 bytes.
        let directory = try TemporaryDirectory.create(prefix: "ferrymail-dovecot", in: "/tmp")
        self.directory = directory
        var succeeded = false
        defer { if !succeeded { try? FileManager.default.removeItem(at: directory) } }
        // Dovecot's unprivileged processes (login, auth, mail) must traverse this directory;
        // secrets inside (keys) are 0600 files.
        chmod(directory.path, 0o755)
        try Data("\(getpid())\n".utf8).write(to: directory.appendingPathComponent(StaleServerReaper.ownerFile))

        func sub(_ name: String) -> URL { directory.appendingPathComponent(name, isDirectory: true) }
        for name in ["run", "state", "tls", "home"] {
            try FileManager.default.createDirectory(at: sub(name), withIntermediateDirectories: true)
            chmod(sub(name).path, 0o755)
        }
        let certificates = try TestCertificates.generate(in: sub("tls"))
        caCertificatePath = certificates.caCertificatePath
        serverCertificatePath = certificates.serverCertificatePath
        wrongCAPath = certificates.wrongCAPath
        certificateSHA256 = certificates.serverCertificateSHA256

        var users: [TestUser] = []
        var passwd = ""
        for account in options.users {
            guard !account.name.isEmpty, !account.name.contains(where: { ":/\n ".contains($0) }),
                  !account.password.contains(where: { ":\n".contains($0) }) else {
                throw FixtureError.invalidMailboxName(account.name, reason: "user names and passwords must not contain ':', '/', spaces or newlines (passwd-file format)")
            }
            let home = sub("home").appendingPathComponent(account.name, isDirectory: true)
            let maildir = home.appendingPathComponent("Maildir", isDirectory: true)
            for dir in [home, maildir] + ["cur", "new", "tmp"].map({ maildir.appendingPathComponent($0) }) {
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                chown(dir.path, ids.uid, ids.gid)
                chmod(dir.path, 0o700)
            }
            users.append(TestUser(name: account.name, password: account.password, home: home, maildirRoot: maildir))
            passwd += "\(account.name):{PLAIN}\(account.password):\(ids.uid):\(ids.gid)::\(home.path)\n"
        }
        self.users = users
        oauthKey = (0..<32).map { _ in UInt8.random(in: .min ... .max) }
        if options.oauth {
            try Self.writeOAuthFiles(directory: directory, key: oauthKey)
        }
        let passwdPath = directory.appendingPathComponent("passwd").path
        try Data(passwd.utf8).write(to: URL(fileURLWithPath: passwdPath))

        configPath = directory.appendingPathComponent("dovecot.conf").path
        logPath = directory.appendingPathComponent("dovecot.log").path
        consoleOutputPath = directory.appendingPathComponent("dovecot.console").path

        var lastTail = ""
        var chosen: (plain: Int, tls: Int, pid: pid_t)?
        let maxAttempts = 6
        for _ in 1...maxAttempts {
            let plain = try LoopbackNetwork.freePort(host: host)
            var tls = try LoopbackNetwork.freePort(host: tlsHost)
            while tls == plain && tlsHost == host { tls = try LoopbackNetwork.freePort(host: tlsHost) }
            let configuration = Self.configuration(
                options: options, directory: directory, host: host, tlsHost: tlsHost, plainPort: plain, tlsPort: tls,
                certificates: certificates, passwdPath: passwdPath, uid: ids.uid, gid: ids.gid)
            try Data(configuration.utf8).write(to: URL(fileURLWithPath: configPath))
            switch try Self.launch(configPath: configPath, logPath: logPath, consoleOutputPath: consoleOutputPath,
                                   host: host, port: plain, timeout: options.startTimeout) {
            case .ready(let pid):
                chosen = (plain, tls, pid)
            case .addressInUse(let tail):
                lastTail = tail
                continue
            }
            break
        }
        guard let chosen else { throw FixtureError.portsUnavailable(attempts: maxAttempts, logTail: lastTail) }
        plainPort = chosen.plain
        tlsPort = chosen.tls
        masterPID.withLock { $0 = chosen.pid }
        LiveServers.register(chosen.pid, directory: directory.path)
        succeeded = true
    }

    /// Stops the server: SIGTERM to its process group, up to 5 s grace, then SIGKILL.
    ///
    /// Idempotent; the directory and its data are kept until the object is deallocated, so the
    /// server can be `restart`ed or its Maildirs inspected after stopping.
    public func stop() {
        guard let pid = masterPID.withLock({ pid -> pid_t? in defer { pid = nil }; return pid }) else { return }
        LiveServers.unregister(directory: directory.path)
        Self.terminate(processGroup: pid)
    }

    /// Stops and starts the server again with the same configuration, ports and data.
    ///
    /// Retries for a few seconds if a port is momentarily unavailable, because daemon tests
    /// need the same ports to test reconnection.
    public func restart() throws {
        stop()
        let deadline = Date().addingTimeInterval(max(options.startTimeout, 5))
        while true {
            switch try Self.launch(configPath: configPath, logPath: logPath, consoleOutputPath: consoleOutputPath,
                                   host: host, port: plainPort, timeout: options.startTimeout) {
            case .ready(let pid):
                masterPID.withLock { $0 = pid }
                LiveServers.register(pid, directory: directory.path)
                return
            case .addressInUse(let tail):
                if Date() > deadline { throw FixtureError.portsUnavailable(attempts: 1, logTail: tail) }
                usleep(200_000)
            }
        }
    }

    /// Whether the master process is currently running (false after `stop` or a crash).
    public var isRunning: Bool {
        masterPID.withLock { pid in
            guard let current = pid else { return false }
            if Subprocess.exitStatusIfExited(current) == nil { return true }
            // It died on its own (and is now reaped); make a later `stop` a no-op.
            pid = nil
            return false
        }
    }

    deinit {
        stop()
        if ProcessInfo.processInfo.environment["FERRYMAIL_KEEP_DOVECOT"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    // MARK: - Administration

    /// Runs `doveadm -c <this server's config> <arguments>` and returns its stdout.
    ///
    /// Needs the server to be running (doveadm looks users up through its auth socket).
    /// Throws `FixtureError.commandFailed` with doveadm's stderr on a non-zero exit.
    @discardableResult
    public func doveadm(_ arguments: [String], stdin: [UInt8]? = nil) throws -> String {
        try Subprocess.check(Self.doveadmBinary, ["-c", configPath] + arguments, stdin: stdin).stdoutText
    }

    /// Delivers one message with `doveadm save`, creating `mailbox` if needed, then adds `flags`
    /// (IMAP syntax: `\Seen`, `\Flagged`, `$Forwarded`, …). Returns the message's UID.
    ///
    /// About 3–4 helper processes per message: use `seedMaildir` for bulk data.
    @discardableResult
    public func saveMessage(user: String, mailbox: String = "INBOX", bytes: [UInt8], flags: [String] = []) throws -> UInt32 {
        _ = try testUser(named: user)
        if mailbox.uppercased() != "INBOX" {
            do {
                try doveadm(["mailbox", "create", "-u", user, mailbox])
            } catch let FixtureError.commandFailed(_, _, _, stderr) where stderr.contains("already exists") {
                // Fine: the mailbox is there.
            }
        }
        try doveadm(["save", "-u", user, "-m", mailbox], stdin: bytes)
        let output = try doveadm(["search", "-u", user, "mailbox", mailbox, "ALL"])
        // One "<guid> <uid>" line per message; the new message has the highest UID.
        let uids = output.split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { UInt32($0) } }
        guard let uid = uids.max() else {
            throw FixtureError.unexpectedOutput(command: "doveadm search -u \(user) mailbox \(mailbox) ALL", output: output)
        }
        if !flags.isEmpty {
            try doveadm(["flags", "add", "-u", user, flags.joined(separator: " "), "mailbox", mailbox, "uid", String(uid)])
        }
        return uid
    }

    /// Hands every user's home (including files a root test wrote directly) back to the mail
    /// account, so Dovecot's mail processes can read and modify them.
    public func fixOwnership() throws {
        try Subprocess.check("/bin/chown", ["-R", "\(mailUID):\(mailGID)"] + users.map { $0.home.path })
    }

    /// The last `lines` lines of Dovecot's log (plus anything it printed to stderr).
    public func logTail(lines: Int = 40) -> String {
        Self.tail(logPath: logPath, consoleOutputPath: consoleOutputPath, lines: lines)
    }

    /// The user with this name, or `FixtureError.unknownUser`.
    public func testUser(named name: String) throws -> TestUser {
        guard let user = users.first(where: { $0.name == name }) else {
            throw FixtureError.unknownUser(name, known: users.map(\.name))
        }
        return user
    }

    // MARK: - Process management

    enum LaunchOutcome {
        case ready(pid_t)
        case addressInUse(logTail: String)
    }

    /// Starts `dovecot -F` in its own process group and waits for the IMAP greeting.
    static func launch(configPath: String, logPath: String, consoleOutputPath: String, host: String, port: Int,
                       timeout: Double) throws -> LaunchOutcome {
        let logOffset = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
        let consoleOffset = (try? FileManager.default.attributesOfItem(atPath: consoleOutputPath)[.size] as? Int) ?? 0
        let output = open(consoleOutputPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw FixtureError.fileSystem(operation: "open", path: consoleOutputPath, errno: errno) }
        defer { close(output) }
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(devNull) }
        let pid = try Subprocess.spawn(dovecotBinary, ["-F", "-c", configPath], stdin: devNull, stdout: output,
                                       stderr: output, newProcessGroup: true)

        func newOutput() -> String {
            newText(path: logPath, from: logOffset) + newText(path: consoleOutputPath, from: consoleOffset)
        }
        let deadline = Date().addingTimeInterval(timeout)
        var lastDetail = "nothing listening yet"
        while Date() < deadline {
            if let status = Subprocess.exitStatusIfExited(pid) {
                let text = newOutput()
                terminate(processGroup: pid, alreadyReaped: true)
                if text.contains("Address already in use") { return .addressInUse(logTail: lastLines(text, 20)) }
                throw FixtureError.dovecotExited(status: status.description, logTail: lastLines(text, 40))
            }
            if let fd = LoopbackNetwork.connect(host: host, port: port, receiveTimeout: 2) {
                // Until the auth process is up Dovecot sends "* OK Waiting for authentication
                // process to respond.." and only then the real greeting with CAPABILITY.
                let (line, transcript) = LoopbackNetwork.readLine(from: fd) { line in
                    line.hasPrefix("* OK") && !line.contains("Waiting for authentication")
                }
                if line != nil { LoopbackNetwork.send("x LOGOUT\r\n", to: fd) }
                close(fd)
                // A greeting while our master still runs means it is ours: a foreign server on
                // the same port would have made our master exit with "Address already in use".
                if line != nil, Subprocess.exitStatusIfExited(pid) == nil {
                    return .ready(pid)
                }
                lastDetail = transcript.isEmpty ? "connected but no greeting" : "got: \(transcript.prefix(300))"
            }
            usleep(25_000)
        }
        terminate(processGroup: pid)
        throw FixtureError.dovecotNotReady(seconds: timeout, detail: lastDetail, logTail: lastLines(newOutput(), 40))
    }

    /// SIGTERM to the group, grace period, SIGKILL; reaps the master.
    static func terminate(processGroup pid: pid_t, alreadyReaped: Bool = false) {
        if !alreadyReaped {
            kill(-pid, SIGTERM)
            if Subprocess.waitForExit(pid, seconds: 5) == nil {
                kill(-pid, SIGKILL)
                _ = Subprocess.waitForExit(pid)
            }
        }
        // Dovecot's children normally exit with the master; anything left (e.g. a wedged
        // imap process) is killed so it cannot hold files or ports. The pgid was our child's
        // pid moments ago; Linux does not reuse pids that quickly.
        if kill(-pid, 0) == 0 {
            usleep(50_000)
            kill(-pid, SIGKILL)
        }
    }

    static func tail(logPath: String, consoleOutputPath: String, lines: Int) -> String {
        let log = newText(path: logPath, from: 0)
        let console = newText(path: consoleOutputPath, from: 0)
        var text = lastLines(log, lines)
        if !console.isEmpty { text += "\n[dovecot stdout/stderr]\n" + lastLines(console, lines) }
        return text
    }

    static func newText(path: String, from offset: Int) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        try? handle.seek(toOffset: UInt64(offset))
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }

    static func lastLines(_ text: String, _ count: Int) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).joined(separator: "\n")
    }
}

/// Servers still running when the test process exits — for example those a
/// suite keeps in a `static` for all its tests, whose deinit never runs — are
/// stopped by an `atexit` hook, so no Dovecot outlives the test run.
enum LiveServers {
    private static let servers = Locked<[String: pid_t]>([:])
    private static let hook: Void = { atexit { LiveServers.stopAll() } }()

    static func register(_ pid: pid_t, directory: String) {
        _ = hook
        servers.withLock { $0[directory] = pid }
    }

    static func unregister(directory: String) {
        servers.withLock { $0[directory] = nil }
    }

    static func stopAll() {
        let all = servers.withLock { current -> [String: pid_t] in defer { current = [:] }; return current }
        for (directory, pid) in all {
            DovecotServer.terminate(processGroup: pid)
            if ProcessInfo.processInfo.environment["FERRYMAIL_KEEP_DOVECOT"] == nil {
                try? FileManager.default.removeItem(atPath: directory)
            }
        }
    }
}
