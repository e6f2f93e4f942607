import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Which of the two message directories a file lives in.
public enum MaildirSubdirectory: String, Sendable, Hashable, CaseIterable {
    /// Delivered, not yet seen by a mail reader (no `:2,` info by the spec).
    case new
    /// Seen by a mail reader; carries `:2,<flags>`.
    case cur
}

/// One message as found by a scan or produced by a delivery.
public struct MaildirEntry: Sendable, Hashable {
    /// The current file name inside `cur/` or `new/`.
    public let fileName: String
    public let subdirectory: MaildirSubdirectory
    /// Physical size in bytes from the `,S=` field, when the writer recorded it.
    public let size: Int?
    public let flags: MessageFlags
    /// Info characters this store does not interpret (unknown upper-case flags,
    /// keyword letters missing from `dovecot-keywords`); kept on renames so
    /// another program's state is not destroyed by a flag change.
    let preservedInfo: [UInt8]

    /// The file name without the `:2,…` info part: the message's stable local
    /// identity, unchanged by flag changes, new→cur moves and folder moves.
    public var baseName: String {
        if let colon = fileName.utf8.firstIndex(of: UInt8(ascii: ":")) {
            return String(fileName[..<colon])
        }
        return fileName
    }

    /// Path relative to the folder directory, e.g. `cur/123.M4P5Q6.host,S=42:2,S`.
    public var relativePath: String { subdirectory.rawValue + "/" + fileName }
}

/// Parsing and producing Maildir file names
/// (`<unique>[,S=<size>][,…]:2,<flags>`).
enum MaildirFileName {
    struct Parsed {
        var baseEnd: String.Index
        var hasInfo: Bool
        var size: Int?
        var system: SystemFlags
        var keywordMask: UInt32
        var preserved: [UInt8]
    }

    enum Result {
        case message(Parsed)
        case foreign(reason: String)
    }

    /// Parses without touching the file system. `inNew` allows a missing info
    /// part, which is the normal form of a freshly delivered message in `new/`.
    static func parse(_ name: String, inNew: Bool) -> Result {
        let utf8 = name.utf8
        guard let first = utf8.first else { return .foreign(reason: "empty file name") }
        if first == UInt8(ascii: ".") { return .foreign(reason: "dotfile") }
        var parsed = Parsed(baseEnd: name.endIndex, hasInfo: false, size: nil, system: [], keywordMask: 0, preserved: [])
        if let colon = utf8.firstIndex(of: UInt8(ascii: ":")) {
            parsed.baseEnd = colon
            let info = utf8[utf8.index(after: colon)...]
            guard info.starts(with: [UInt8(ascii: "2"), UInt8(ascii: ",")]) else {
                return .foreign(reason: "info part is not ':2,' (experimental or foreign semantics)")
            }
            parsed.hasInfo = true
            for byte in info.dropFirst(2) {
                if let flag = SystemFlags.from(letter: byte) {
                    parsed.system.insert(flag)
                } else if byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") {
                    parsed.keywordMask |= 1 << UInt32(byte - UInt8(ascii: "a"))
                } else if byte == UInt8(ascii: "/") || byte < 0x20 {
                    return .foreign(reason: "control character in info part")
                } else if !parsed.preserved.contains(byte) {
                    parsed.preserved.append(byte)
                }
            }
        } else if !inNew {
            return .foreign(reason: "no ':2,' info part in cur/")
        }
        let base = utf8[..<parsed.baseEnd]
        if base.isEmpty { return .foreign(reason: "empty base name") }
        // Fields after the unique part: ",S=<size>", ",W=<vsize>", …
        var fieldStart: String.Index? = nil
        var i = base.startIndex
        while i < base.endIndex {
            if base[i] == UInt8(ascii: ",") {
                if let start = fieldStart { parsed.size = parsed.size ?? sizeField(utf8[start..<i]) }
                fieldStart = utf8.index(after: i)
            }
            i = utf8.index(after: i)
        }
        if let start = fieldStart { parsed.size = parsed.size ?? sizeField(utf8[start..<base.endIndex]) }
        if parsed.size == 0 { return .foreign(reason: "zero-length message (S=0)") }
        return .message(parsed)
    }

    private static func sizeField(_ field: Substring.UTF8View) -> Int? {
        guard field.count > 2, field.first == UInt8(ascii: "S"),
              field[field.index(after: field.startIndex)] == UInt8(ascii: "=") else { return nil }
        var value = 0
        for byte in field.dropFirst(2) {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = a
        }
        return value
    }

    /// The info part's flag characters, sorted in ASCII order as Dovecot and
    /// the Maildir spec require (system letters, then keyword letters a–z).
    static func infoCharacters(system: SystemFlags, keywordMask: UInt32, preserved: [UInt8]) -> [UInt8] {
        var chars = preserved
        for (letter, flag) in SystemFlags.letters where system.contains(flag) { chars.append(letter) }
        for bit in 0..<26 where keywordMask & (1 << UInt32(bit)) != 0 {
            chars.append(UInt8(ascii: "a") + UInt8(bit))
        }
        chars.sort()
        return chars
    }

    static func fileName(baseName: String, system: SystemFlags, keywordMask: UInt32, preserved: [UInt8]) -> String {
        baseName + ":2," + String(decoding: infoCharacters(system: system, keywordMask: keywordMask, preserved: preserved), as: UTF8.self)
    }

    /// Checks a caller-supplied base name before it is used in an `*at()` call:
    /// it must be a single, non-hidden path component without an info part.
    static func validationProblem(baseName: String) -> String? {
        if baseName.isEmpty { return "it is empty" }
        if baseName.utf8.count > 200 { return "it is longer than 200 bytes" }
        if baseName.hasPrefix(".") { return "it starts with '.'" }
        for byte in baseName.utf8 {
            if byte == UInt8(ascii: "/") { return "it contains '/'" }
            if byte == UInt8(ascii: ":") { return "it contains ':' (pass the base name without the ':2,' info part)" }
            if byte < 0x20 || byte == 0x7F { return "it contains a control character" }
        }
        return nil
    }
}

/// Generates `<secs>.M<usecs>P<pid>Q<n>.<host>` unique parts.
///
/// The process-wide delivery counter `Q<n>` is the module's only global
/// mutable state; it guarantees uniqueness between threads of one process
/// even within one microsecond, while secs/usecs/pid/host separate processes
/// and machines, as the Maildir spec intends.
enum UniqueName {
    private static let counter = Mutex<UInt64>(0)

    /// The host name with `/` and `:` escaped as `\057` and `\072` (as the
    /// spec and Dovecot do) and additionally `,` as `\054`, so that the host
    /// can never be mistaken for a `,S=` field.
    static let host: String = escapeHost(currentHostName())

    static func escapeHost(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars {
            switch scalar {
            case "/": out += "\\057"
            case ":": out += "\\072"
            case ",": out += "\\054"
            case "\\": out += "\\134"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\" + String(scalar.value, radix: 8).leftPadded(to: 3)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out.isEmpty ? "localhost" : out
    }

    private static func currentHostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func next() -> String {
        let n = counter.withLock { value -> UInt64 in
            value &+= 1
            return value
        }
        var tv = timeval()
        gettimeofday(&tv, nil)
        return "\(tv.tv_sec).M\(tv.tv_usec)P\(getpid())Q\(n).\(host)"
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
