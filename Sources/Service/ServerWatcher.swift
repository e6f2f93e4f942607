import Configuration
import IMAPClient
import IMAPCodec
import Logging

/// What an account's server watcher tells its supervisor.
enum WatcherEvent: Sendable, Hashable {
    /// Something changed on the server (in `mailbox` when known).
    case changed(mailbox: String?)
    /// The watch mode is known: with NOTIFY every folder is covered, so the
    /// periodic poll is not needed; with IDLE only some folders are.
    case mode(ServerWatchMode)
    /// A watcher connected again after failing: changes made while it was
    /// down were not notified.
    case reconnected
    /// A watcher connection failed; `report` is false for repeats the back-off
    /// already reported.
    case failed(ServiceError, authentication: Bool, report: Bool)
}

/// How the server is watched.
public enum ServerWatchMode: Sendable, Hashable, CustomStringConvertible {
    /// RFC 5465 NOTIFY for all personal mailboxes, on one connection.
    case notify
    /// IDLE on each of these folders, one connection each; the rest is polled.
    case idle([String])

    public var description: String {
        switch self {
        case .notify: "NOTIFY (all folders)"
        case .idle(let folders): "IDLE on \(folders.joined(separator: ", ")), polling the rest"
        }
    }
}

/// Keeps the notification connections of one account open: NOTIFY where the
/// server offers it, else IDLE on INBOX and `idle_folders` (as many as
/// `connections_per_account` allows). Each connection reconnects on its own
/// with back-off; none of this blocks syncing.
///
/// Connections also sit in IDLE under NOTIFY: servers deliver NOTIFY data
/// while idling, and IDLE (re-issued by the client every 25 minutes) keeps
/// the server's inactivity logout (Dovecot: 30 minutes) from closing the
/// connection.
struct ServerWatcher: Sendable {
    let account: AccountConfiguration
    /// Resolves the secret and builds the client settings; called before
    /// every connection attempt, so a password changed in the password
    /// manager is picked up at the next reconnect.
    let imap: @Sendable () throws -> IMAPConfiguration
    let maximumConnections: Int
    let logger: Logger
    let stop: StopSignal
    let post: @Sendable (WatcherEvent) -> Void

    func run() async {
        guard let mode = await determineMode() else { return }
        post(.mode(mode))
        logger.info("watching the server with \(mode)")
        switch mode {
        case .notify:
            await watch(folder: nil)
        case .idle(let folders):
            await withTaskGroup(of: Void.self) { group in
                for folder in folders {
                    group.addTask { await watch(folder: folder) }
                }
            }
        }
    }

    /// Reads the capabilities once (retrying with back-off) to choose the mode.
    private func determineMode() async -> ServerWatchMode? {
        var backoff = ReconnectBackoff(cap: account.policy.backoffMax)
        var random = SystemRandomNumberGenerator()
        while !stop.isStopped {
            do {
                let capabilities = try await IMAPConnection.withConnection(configuration: try imap()) { connection in
                    await connection.capabilities
                }
                if capabilities.contains(.notify) { return .notify }
                var folders = ["INBOX"]
                for folder in account.idleFolders where !folders.contains(folder) { folders.append(folder) }
                if folders.count > maximumConnections {
                    logger.notice("IDLE on \(maximumConnections) of \(folders.count) folders (connections_per_account); \(folders.dropFirst(maximumConnections).joined(separator: ", ")) polled instead")
                    folders = Array(folders.prefix(maximumConnections))
                }
                return .idle(folders)
            } catch {
                if await failed(error, backoff: &backoff, random: &random) { return nil }
            }
        }
        return nil
    }

    private enum WatchEnd: Sendable {
        case stopped
        case connectionEnded
    }

    /// One connection: NOTIFY (folder nil) or IDLE on `folder`, reconnecting
    /// until stopped.
    private func watch(folder: String?) async {
        var backoff = ReconnectBackoff(cap: account.policy.backoffMax)
        var random = SystemRandomNumberGenerator()
        var wasDown = false
        while !stop.isStopped {
            do {
                let end: WatchEnd = try await IMAPConnection.withConnection(configuration: try imap()) { connection in
                    if let folder {
                        _ = try await connection.examine(folder)
                    } else {
                        try await connection.notify(status: true, [NotifyEventGroup(
                            filter: .personal, events: [.messageNew, .messageExpunge, .flagChange, .mailboxName])])
                    }
                    let idle = try await connection.idle()
                    backoff.succeeded()
                    if wasDown {
                        wasDown = false
                        logger.info("server watch connection restored", metadata: folder.map { ["ferrymail.mailbox": "\($0)"] })
                        post(.reconnected)
                    }
                    let end = await relay(connection.unsolicitedEvents, folder: folder)
                    if case .stopped = end {
                        // End IDLE cleanly; withConnection then logs out.
                        try? await idle.done()
                    }
                    return end
                }
                if case .stopped = end { return }
                throw ServiceError.connection(account: account.name, message: "the server closed the watch connection")
            } catch {
                wasDown = true
                if await failed(error, backoff: &backoff, random: &random) { return }
            }
        }
    }

    /// Forwards change notifications until the connection ends or the
    /// watcher is stopped.
    private func relay(_ events: AsyncStream<UnsolicitedEvent>, folder: String?) async -> WatchEnd {
        let post = self.post
        let stop = self.stop
        return await withTaskGroup(of: WatchEnd.self) { group in
            group.addTask {
                for await event in events {
                    if let mailbox = Self.changedMailbox(event, watching: folder) { post(.changed(mailbox: mailbox)) }
                }
                return .connectionEnded
            }
            group.addTask {
                await stop.wait()
                return .stopped
            }
            let end = await group.next() ?? .stopped
            group.cancelAll()
            return end
        }
    }

    /// The mailbox an unsolicited response says changed: `.some(nil)` when it
    /// is a change of unknown place, nil when it is no change at all. Dovecot's
    /// "* OK Still here" keep-alives during IDLE are conditions and ignored,
    /// or they would cause a sync every two minutes.
    static func changedMailbox(_ event: UnsolicitedEvent, watching folder: String?) -> String?? {
        switch event {
        case .exists, .expunge, .vanished, .fetch:
            return .some(folder)
        case .status(let name, _):
            return .some(String(describing: name))
        case .list:
            return .some(nil)
        case .recent, .flags, .condition, .bye, .other:
            return nil
        }
    }

    /// Logs and posts a failure, then waits out the back-off. Returns true
    /// when stopped meanwhile.
    private func failed(_ error: any Error, backoff: inout ReconnectBackoff,
                        random: inout SystemRandomNumberGenerator) async -> Bool {
        if stop.isStopped { return true }
        let authentication = Self.isAuthenticationFailure(error)
        let decision = backoff.failed(authentication ? .authentication : .transient, random: &random)
        let failure: ServiceError = authentication
            ? .authentication(account: account.name, message: "\(error)")
            : .connection(account: account.name, message: "server watch: \(error)")
        if decision.report {
            logger.warning("\(failure.description) (next attempt in \(Self.format(decision.delay)))")
        } else {
            logger.debug("\(failure.description) (next attempt in \(Self.format(decision.delay)))")
        }
        post(.failed(failure, authentication: authentication, report: decision.report))
        return await stop.sleep(for: decision.delay)
    }

    /// Failures a retry cannot fix without the user: wrong credentials, an
    /// untrusted certificate, a server that refuses the configured security.
    static func isAuthenticationFailure(_ error: any Error) -> Bool {
        if error is SecretResolutionError { return true }
        guard let error = error as? IMAPClientError else { return false }
        switch error {
        case .authenticationFailed, .authenticationMechanismUnavailable, .insecureAuthRefused,
             .certificateUntrusted, .fingerprintMismatch, .startTLSNotOffered:
            return true
        default:
            return false
        }
    }

    static func format(_ duration: Duration) -> String {
        let seconds = ReconnectBackoff.seconds(duration)
        if seconds < 10 { return "\((seconds * 10).rounded() / 10) s" }
        if seconds < 120 { return "\(Int(seconds.rounded())) s" }
        return "\(Int((seconds / 60).rounded())) min"
    }
}
