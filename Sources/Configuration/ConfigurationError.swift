import Foundation

/// One problem found in a configuration file, located as precisely as the
/// source allows so the user can jump straight to it.
///
/// Messages never contain secret material: values of credential keys are not
/// echoed, and `password_command` strings are not repeated either because users
/// sometimes inline a password there (`echo hunter2`).
public struct ConfigurationIssue: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable, Equatable {
        case error
        case warning
    }

    public let severity: Severity
    /// The configuration file as the caller named it (what `load(path:)` was
    /// given, or the `source` passed to `parse`).
    public let file: String
    /// 1-based line; `nil` only for problems with the file as a whole
    /// (unreadable, not UTF-8).
    public let line: Int?
    /// 1-based column (in Unicode scalars) when known.
    public let column: Int?
    /// The account's `name`, or `#n` (its 1-based position) when the account has
    /// no usable name. `nil` for problems outside `[[account]]` tables.
    public let account: String?
    /// The key at fault, dotted for sub-tables (`special_use.sent`).
    public let key: String?
    /// What is wrong.
    public let message: String
    /// How to fix it, when there is something more specific to say than the message.
    public let hint: String?

    public init(
        severity: Severity = .error,
        file: String,
        line: Int?,
        column: Int? = nil,
        account: String? = nil,
        key: String? = nil,
        message: String,
        hint: String? = nil
    ) {
        self.severity = severity
        self.file = file
        self.line = line
        self.column = column
        self.account = account
        self.key = key
        self.message = message
        self.hint = hint
    }

    /// Compiler style, so editors and terminals can link the location:
    /// `config.toml:12:1: error: account "work": unknown key 'pasword_command' (did you mean 'password_command'?)`
    public var description: String {
        var location = file
        if let line {
            location += ":\(line)"
            if let column { location += ":\(column)" }
        }
        var text = "\(location): \(severity.rawValue): "
        if let account {
            text += account.hasPrefix("#") ? "account \(account): " : "account \"\(account)\": "
        }
        text += message
        if let hint { text += " (\(hint))" }
        return text
    }
}

/// Everything wrong with a configuration file, reported together so a user
/// fixes all of it in one edit instead of one error per run.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible, LocalizedError {
    /// Never empty; errors only (warnings travel with a successful result).
    public let issues: [ConfigurationIssue]

    public init(issues: [ConfigurationIssue]) {
        self.issues = issues
    }

    /// One issue per line, in file order.
    public var description: String {
        issues.map(\.description).joined(separator: "\n")
    }

    /// Foundation prints `localizedDescription` for `any Error`; without this it
    /// would say "The operation could not be completed".
    public var errorDescription: String? { description }
}
