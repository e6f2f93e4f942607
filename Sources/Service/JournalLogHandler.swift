import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A swift-log handler writing one line per message to standard error.
///
/// Under systemd (`JOURNAL_STREAM` or `NOTIFY_SOCKET` set) each line starts
/// with the `sd-daemon(3)` priority prefix `<N>`, which journald turns into the
/// entry's priority (so `journalctl -p warning` works), and carries no time
/// stamp (journald adds its own). Otherwise lines are plain with an ISO time.
///
/// `ferrymail.account` and `ferrymail.mailbox` come first, as `account=… mailbox=…`,
/// then the other metadata sorted by key; a line without an account still shows
/// `account=-` so lines of one daemon grep alike. Credentials never reach a
/// logger in the first place (configuration values print secret sources
/// redacted; IMAP wire traces redact LOGIN/AUTHENTICATE); this handler adds
/// nothing beyond what it is given.
public struct JournalLogHandler: LogHandler {
    public enum Format: Sendable, Hashable {
        /// `<6>…` prefixes, no time stamp.
        case journal
        /// Time stamp and level name.
        case plain
    }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public let label: String
    public let format: Format
    private let sink: Sink

    /// Where lines go: stderr by default, a buffer in tests.
    public final class Sink: Sendable {
        private let write: @Sendable (String) -> Void
        public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }
        func emit(_ line: String) { write(line) }

        /// One `write(2)` per line, so lines of concurrent tasks never interleave.
        public static let standardError = Sink { line in
            var bytes = Array(line.utf8)
            bytes.append(UInt8(ascii: "\n"))
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let written = Glibc.write(2, raw.baseAddress! + offset, raw.count - offset)
                    if written <= 0 { if errno == EINTR { continue }; return }
                    offset += written
                }
            }
        }
    }

    public init(label: String, format: Format, level: Logger.Level = .info, sink: Sink = .standardError) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.sink = sink
    }

    /// `.journal` when systemd collects our stderr, `.plain` otherwise.
    public static func format(for environment: [String: String]) -> Format {
        environment["JOURNAL_STREAM"] != nil || environment["NOTIFY_SOCKET"] != nil ? .journal : .plain
    }

    /// Bootstraps swift-log with this handler. Call once, at process start
    /// (the CLI's `daemon` command does).
    public static func bootstrap(level: Logger.Level, environment: [String: String]) {
        let format = format(for: environment)
        LoggingSystem.bootstrap { label in JournalLogHandler(label: label, format: format, level: level) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The `<N>` priorities of syslog(3).
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    public func log(event: LogEvent) {
        sink.emit(render(level: event.level, message: event.message, metadata: event.metadata))
    }

    /// The line for one message, without the newline.
    public func render(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?) -> String {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit { merged.merge(explicit) { _, new in new } }
        let account = merged.removeValue(forKey: "ferrymail.account").map { "\($0)" } ?? "-"
        let mailbox = merged.removeValue(forKey: "ferrymail.mailbox").map { "\($0)" }
        var context = "account=" + Self.quoted(account)
        if let mailbox { context += " mailbox=" + Self.quoted(mailbox) }
        for key in merged.keys.sorted() {
            let name = key.hasPrefix("ferrymail.") ? String(key.dropFirst("ferrymail.".count)) : key
            context += " \(name)=" + Self.quoted("\(merged[key]!)")
        }
        // A message spanning lines would become several journal entries, the
        // later ones without priority: keep it on one line.
        let text = "\(message)".replacingNewlines()
        switch format {
        case .journal:
            return "<\(Self.priority(level))>\(context): \(text)"
        case .plain:
            return "\(Self.timestamp()) \(level.rawValue.uppercased()) \(context): \(text)"
        }
    }

    static func quoted(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) else { return value }
        return "\"" + value.replacingAll("\"", with: "\\\"") + "\""
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = Int(now.tv_nsec / 1_000_000)
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }
}

extension String {
    func replacingNewlines() -> String {
        guard contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else { return self }
        return String(map { $0 == "\n" || $0 == "\r" || $0 == "\r\n" ? " " : $0 })
    }

    func replacingAll(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
