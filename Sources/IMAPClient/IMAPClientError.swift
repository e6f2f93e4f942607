import IMAPCodec

/// The one error type of the IMAPClient module. Every case says what went wrong,
/// on which server and (where it applies) during which command, so a log line
/// or a CLI message is enough to act on without a debugger.
public enum IMAPClientError: Error, CustomStringConvertible, Sendable, Equatable {
    /// TCP connect failed (refused, unreachable, DNS).
    case connectFailed(host: String, port: Int, reason: String)
    /// No connection, greeting or command progress within the configured time.
    case timeout(host: String, command: String)
    /// The server closed the connection or the socket failed mid-session.
    case connectionLost(host: String, reason: String)
    /// The server said `BYE` (at greeting or later).
    case serverBye(host: String, text: String)
    /// The greeting was not `OK`/`PREAUTH`.
    case greetingRejected(host: String, text: String)
    /// TLS verification against the trust store / CA file failed.
    case certificateUntrusted(host: String, reason: String)
    /// The leaf certificate's SHA-256 differs from the configured pin.
    case fingerprintMismatch(host: String, expected: String, actual: String)
    /// TLS failed for a reason other than trust (protocol, handshake, ...).
    case tlsFailed(host: String, reason: String)
    /// Configuration requires STARTTLS but the server did not offer it: a
    /// possible downgrade attack, so no credentials were sent.
    case startTLSNotOffered(host: String)
    /// A credential would travel without encryption and `allowInsecureAuth` is off.
    case insecureAuthRefused(host: String)
    /// None of the SASL mechanisms the credentials need are offered.
    case authenticationMechanismUnavailable(host: String, mechanism: String)
    case authenticationFailed(host: String, serverText: String)
    /// A tagged `NO`/`BAD`. `command` is the redacted wire form of the command.
    case commandFailed(command: String, status: ResponseStatus, text: String, code: ResponseCode?)
    /// The server sent something the parser rejects, or out of sequence.
    case protocolError(host: String, description: String)
    /// The command is not possible with what the server offers (e.g. MOVE without MOVE/UIDPLUS).
    case unsupported(host: String, what: String)
    /// The connection was already closed (by `logout()` or an earlier failure) when the command was issued.
    case connectionClosed(host: String)
    /// The configuration is self-contradictory (e.g. plaintext with a certificate pin).
    case invalidConfiguration(String)
    /// An argument cannot be put on the wire (bad mailbox name, non-ASCII search text, ...).
    case invalidArgument(String)
    /// A fetch sink or append body source threw; the command's remaining data was drained.
    case callerFailed(command: String, reason: String)

    /// True when a fresh connection may succeed: network loss, timeouts, BYE.
    /// Authentication, trust and protocol errors need a human or a code change.
    public var isRetryable: Bool {
        switch self {
        case .connectFailed, .timeout, .connectionLost, .serverBye: return true
        case .commandFailed(_, _, _, let code):
            // [UNAVAILABLE]/[INUSE]-style conditions are transient; plain NO is not.
            if case .other(let name, _)? = code { return ["UNAVAILABLE", "INUSE", "LIMIT"].contains(name.uppercased()) }
            return false
        default: return false
        }
    }

    public var description: String {
        switch self {
        case let .connectFailed(host, port, reason):
            return "cannot connect to \(host):\(port): \(reason) — check host, port and network"
        case let .timeout(host, command):
            return "\(host): no response to \(command) in time; the connection was closed (will retry)"
        case let .connectionLost(host, reason):
            return "\(host): connection lost: \(reason)"
        case let .serverBye(host, text):
            return "\(host): server closed the session (BYE): \(text)"
        case let .greetingRejected(host, text):
            return "\(host): server refused the connection at greeting: \(text)"
        case let .certificateUntrusted(host, reason):
            return "\(host): TLS certificate not trusted (\(reason)) — set a CA file or a SHA-256 fingerprint pin if the server uses a private CA"
        case let .fingerprintMismatch(host, expected, actual):
            return "\(host): TLS certificate fingerprint mismatch: expected SHA-256 \(expected), server presented \(actual)"
        case let .tlsFailed(host, reason):
            return "\(host): TLS failed: \(reason)"
        case let .startTLSNotOffered(host):
            return "\(host): STARTTLS is required but the server did not offer it (possible downgrade attack); no credentials were sent"
        case let .insecureAuthRefused(host):
            return "\(host): refusing to send credentials over an unencrypted connection; use TLS or set allowInsecureAuth"
        case let .authenticationMechanismUnavailable(host, mechanism):
            return "\(host): server does not offer AUTH=\(mechanism) needed by the configured credentials"
        case let .authenticationFailed(host, serverText):
            return "\(host): authentication failed: \(serverText)"
        case let .commandFailed(command, status, text, _):
            return "\(command) failed: \(status.rawValue) \(text)"
        case let .protocolError(host, description):
            return "\(host): protocol error: \(description)"
        case let .unsupported(host, what):
            return "\(host): server does not support \(what)"
        case let .connectionClosed(host):
            return "\(host): connection is closed"
        case let .invalidConfiguration(text):
            return "invalid IMAP configuration: \(text)"
        case let .invalidArgument(text):
            return "invalid IMAP command argument: \(text)"
        case let .callerFailed(command, reason):
            return "\(command) aborted by the caller: \(reason)"
        }
    }
}
