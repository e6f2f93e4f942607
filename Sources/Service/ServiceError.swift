/// Every failure the daemon itself reports (sync failures are the engine's
/// `SyncError`, logged as they come). Each message names the account where
/// there is one and says what to do, because it is printed as one log line or
/// one CLI error without further context.
public enum ServiceError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The configuration file could not be loaded or is invalid.
    case configuration(path: String, message: String)
    /// The account's password or token could not be fetched.
    case secret(account: String, message: String)
    /// The server refused the credentials.
    case authentication(account: String, message: String)
    /// The server could not be reached or the connection broke.
    case connection(account: String, message: String)
    /// The sync state database could not be opened or written.
    case state(path: String, message: String)
    /// inotify could not watch the Maildir tree.
    case watch(account: String?, path: String, errno: Int32, operation: String)
    /// `NOTIFY_SOCKET` is set but unusable.
    case systemdNotify(socket: String, message: String)
    /// The daemon is shutting down: raised by the store gate in place of the
    /// next store operation, so the engine stops after the message in flight.
    case stopping(account: String)

    public var description: String {
        switch self {
        case let .configuration(path, message):
            return "configuration \(path): \(message)"
        case let .secret(account, message):
            return "account \(account): cannot get the password or token: \(message); fix the secret source in the configuration, then reload (SIGHUP)"
        case let .authentication(account, message):
            return "account \(account): the server refused the credentials: \(message); retrying slowly — fix the password or token, then reload (SIGHUP) to retry at once"
        case let .connection(account, message):
            return "account \(account): \(message); retrying with back-off"
        case let .state(path, message):
            return "state \(path): \(message)"
        case let .watch(account, path, errno, operation):
            let place = account.map { "account \($0): " } ?? ""
            let hint = errno == 28 // ENOSPC from inotify_add_watch: the per-user watch limit
                ? " (inotify watch limit reached: raise fs.inotify.max_user_watches with sysctl)"
                : errno == 24 ? " (too many inotify instances: raise fs.inotify.max_user_instances)" : ""
            return "\(place)cannot \(operation) \(path): \(Self.errnoText(errno))\(hint); local changes are picked up at the next poll instead"
        case let .systemdNotify(socket, message):
            return "systemd notify socket \(socket): \(message)"
        case let .stopping(account):
            return "account \(account): stopping; the sync was interrupted between messages and resumes at the next start"
        }
    }

    static func errnoText(_ code: Int32) -> String {
        "\(String(cString: strerror(code))) (errno \(code))"
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
