import Foundation
import TOMLKit

extension FerrymailConfiguration {
    /// `$XDG_CONFIG_HOME/ferrymail/config.toml`, else `~/.config/ferrymail/config.toml`.
    /// A relative `XDG_CONFIG_HOME` is ignored, as the XDG spec requires.
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        xdgDirectory("XDG_CONFIG_HOME", fallback: ".config", environment: environment) + "/ferrymail/config.toml"
    }

    /// `$XDG_STATE_HOME/ferrymail/state.sqlite`, else `~/.local/state/ferrymail/state.sqlite`.
    public static func defaultStatePath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        xdgDirectory("XDG_STATE_HOME", fallback: ".local/state", environment: environment) + "/ferrymail/state.sqlite"
    }

    static func homeDirectory(_ environment: [String: String]) -> String {
        if let home = environment["HOME"], home.hasPrefix("/") { return PathResolver.normalize(home) }
        return PathResolver.normalize(NSHomeDirectory())
    }

    private static func xdgDirectory(_ variable: String, fallback: String, environment: [String: String]) -> String {
        if let value = environment[variable], value.hasPrefix("/") { return PathResolver.normalize(value) }
        return PathResolver.normalize(homeDirectory(environment) + "/" + fallback)
    }

    /// Reads, parses and validates the file at `path` (`~` is expanded).
    ///
    /// Relative paths inside the file are resolved against the file's
    /// directory. Issues name the file as `path` was given. A world-writable
    /// file is accepted with a warning: anyone able to edit it can make
    /// ferrymail run commands (`password_command`) as you.
    public static func load(
        path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigurationError) -> FerrymailConfiguration {
        let home = homeDirectory(environment)
        let absolute: String
        do {
            absolute = try PathResolver(home: home, baseDirectory: FileManager.default.currentDirectoryPath)
                .resolve(path)
        } catch {
            throw ConfigurationError(issues: [
                ConfigurationIssue(file: path, line: nil, message: "cannot use this path for the configuration file",
                    hint: "give an absolute path, one relative to the current directory, or one starting with ~/")
            ])
        }

        var info = stat()
        guard stat(absolute, &info) == 0 else {
            let code = errno
            let hint = code == ENOENT
                ? "create it (config.example.toml shows every setting) or pass --config with the right path" : nil
            throw ConfigurationError(issues: [
                ConfigurationIssue(file: path, line: nil,
                    message: "cannot read configuration file: \(SecretSource.errnoText(code))", hint: hint)
            ])
        }
        var fileWarnings: [ConfigurationIssue] = []
        if info.st_mode & 0o002 != 0 {
            fileWarnings.append(ConfigurationIssue(
                severity: .warning, file: path, line: nil,
                message: "the configuration file is writable by every user on this machine, who could make"
                    + " ferrymail run any command as you through password_command",
                hint: "run: chmod o-w '\(absolute)'"))
        }

        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: absolute))
        } catch {
            throw ConfigurationError(issues: [
                ConfigurationIssue(file: path, line: nil,
                    message: "cannot read configuration file: \((error as NSError).localizedDescription)")
            ])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(issues: [
                ConfigurationIssue(file: path, line: nil, message: "the configuration file is not valid UTF-8",
                    hint: "TOML files must be UTF-8; re-save it with UTF-8 encoding")
            ])
        }
        return try parse(text, source: path, baseDirectory: (absolute as NSString).deletingLastPathComponent,
            environment: environment, initialWarnings: fileWarnings, readableByOthers: info.st_mode & 0o044 != 0)
    }

    /// Parses and validates configuration text. `source` names it in issues;
    /// relative paths in the text resolve against `source`'s directory (made
    /// absolute against the current directory). Nothing is executed and no
    /// secret is read; only `ca_file` is checked for existence.
    public static func parse(
        _ text: String,
        source: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigurationError) -> FerrymailConfiguration {
        let home = homeDirectory(environment)
        let absoluteSource = (try? PathResolver(home: home, baseDirectory: FileManager.default.currentDirectoryPath)
            .resolve(source)) ?? FileManager.default.currentDirectoryPath + "/" + source
        return try parse(text, source: source, baseDirectory: (absoluteSource as NSString).deletingLastPathComponent,
            environment: environment, initialWarnings: [])
    }

    static func parse(
        _ text: String, source: String, baseDirectory: String, environment: [String: String],
        initialWarnings: [ConfigurationIssue], readableByOthers: Bool = false
    ) throws(ConfigurationError) -> FerrymailConfiguration {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(issues: [
                ConfigurationIssue(file: source, line: error.source.begin.line, column: error.source.begin.column,
                    message: "TOML syntax error: \(error.description)")
            ])
        } catch {
            throw ConfigurationError(issues: [
                ConfigurationIssue(file: source, line: nil, message: "TOML syntax error: \(error)")
            ])
        }
        let parser = ConfigurationParser(
            source: source, text: text,
            paths: PathResolver(home: homeDirectory(environment), baseDirectory: baseDirectory),
            environment: environment)
        parser.warnings = initialWarnings
        parser.readableByOthers = readableByOthers
        let result = parser.parse(root)
        guard parser.errors.isEmpty, let (general, accounts) = result else {
            throw ConfigurationError(issues: ConfigurationParser.inFileOrder(parser.errors))
        }
        return FerrymailConfiguration(
            source: source, general: general, accounts: accounts,
            warnings: ConfigurationParser.inFileOrder(parser.warnings).map(\.description))
    }
}

/// Key names, in one place so unknown-key suggestions and "belongs elsewhere"
/// hints stay in sync with what is parsed.
enum Keys {
    /// `state` may also stand at the top, as in the issue's minimal form.
    static let topLevel = ["general", "account", "state"]
    static let policy = ["deletions", "mass_delete_threshold", "full_reconcile_interval", "poll_interval", "backoff_max",
                         "max_message_size"]
    static let generalOnly = ["state", "connections_per_account", "log_level"]
    static let secrets = ["password_command", "password_file", "password_env", "oauth2_token_command", "password"]
    /// `tls` and `allow_insecure` are the short spellings of `security` and
    /// `allow_insecure_auth`.
    static let accountOnly = [
        "name", "host", "port", "security", "tls", "user", "auth", "ca_file", "fingerprint", "allow_insecure_auth",
        "allow_insecure",
        "compress", "maildir", "layout", "folder_name_encoding", "new_mail_to", "include", "exclude",
        "idle_folders", "folder_map", "special_use",
    ] + secrets
    static let general = generalOnly + policy
    static let account = accountOnly + policy
}

/// One TOML table being read: where it is, and which account it belongs to.
struct Section {
    let table: TOMLTable
    /// Locator path of the table.
    let path: [String]
    /// Account label for issues (`nil` outside accounts).
    var account: String?
    /// Prefix for issue keys, e.g. `special_use.`.
    let keyPrefix: String

    func keyPath(_ key: String) -> [String] { path + [key] }
}

/// Single-use collector of issues while turning a TOML tree into typed settings.
/// Every check records its problem and carries on, so one run reports them all.
final class ConfigurationParser {
    let source: String
    let locator: SourceLocator
    let paths: PathResolver
    let environment: [String: String]
    var errors: [ConfigurationIssue] = []
    var warnings: [ConfigurationIssue] = []
    /// Group or others may read the file (checked by `load`): an inline
    /// `password` in it earns a warning.
    var readableByOthers = false

    init(source: String, text: String, paths: PathResolver, environment: [String: String]) {
        self.source = source
        self.locator = SourceLocator(text: text)
        self.paths = paths
        self.environment = environment
    }

    static func inFileOrder(_ issues: [ConfigurationIssue]) -> [ConfigurationIssue] {
        issues.enumerated().sorted { lhs, rhs in
            let (l, r) = (lhs.element.line ?? 0, rhs.element.line ?? 0)
            return l != r ? l < r : lhs.offset < rhs.offset
        }.map(\.element)
    }

    // MARK: Recording issues

    func issue(
        _ severity: ConfigurationIssue.Severity, at path: [String], account: String?, key: String?,
        _ message: String, hint: String? = nil
    ) {
        let position = locator.nearest(path)
        let issue = ConfigurationIssue(
            severity: severity, file: source, line: position?.line, column: position?.column,
            account: account, key: key, message: message, hint: hint)
        if severity == .error { errors.append(issue) } else { warnings.append(issue) }
    }

    func error(_ section: Section, _ key: String, _ message: String, hint: String? = nil) {
        issue(.error, at: section.keyPath(key), account: section.account, key: section.keyPrefix + key, message,
            hint: hint)
    }

    func warning(_ section: Section, _ key: String, _ message: String, hint: String? = nil) {
        issue(.warning, at: section.keyPath(key), account: section.account, key: section.keyPrefix + key, message,
            hint: hint)
    }

    func line(of section: Section, _ key: String) -> Int {
        locator.nearest(section.keyPath(key))?.line ?? 0
    }

    // MARK: Typed access

    static func describe(_ type: TOMLType) -> String {
        switch type {
        case .int: "an integer"
        case .double: "a floating-point number"
        case .array: "an array"
        case .table: "a table"
        case .string: "a string"
        case .bool: "a boolean"
        case .date: "a date"
        case .time: "a time"
        case .dateTime: "a date-time"
        }
    }

    func mismatch(_ section: Section, _ key: String, expected: String, found: TOMLValueConvertible, hint: String? = nil) {
        error(section, key, "'\(section.keyPrefix + key)' must be \(expected), not \(Self.describe(found.type))",
            hint: hint)
    }

    func string(_ section: Section, _ key: String) -> String? {
        guard let value = section.table[key] else { return nil }
        if let text = value.string { return text }
        mismatch(section, key, expected: "a string", found: value, hint: "put the value in double quotes")
        return nil
    }

    /// A string that must not be empty (names, hosts, commands…).
    func nonEmptyString(_ section: Section, _ key: String) -> String? {
        guard let text = string(section, key) else { return nil }
        guard !text.trimmingWhitespace().isEmpty else {
            error(section, key, "'\(section.keyPrefix + key)' is empty")
            return nil
        }
        return text
    }

    func integer(_ section: Section, _ key: String) -> Int? {
        guard let value = section.table[key] else { return nil }
        if let number = value.int { return number }
        let hint = value.string.flatMap { Int($0.trimmingWhitespace()) }.map { "write \(key) = \($0) without quotes" }
        mismatch(section, key, expected: "an integer", found: value, hint: hint)
        return nil
    }

    func boolean(_ section: Section, _ key: String) -> Bool? {
        guard let value = section.table[key] else { return nil }
        if let flag = value.bool { return flag }
        let hint = value.string.flatMap { ["true", "false"].contains($0.lowercased()) ? $0.lowercased() : nil }
            .map { "write \(key) = \($0) without quotes" } ?? "use true or false"
        mismatch(section, key, expected: "true or false", found: value, hint: hint)
        return nil
    }

    func number(_ section: Section, _ key: String) -> Double? {
        guard let value = section.table[key] else { return nil }
        if let number = value.double { return number }
        if let number = value.int { return Double(number) }
        let hint = value.string.flatMap { Double($0.trimmingWhitespace()) }.map { "write \(key) = \($0) without quotes" }
        mismatch(section, key, expected: "a number", found: value, hint: hint)
        return nil
    }

    func keyword<Value: ConfigurationKeyword>(_ section: Section, _ key: String, as type: Value.Type) -> Value? {
        guard let text = string(section, key) else { return nil }
        if let value = Value(rawValue: text) ?? Value.allCases.first(where: { $0.rawValue.lowercased() == text.lowercased() }) {
            return value
        }
        let allowed = Value.allowedValues
        let hint = Suggestion.closest(to: text, in: allowed).map { "did you mean '\($0)'?" }
        error(section, key,
            "invalid \(section.keyPrefix + key) '\(text)'; expected one of: \(allowed.joined(separator: ", "))",
            hint: hint)
        return nil
    }

    func duration(_ section: Section, _ key: String) -> Duration? {
        guard let value = section.table[key] else { return nil }
        guard let text = value.string else {
            let hint = value.int.map { "write \(key) = \"\($0)s\" for \($0) seconds" }
                ?? "write a duration such as \"30s\", \"5m\" or \"1h30m\""
            mismatch(section, key, expected: "a duration string", found: value, hint: hint)
            return nil
        }
        guard let duration = DurationText.parse(text) else {
            error(section, key, "'\(key)' is not a duration: '\(text)'",
                hint: "use whole numbers with units d, h, m, s or ms, largest first: \"30s\", \"5m\", \"1h30m\"")
            return nil
        }
        guard duration > .zero else {
            error(section, key, "'\(key)' must be longer than zero")
            return nil
        }
        return duration
    }

    func stringArray(_ section: Section, _ key: String) -> [String]? {
        guard let value = section.table[key] else { return nil }
        guard let array = value.array else {
            let hint = value.string.map { "write \(key) = [\"\($0)\"]" } ?? "write a list of strings: [\"a\", \"b\"]"
            mismatch(section, key, expected: "an array of strings", found: value, hint: hint)
            return nil
        }
        var strings: [String] = []
        for (index, element) in array.enumerated() {
            guard let text = element.string, !text.isEmpty else {
                let problem = element.string == nil ? Self.describe(element.type) : "an empty string"
                error(section, key, "element \(index + 1) of '\(key)' must be a non-empty string, not \(problem)")
                return nil
            }
            strings.append(text)
        }
        return strings
    }

    func subtable(_ section: Section, _ key: String, account: String?) -> Section? {
        guard let value = section.table[key] else { return nil }
        guard let table = value.table else {
            mismatch(section, key, expected: "a table", found: value,
                hint: "write it as its own [account.\(key)] section below the account, or inline: \(key) = { … }")
            return nil
        }
        return Section(table: table, path: section.keyPath(key), account: account, keyPrefix: key + ".")
    }

    func path(_ section: Section, _ key: String) -> String? {
        guard let raw = nonEmptyString(section, key) else { return nil }
        do {
            return try paths.resolve(raw)
        } catch {
            switch error {
            case .otherUsersHome:
                self.error(section, key, "'\(key)': '~user' paths are not supported", hint: "write the full path")
            case .empty:
                self.error(section, key, "'\(key)' is empty")
            }
            return nil
        }
    }

    /// Reports keys that are not in `allowed`, with a typo suggestion or a hint
    /// about where the key belongs.
    func checkKeys(_ section: Section, allowed: [String], misplaced: [String: String]) {
        for key in section.table.keys where !allowed.contains(key) {
            let name = section.keyPrefix + key
            let hint: String
            if let elsewhere = misplaced[key] {
                hint = elsewhere
            } else if key == "pass" {
                hint = "did you mean 'password'? password_command, password_file or password_env keep it out of this file"
            } else if let suggestion = Suggestion.closest(to: key, in: allowed) {
                hint = "did you mean '\(suggestion)'?"
            } else {
                hint = "valid keys here: \(allowed.joined(separator: ", "))"
            }
            issue(.error, at: section.keyPath(key), account: section.account, key: name, "unknown key '\(name)'",
                hint: hint)
        }
    }

    // MARK: Document

    func parse(_ root: TOMLTable) -> (GeneralSettings, [AccountConfiguration])? {
        let top = Section(table: root, path: [], account: nil, keyPrefix: "")
        var misplacedAtTop: [String: String] = [:]
        for key in Keys.general { misplacedAtTop[key] = "general settings go below a [general] header" }
        for key in Keys.accountOnly { misplacedAtTop[key] = "account settings go below an [[account]] header" }
        checkKeys(top, allowed: Keys.topLevel, misplaced: misplacedAtTop)

        let general = parseGeneral(top)
        let accounts = parseAccounts(top, general: general)
        guard let general, let accounts else { return nil }
        return (general, accounts)
    }

    func parseGeneral(_ top: Section) -> GeneralSettings? {
        var section = Section(table: TOMLTable(), path: ["general"], account: nil, keyPrefix: "")
        if let value = top.table["general"] {
            guard let table = value.table else {
                mismatch(top, "general", expected: "a table", found: value, hint: "write a [general] header")
                return nil
            }
            section = Section(table: table, path: ["general"], account: nil, keyPrefix: "")
        }
        let before = errors.count
        var misplaced: [String: String] = [:]
        for key in Keys.accountOnly { misplaced[key] = "'\(key)' is an account setting; move it into an [[account]] table" }
        checkKeys(section, allowed: Keys.general, misplaced: misplaced)

        var statePath = FerrymailConfiguration.defaultStatePath(environment: environment)
        if section.table["state"] != nil {
            if let resolved = path(section, "state") { statePath = resolved }
            if top.table["state"] != nil {
                error(top, "state", "'state' is set both at the top and in [general]", hint: "keep one of them")
            }
        } else if top.table["state"] != nil {
            if let resolved = path(top, "state") { statePath = resolved }
        }
        var connections = 4
        if let value = integer(section, "connections_per_account") {
            if (1...16).contains(value) {
                connections = value
            } else {
                error(section, "connections_per_account", "connections_per_account must be between 1 and 16, not \(value)",
                    hint: "servers limit connections per user (Gmail: 15 across all clients); 4 is a good start")
            }
        }
        let logLevel = keyword(section, "log_level", as: GeneralSettings.LogLevel.self) ?? .info
        let defaults = parsePolicy(section, base: .defaults)
        guard errors.count == before else { return nil }
        return GeneralSettings(statePath: statePath, connectionsPerAccount: connections, logLevel: logLevel,
            defaults: defaults)
    }

    func parsePolicy(_ section: Section, base: SyncPolicy) -> SyncPolicy {
        var policy = base
        if let deletions = keyword(section, "deletions", as: SyncPolicy.Deletions.self) { policy.deletions = deletions }
        if let threshold = number(section, "mass_delete_threshold") {
            if threshold >= 0 && threshold <= 1 {
                policy.massDeleteThreshold = threshold
            } else {
                error(section, "mass_delete_threshold",
                    "mass_delete_threshold is a share of a folder's messages and must be between 0 and 1, not \(threshold)",
                    hint: "0.5 stops a run that would delete more than half of a folder; 1 disables the guard")
            }
        }
        if let value = duration(section, "full_reconcile_interval") { policy.fullReconcileInterval = value }
        if let value = duration(section, "poll_interval") { policy.pollInterval = value }
        if let value = duration(section, "backoff_max") { policy.backoffMax = value }
        if section.table["max_message_size"] != nil { policy.maxMessageSize = size(section, "max_message_size") }
        return policy
    }

    /// A byte count: an integer, or a string with a K, M or G suffix (powers
    /// of 1024), as in "25M". 0 means no limit.
    func size(_ section: Section, _ key: String) -> Int64? {
        guard let value = section.table[key] else { return nil }
        let hint = "write a size such as \"25M\", \"512K\" or \"1G\", or 0 for no limit"
        var bytes: Int64?
        if let number = value.int {
            bytes = Int64(number)
        } else if let text = value.string?.trimmingWhitespace().uppercased(), !text.isEmpty {
            let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
            if let unit = text.last.flatMap({ units[$0] }) {
                bytes = Int64(text.dropLast().trimmingWhitespace()).flatMap { $0.multipliedReportingOverflow(by: unit).overflow ? nil : $0 * unit }
            } else {
                bytes = Int64(text)
            }
        } else {
            mismatch(section, key, expected: "a size", found: value, hint: hint)
            return nil
        }
        guard let bytes, bytes >= 0 else {
            error(section, key, "'\(key)' is not a size: \(value.string.map { "'\($0)'" } ?? "\(value.int ?? 0)")", hint: hint)
            return nil
        }
        return bytes == 0 ? nil : bytes
    }

    // MARK: Accounts

    /// What cross-account checks need, collected even from accounts that have other errors.
    struct AccountIdentity {
        var label: String
        var section: Section
        var name: String?
        var maildir: String?
    }

    func parseAccounts(_ top: Section, general: GeneralSettings?) -> [AccountConfiguration]? {
        guard let value = top.table["account"] else {
            errors.append(ConfigurationIssue(file: source, line: nil, message: "no accounts are configured",
                hint: "add an [[account]] table with name, host, user, a password source and maildir;"
                    + " config.example.toml shows one"))
            return nil
        }
        guard let array = value.array else {
            if value.table != nil {
                error(top, "account", "'account' must be an array of tables, but it was written as a single table",
                    hint: "write [[account]] (double brackets) above each account, and [account.folder_map] for its sub-tables")
            } else {
                mismatch(top, "account", expected: "an array of tables", found: value,
                    hint: "write [[account]] (double brackets) above each account")
            }
            return nil
        }

        let policyBase = general?.defaults ?? .defaults
        var accounts: [AccountConfiguration] = []
        var identities: [AccountIdentity] = []
        for (index, element) in array.enumerated() {
            let path = ["account", SourceLocator.element(index)]
            guard let table = element.table else {
                issue(.error, at: path, account: nil, key: "account",
                    "element \(index + 1) of 'account' must be a table, not \(Self.describe(element.type))",
                    hint: "write [[account]] above each account's settings")
                continue
            }
            var identity = AccountIdentity(
                label: "#\(index + 1)", section: Section(table: table, path: path, account: "#\(index + 1)", keyPrefix: ""))
            if let account = parseAccount(&identity, policyBase: policyBase, general: general) {
                accounts.append(account)
            }
            identities.append(identity)
        }
        checkAcrossAccounts(identities)
        return accounts
    }

    /// `[A-Za-z0-9._-]{1,64}`, not only dots: names end up in file names.
    static func isValidAccountName(_ name: String) -> Bool {
        (1...64).contains(name.unicodeScalars.count)
            && name.unicodeScalars.allSatisfy { $0.isASCII && (SourceLocator.isBareKeyScalar($0) || $0 == ".") }
            && name.contains { $0 != "." }
    }

    /// A POSIX-portable environment variable name.
    static func isValidVariableName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { $0 != "-" && SourceLocator.isBareKeyScalar($0) }
    }

    func parseAccount(_ identity: inout AccountIdentity, policyBase: SyncPolicy, general: GeneralSettings?)
        -> AccountConfiguration?
    {
        var section = identity.section
        let before = errors.count

        // The name first, so every later issue can say which account it is about.
        var name: String?
        if section.table["name"] == nil {
            issue(.error, at: section.path, account: identity.label, key: "name", "missing required key 'name'",
                hint: "add name = \"work\" (letters, digits, '.', '_', '-'); it selects the account on the command line")
        } else if let candidate = nonEmptyString(section, "name") {
            if Self.isValidAccountName(candidate) {
                name = candidate
                identity.label = candidate
                section.account = candidate
            } else {
                error(section, "name", "invalid account name '\(candidate)'",
                    hint: "use 1 to 64 letters, digits, '.', '_' or '-' (not only dots); the name is used in"
                        + " file names and on the command line")
            }
        }
        identity.name = name
        identity.section = section
        let label = identity.label

        var misplaced: [String: String] = [:]
        for key in Keys.generalOnly { misplaced[key] = "'\(key)' applies to all accounts; move it to [general]" }
        checkKeys(section, allowed: Keys.account, misplaced: misplaced)

        func required(_ key: String, example: String) {
            if section.table[key] == nil {
                issue(.error, at: section.path, account: label, key: key, "missing required key '\(key)'",
                    hint: "add \(key) = \(example)")
            }
        }
        required("host", example: "\"imap.example.org\"")
        required("user", example: "\"me@example.org\"")
        required("maildir", example: "\"~/Mail/\(name ?? "work")\"")

        let host = nonEmptyString(section, "host").flatMap { validatedHost($0, section) }
        var security = keyword(section, "security", as: AccountConfiguration.Security.self) ?? .implicitTLS
        if section.table["tls"] != nil {
            if section.table["security"] != nil {
                error(section, "tls", "'tls' and 'security' say the same thing", hint: "keep one of them")
            } else if let mode = keyword(section, "tls", as: AccountConfiguration.TLSMode.self) {
                security = mode.security
            }
        }
        var port = security.defaultPort
        if let value = integer(section, "port") {
            if (1...65535).contains(value) {
                port = value
            } else {
                error(section, "port", "port \(value) is out of range (1-65535)",
                    hint: "IMAP uses 993 with security = \"tls\" and 143 with \"starttls\"")
            }
        }
        let user = nonEmptyString(section, "user")

        // Credentials: exactly one source, consistent with `auth`.
        let sourceKeys = Keys.secrets.filter { section.table[$0] != nil }
            .sorted { line(of: section, $0) < line(of: section, $1) }
        var secret: SecretSource?
        var authentication: AccountConfiguration.Authentication?
        let explicitAuth = keyword(section, "auth", as: AccountConfiguration.Authentication.self)
        if sourceKeys.isEmpty {
            issue(.error, at: section.path, account: label, key: nil, "no password or token source",
                hint: "add exactly one of password_command (e.g. \"pass show mail/\(name ?? "work")\"),"
                    + " password_file, password_env or oauth2_token_command")
        } else if sourceKeys.count > 1 {
            let listed = sourceKeys.map { "'\($0)'" }.joined(separator: ", ")
            error(section, sourceKeys[1], "more than one password source: \(listed)",
                hint: "an account logs in with one secret; keep exactly one of them")
        } else {
            let key = sourceKeys[0]
            let isToken = key == "oauth2_token_command"
            if let explicitAuth {
                if explicitAuth.usesToken && !isToken {
                    error(section, key, "auth = \"\(explicitAuth.rawValue)\" logs in with an OAuth2 token, not a password",
                        hint: "replace '\(key)' with oauth2_token_command, a command that prints a fresh access token")
                } else if !explicitAuth.usesToken && isToken {
                    error(section, "auth", "auth = \"password\" cannot use oauth2_token_command",
                        hint: "set auth = \"xoauth2\" or \"oauthbearer\", or use password_command for a password")
                } else {
                    authentication = explicitAuth
                }
            } else if section.table["auth"] == nil {
                // Inferred: XOAUTH2 is what Gmail and Microsoft 365 both accept.
                authentication = isToken ? .xoauth2 : .password
            }
            let accountName = name ?? label
            switch key {
            case "password":
                if let password = string(section, key) {
                    if password.isEmpty {
                        error(section, key, "'password' is empty")
                    } else {
                        secret = SecretSource(kind: .inline(password), account: accountName, key: key)
                        if readableByOthers {
                            warning(section, key, "this file holds a password and other users on this machine can read it",
                                hint: "run: chmod 600 on the file, or use password_command / password_file / password_env")
                        }
                    }
                }
            case "password_file":
                if let file = path(section, key) {
                    secret = SecretSource(kind: .file(path: file), account: accountName, key: key)
                }
            case "password_env":
                if let variable = nonEmptyString(section, key) {
                    if Self.isValidVariableName(variable) {
                        secret = SecretSource(kind: .environment(variable: variable), account: accountName, key: key)
                    } else {
                        error(section, key, "'password_env' must be an environment variable name",
                            hint: "letters, digits and '_', not starting with a digit; without a leading '$'")
                    }
                }
            default:
                // Command values are not echoed anywhere: they may contain the secret.
                if let value = section.table[key] {
                    if let command = value.string {
                        if command.trimmingWhitespace().isEmpty {
                            error(section, key, "'\(key)' is empty")
                        } else {
                            secret = SecretSource(kind: .command(command), account: accountName, key: key)
                        }
                    } else {
                        mismatch(section, key, expected: "a string", found: value,
                            hint: "write the shell command in quotes, e.g. \"pass show mail/\(accountName)\"")
                    }
                }
            }
        }

        let allowInsecureAuth = boolean(section, "allow_insecure_auth") ?? boolean(section, "allow_insecure") ?? false
        if security == .plaintext && !allowInsecureAuth {
            error(section, "security",
                "security = \"plain\" would send the \(authentication?.usesToken == true ? "token" : "password")"
                    + " unencrypted: anyone on the network path could read it and log in as you",
                hint: "use security = \"tls\" with port 993 or \"starttls\" with port 143; if the link is already"
                    + " private, as over localhost, a VPN or an SSH tunnel, set allow_insecure_auth = true")
        }
        if security != .plaintext && allowInsecureAuth {
            warning(section, "allow_insecure_auth",
                "allow_insecure_auth has no effect with security = \"\(security.rawValue)\"",
                hint: "remove it; it only permits logging in over security = \"plain\"")
        }

        var caFile: String?
        if section.table["ca_file"] != nil, let file = path(section, "ca_file") {
            if FileManager.default.isReadableFile(atPath: file) {
                caFile = file
            } else {
                error(section, "ca_file", "ca_file '\(file)' does not exist or is not readable",
                    hint: "point it at a PEM file with the extra CA certificates, or remove it to use only the system trust store")
            }
        }
        var fingerprint: CertificateFingerprint?
        if let text = string(section, "fingerprint") {
            if let parsed = CertificateFingerprint(text) {
                fingerprint = parsed
            } else {
                error(section, "fingerprint", "invalid fingerprint '\(text)'",
                    hint: "give the SHA-256 of the server certificate as 64 hex digits, colons optional, e.g."
                        + " from: openssl s_client -connect \(host ?? "imap.example.org"):\(port) </dev/null"
                        + " | openssl x509 -noout -fingerprint -sha256")
            }
        }
        if security == .plaintext {
            for key in ["ca_file", "fingerprint"] where section.table[key] != nil {
                warning(section, key, "'\(key)' has no effect with security = \"plain\" (there is no TLS)")
            }
        }
        let compress = boolean(section, "compress") ?? true

        var maildir: String?
        if section.table["maildir"] != nil, let root = path(section, "maildir") {
            if root == "/" || root == paths.home {
                error(section, "maildir", "maildir '\(root)' would turn \(root == "/" ? "the root directory" : "your home directory") into a Maildir",
                    hint: "give the account a directory of its own, e.g. \"~/Mail/\(name ?? "work")\"")
            } else {
                maildir = root
            }
        }
        identity.maildir = maildir

        let layout = keyword(section, "layout", as: AccountConfiguration.Layout.self) ?? .maildirPlusPlus
        let encoding = keyword(section, "folder_name_encoding", as: AccountConfiguration.NameEncoding.self) ?? .utf8
        let delivery = keyword(section, "new_mail_to", as: AccountConfiguration.NewMailDelivery.self) ?? .cur
        let include = stringArray(section, "include") ?? ["*"]
        if include.isEmpty {
            warning(section, "include", "include is empty, so this account syncs no folders",
                hint: "use include = [\"*\"] for everything")
        }
        let exclude = stringArray(section, "exclude") ?? []
        let idleFolders = stringArray(section, "idle_folders") ?? ["INBOX"]
        if let general, idleFolders.count > general.connectionsPerAccount {
            warning(section, "idle_folders",
                "idle_folders lists \(idleFolders.count) folders but connections_per_account is"
                    + " \(general.connectionsPerAccount); without NOTIFY each watched folder needs its own connection",
                hint: "watch fewer folders or raise connections_per_account; the rest are polled every poll_interval")
        }
        let folderNames = parseFolderNames(section, label: label)
        let policy = parsePolicy(section, base: policyBase)

        guard errors.count == before, let name, let host, let user, let secret, let authentication, let maildir,
            let folderNames
        else { return nil }
        return AccountConfiguration(
            name: name, host: host, port: port, security: security, user: user, authentication: authentication,
            secret: secret, caFile: caFile, fingerprint: fingerprint, allowInsecureAuth: allowInsecureAuth,
            compress: compress, maildir: maildir, layout: layout, folderNameEncoding: encoding,
            newMailDelivery: delivery, folders: FolderFilter(include: include, exclude: exclude),
            idleFolders: idleFolders, folderNames: folderNames, policy: policy)
    }

    /// `host` if it is a bare host name or address; otherwise records why not
    /// (users paste URLs and `host:port` from other clients' settings).
    func validatedHost(_ host: String, _ section: Section) -> String? {
        if host.contains("://") {
            error(section, "host", "'host' must be a host name, not a URL",
                hint: "drop the scheme: host = \"\(host.components(separatedBy: "://").last ?? host)\"")
        } else if host.contains(where: { $0.isWhitespace || $0 == "/" }) {
            error(section, "host", "'host' must be a host name or address, without spaces or slashes")
        } else if let colon = host.lastIndex(of: ":"), host.filter({ $0 == ":" }).count == 1,
            Int(host[host.index(after: colon)...]) != nil
        {
            error(section, "host", "'host' must not include the port",
                hint: "write host = \"\(host[..<colon])\" and port = \(host[host.index(after: colon)...])")
        } else {
            return host
        }
        return nil
    }

    func parseFolderNames(_ section: Section, label: String) -> FolderNameMapping? {
        var serverToLocal: [String: String] = [:]
        var specialUse = FolderNameMapping.defaultSpecialUse
        var valid = true

        if let map = subtable(section, "folder_map", account: label) {
            var claimed: [String: String] = [:]
            for server in map.table.keys.sorted(by: { line(of: map, $0) < line(of: map, $1) }) {
                guard let local = nonEmptyString(map, server) else {
                    valid = false
                    continue
                }
                if let other = claimed[local] {
                    error(map, server, "folder_map maps both '\(other)' and '\(server)' to the local folder '\(local)'",
                        hint: "a local folder can mirror only one server mailbox; give one of them another name")
                    valid = false
                }
                claimed[local] = server
                serverToLocal[server] = local
            }
        } else if section.table["folder_map"] != nil {
            valid = false
        }

        if let roles = subtable(section, "special_use", account: label) {
            var claimed: [String: String] = [:]
            for key in roles.table.keys.sorted(by: { line(of: roles, $0) < line(of: roles, $1) }) {
                guard let role = SpecialUseRole(rawValue: key) else {
                    let allowed = SpecialUseRole.allowedValues
                    let hint = Suggestion.closest(to: key, in: allowed).map { "did you mean '\($0)'?" }
                        ?? "roles are: \(allowed.joined(separator: ", "))"
                    error(roles, key, "unknown special-use role 'special_use.\(key)'", hint: hint)
                    valid = false
                    continue
                }
                guard let local = nonEmptyString(roles, key) else {
                    valid = false
                    continue
                }
                specialUse[role] = local
                if let other = claimed[local] {
                    error(roles, key, "special_use gives '\(other)' and '\(key)' the same local folder '\(local)'",
                        hint: "each role needs its own local folder")
                    valid = false
                }
                claimed[local] = key
            }
        } else if section.table["special_use"] != nil {
            valid = false
        }
        return valid ? FolderNameMapping(serverToLocal: serverToLocal, specialUse: specialUse) : nil
    }

    func checkAcrossAccounts(_ identities: [AccountIdentity]) {
        var seenNames: [String: AccountIdentity] = [:]
        for identity in identities {
            guard let name = identity.name else { continue }
            if let first = seenNames[name.lowercased()] {
                let same = first.name == name ? "" : " ('\(first.name ?? "")' differs only in case)"
                error(identity.section, "name",
                    "duplicate account name '\(name)'\(same); it is also used at line \(line(of: first.section, "name"))",
                    hint: "account names must be unique: they key the sync state and select accounts on the command line")
            } else {
                seenNames[name.lowercased()] = identity
            }
        }

        let roots = identities.compactMap { identity in
            identity.maildir.map { (identity: identity, lexical: $0, physical: PathResolver.physical($0)) }
        }
        for later in roots.indices {
            for earlier in roots.indices where earlier < later {
                let (a, b) = (roots[earlier], roots[later])
                let other = a.identity.name.map { "account \"\($0)\"" } ?? "account \(a.identity.label)"
                let relation: String
                if a.physical == b.physical || a.lexical == b.lexical {
                    relation = "is also the maildir of \(other)"
                } else if PathResolver.contains(a.physical, b.physical) || PathResolver.contains(a.lexical, b.lexical) {
                    relation = "lies inside the maildir of \(other) ('\(a.lexical)')"
                } else if PathResolver.contains(b.physical, a.physical) || PathResolver.contains(b.lexical, a.lexical) {
                    relation = "contains the maildir of \(other) ('\(a.lexical)')"
                } else {
                    continue
                }
                error(b.identity.section, "maildir", "maildir '\(b.lexical)' \(relation)",
                    hint: "each account needs its own, separate Maildir root, e.g. ~/Mail/\(a.identity.label)"
                        + " and ~/Mail/\(b.identity.label)")
            }
        }
    }
}
