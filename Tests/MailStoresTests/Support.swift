import Foundation
import IMAPClient
import Logging
@testable import MailStores
import Synchronization
import SyncEngine
import SyncState
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The server configurations the tests run against; one Dovecot each,
/// started on first use and shared by every test of the target. Each test
/// takes its own user, so tests never see each other's mailboxes.
enum ServerKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case full
    /// CONDSTORE without QRESYNC.
    case condStoreOnly
    /// Neither QRESYNC nor CONDSTORE.
    case noModSeq
    case noUIDPlus
    case noMove
    /// CONDSTORE without QRESYNC or ESEARCH: `UID SEARCH` answers with one
    /// line of every UID.
    case condStoreWithoutESearch
    /// Full-featured, but refuses messages over 50,000 bytes (the quota
    /// plugin's `quota_max_mail_size`): APPEND answers `NO [LIMIT]`.
    case sizeLimited

    /// The kinds that differ in protocol; `sizeLimited` only in policy.
    static var protocolKinds: [ServerKind] { [.full, .condStoreOnly, .noModSeq, .noUIDPlus, .noMove] }

    var disabled: Set<String> {
        switch self {
        case .full, .sizeLimited: []
        case .condStoreOnly: ["QRESYNC"]
        case .noModSeq: ["QRESYNC", "CONDSTORE"]
        case .noUIDPlus: ["UIDPLUS"]
        case .noMove: ["MOVE"]
        case .condStoreWithoutESearch: ["QRESYNC", "ESEARCH"]
        }
    }

    static let sizeLimit = 50_000

    var extraConfiguration: String {
        guard self == .sizeLimited else { return "" }
        return """
            protocol imap {
              mail_plugins = $mail_plugins quota
            }
            plugin {
              quota = count:User quota
              quota_rule = *:storage=1G
              quota_vsizes = yes
              quota_max_mail_size = \(Self.sizeLimit)
            }
            """
    }

    var testDescription: String { rawValue }
}

/// A user of one shared server, handed to exactly one test.
struct ServerAccount: Sendable {
    let server: DovecotServer
    let user: DovecotServer.TestUser
    let kind: ServerKind

    var imap: IMAPConfiguration {
        var configuration = IMAPConfiguration(
            host: server.host, port: server.plainPort, security: .plaintext,
            credentials: .password(user: user.name, password: user.password), allowInsecureAuth: true,
            timeouts: .init(connect: .seconds(5), command: .seconds(20)), compress: false,
            accountName: "test-\(user.name)", logger: quietLogger)
        // Without ID the store does not know it talks to Dovecot and lists
        // with LIST-STATUS, so the contract runs both folder-status strategies.
        if kind == .condStoreOnly { configuration.clientID = nil }
        return configuration
    }

    func openStore() async throws -> IMAPStore {
        try await IMAPStore.open(configuration: imap, account: "test-\(user.name)", logger: quietLogger)
    }

    /// Server-side Maildir directory of `mailbox` (Maildir++, modified UTF-7 names).
    func serverDirectory(_ mailbox: String) throws -> URL {
        try server.maildirDirectory(for: mailbox, user: user.name)
    }

    @discardableResult
    func doveadm(_ arguments: [String]) async throws -> String {
        let server = server
        return try await offloadBlocking { try server.doveadm(arguments) }
    }

    @discardableResult
    func save(_ bytes: [UInt8], to mailbox: String, flags: [String] = []) async throws -> UInt32 {
        let server = server, name = user.name
        return try await offloadBlocking { try server.saveMessage(user: name, mailbox: mailbox, bytes: bytes, flags: flags) }
    }
}

let quietLogger: Logger = {
    var logger = Logger(label: "ferrymail.tests")
    logger.logLevel = .error
    return logger
}()

/// Starts each kind's server once and hands out its users one by one.
actor Servers {
    static let shared = Servers()
    static let usersPerServer = 24

    private var servers: [ServerKind: Task<DovecotServer, any Error>] = [:]
    private var nextUser: [ServerKind: Int] = [:]

    func account(_ kind: ServerKind) async throws -> ServerAccount {
        let task = servers[kind] ?? Task {
            try await DovecotServer.start(DovecotServer.Options(
                users: (1...Self.usersPerServer).map { DovecotServer.Account(name: "u\($0)", password: "pw-\($0)-Secret") },
                disabledCapabilities: kind.disabled, compress: false, notify: false, extraConfiguration: kind.extraConfiguration))
        }
        servers[kind] = task
        let server = try await task.value
        let index = nextUser[kind, default: 0]
        nextUser[kind] = index + 1
        precondition(index < Self.usersPerServer, "more tests than users on the \(kind) server; raise usersPerServer")
        return ServerAccount(server: server, user: server.users[index], kind: kind)
    }
}

/// Collects fetched bodies in memory (tests only: they compare bytes).
actor CollectingSink: MessageSink {
    private(set) var bodies: [MessageKey: [UInt8]] = [:]
    private(set) var order: [MessageKey] = []
    private(set) var announced: [MessageKey: Int64] = [:]
    private var current: MessageKey?

    func begin(_ key: MessageKey, size: Int64) async throws {
        current = key
        order.append(key)
        announced[key] = size
        bodies[key] = []
    }

    func write(_ chunk: [UInt8]) async throws {
        bodies[current!, default: []] += chunk
    }

    func end() async throws { current = nil }
}

extension MailStore {
    /// Appends one message in chunks of `chunk` bytes, then flushes, as the
    /// engine does before it relies on an append.
    func append(_ bytes: [UInt8], to mailbox: String, flags: SyncState.MessageFlags = .none, date: Int64? = 1_700_000_000,
                chunk: Int = 1000) async throws -> MessageKey? {
        let writer = try await beginAppend(to: mailbox, AppendEnvelope(
            flags: flags, internalDate: date, size: Int64(bytes.count), messageId: nil, transferId: UUID().uuidString))
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + chunk, bytes.count)
            try await writer.write(Array(bytes[offset..<end]))
            offset = end
        }
        let key = try await writer.finish()
        try await flush(mailbox)
        return key
    }

    func listing(_ mailbox: String) async throws -> [MessageInfo] {
        _ = try await select(mailbox)
        switch try await messages(in: mailbox, changedSince: nil) {
        case .full(let messages): return messages
        case .delta: throw TestFailure("a listing without watermark must be full")
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - The independent checker

/// One message as the checker sees it: bytes and IMAP flags.
struct CheckedMessage: Hashable, Comparable, CustomStringConvertible {
    var digest: String
    var flags: [String]

    static func < (a: CheckedMessage, b: CheckedMessage) -> Bool {
        (a.digest, a.flags.joined(separator: " ")) < (b.digest, b.flags.joined(separator: " "))
    }

    var description: String { "\(digest.prefix(12)) \(flags)" }
}

/// Reads a Maildir tree with nothing but `readdir` and `read` — no Ferrymail
/// code — so it can judge what the engine and the stores left behind. The
/// server's tree is read the same way: Dovecot's maildir backend keeps flags
/// in file names (keyword letters through `dovecot-keywords`) and removes
/// expunged files at once.
enum MaildirChecker {
    /// A Maildir++ tree's folders: display name and directory, INBOX first.
    static func folders(root: URL, encodesNames: Bool) throws -> [(name: String, directory: URL)] {
        let fm = FileManager.default
        var directories: [(name: String, directory: URL)] = [("INBOX", root)]
        for entry in try fm.contentsOfDirectory(atPath: root.path) where entry.hasPrefix(".") && !entry.hasPrefix("..") {
            let url = root.appendingPathComponent(entry)
            guard fm.fileExists(atPath: url.appendingPathComponent("cur").path) else { continue }
            var name = String(entry.dropFirst()).replacingOccurrences(of: ".", with: "/")
            if encodesNames { name = decodeModifiedUTF7(name) }
            directories.append((name, url))
        }
        return directories
    }

    /// Folder display name → sorted messages. `encodesNames`: the tree uses
    /// modified UTF-7 folder names (Dovecot's default) rather than UTF-8.
    ///
    /// `servesCRLF`: the tree is Dovecot's, which stores lines with bare LF
    /// (`mail_save_crlf = no`) and serves them with CRLF over IMAP, so bare
    /// LFs are read as CRLF.
    static func read(root: URL, encodesNames: Bool, servesCRLF: Bool = false) throws -> [String: [CheckedMessage]] {
        var result: [String: [CheckedMessage]] = [:]
        let fm = FileManager.default
        for (name, directory) in try folders(root: root, encodesNames: encodesNames) {
            let keywords = readKeywords(directory)
            var messages: [CheckedMessage] = []
            for sub in ["cur", "new"] {
                let path = directory.appendingPathComponent(sub)
                for file in try fm.contentsOfDirectory(atPath: path.path) where !file.hasPrefix(".") {
                    var bytes = try Data(contentsOf: path.appendingPathComponent(file))
                    if servesCRLF { bytes = crlf(bytes) }
                    messages.append(CheckedMessage(digest: sha256Hex(bytes), flags: flags(fileName: file, keywords: keywords)))
                }
            }
            result[name] = messages.sorted()
        }
        return result
    }

    static func crlf(_ data: Data) -> Data {
        var out = Data()
        out.reserveCapacity(data.count + data.count / 40)
        var previous: UInt8 = 0
        for byte in data {
            if byte == 0x0A && previous != 0x0D { out.append(0x0D) }
            out.append(byte)
            previous = byte
        }
        return out
    }

    static func readKeywords(_ directory: URL) -> [Int: String] {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("dovecot-keywords"), encoding: .utf8) else { return [:] }
        var table: [Int: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2, let index = Int(parts[0]) { table[index] = String(parts[1]) }
        }
        return table
    }

    static func flags(fileName: String, keywords: [Int: String]) -> [String] {
        guard let range = fileName.range(of: ":2,") else { return [] }
        var names: [String] = []
        for letter in fileName[range.upperBound...] {
            switch letter {
            case "D": names.append("\\Draft")
            case "F": names.append("\\Flagged")
            case "R": names.append("\\Answered")
            case "S": names.append("\\Seen")
            case "T": names.append("\\Deleted")
            case "a"..."z":
                let index = Int(letter.asciiValue! - Character("a").asciiValue!)
                names.append(keywords[index] ?? "?\(letter)")
            default: break
            }
        }
        return names.sorted()
    }

    /// RFC 3501 modified UTF-7, decoding only (the fixture has the encoder).
    static func decodeModifiedUTF7(_ text: String) -> String {
        var result = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            result += rest[..<amp]
            let afterAmp = rest.index(after: amp)
            guard let dash = rest[afterAmp...].firstIndex(of: "-") else { return result + rest[amp...] }
            let encoded = rest[afterAmp..<dash]
            if encoded.isEmpty {
                result += "&"
            } else {
                var base64 = encoded.replacingOccurrences(of: ",", with: "/")
                while base64.count % 4 != 0 { base64 += "=" }
                if let data = Data(base64Encoded: base64) {
                    let units = stride(from: 0, to: data.count - 1, by: 2).map { UInt16(data[$0]) << 8 | UInt16(data[$0 + 1]) }
                    result += String(decoding: units, as: UTF16.self)
                }
            }
            rest = rest[rest.index(after: dash)...]
        }
        return result + rest
    }
}

/// SHA-256, written out here so the checker depends on nothing else.
func sha256Hex(_ data: Data) -> String {
    var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
        0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
        0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
        0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
        0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]
    var message = [UInt8](data)
    let bitLength = UInt64(message.count) * 8
    message.append(0x80)
    while message.count % 64 != 56 { message.append(0) }
    for shift in stride(from: 56, through: 0, by: -8) { message.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
    func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
    var w = [UInt32](repeating: 0, count: 64)
    for block in stride(from: 0, to: message.count, by: 64) {
        for i in 0..<16 {
            w[i] = (0..<4).reduce(0) { $0 << 8 | UInt32(message[block + i * 4 + $1]) }
        }
        for i in 16..<64 {
            let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
        for i in 0..<64 {
            let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
            let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
            (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        for (i, value) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ value }
    }
    return h.map { String(format: "%08x", $0) }.joined()
}
