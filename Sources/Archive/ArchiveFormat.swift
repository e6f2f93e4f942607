import Foundation
import SyncEngine
import SyncState

/// Names and constants of the archive format (see FORMAT.md, which is the
/// contract: anything written here must stay readable by `tar`, `jq` and
/// `sha256sum` alone).
public enum ArchiveFormat {
    /// The `format` value of the header entry and the manifest's first line.
    public static let name = "ferrymail-archive"
    /// Bumped only for changes an older reader would misread.
    public static let version = 1
    /// First tar entry: small JSON identifying the archive without reading it all.
    public static let headerEntry = "ferrymail-archive.json"
    /// Last tar entry: one JSON object per line.
    public static let manifestEntry = "manifest.jsonl"
    /// How folders are laid out in the tar.
    public static let layout = "maildir-nested"

    /// Maildir info letters for IMAP system flags, in the ASCII order
    /// Maildir requires (`:2,DFRST`). Keywords have no letter here: they are in
    /// the manifest only.
    static let flagLetters: [(flag: String, letter: Character)] = [
        ("\\Draft", "D"), ("\\Flagged", "F"), ("\\Answered", "R"), ("\\Seen", "S"), ("\\Deleted", "T"),
    ]

    static func maildirInfo(_ flags: MessageFlags) -> String {
        let lower = Set(flags.names.map { $0.lowercased() })
        return String(flagLetters.filter { lower.contains($0.flag.lowercased()) }.map(\.letter))
    }

    static func isSystemFlag(_ name: String) -> Bool { name.hasPrefix("\\") }

    /// One path component made safe for a nested Maildir: `%` and control
    /// characters are percent-encoded, a leading `.` too (no hidden or `..`
    /// directories), and the first letter of a folder literally named `cur`,
    /// `new` or `tmp` (it would collide with its parent's Maildir
    /// directories). UTF-8 is kept as is; the pax header carries it. The
    /// manifest always holds the real folder name.
    static func encodeComponent(_ component: String) -> String {
        if component.isEmpty { return "%" + "00" }
        var out = ""
        for (index, scalar) in component.unicodeScalars.enumerated() {
            let value = scalar.value
            if scalar == "%" || value < 0x20 || value == 0x7f || (index == 0 && scalar == ".") {
                for byte in String(scalar).utf8 { out += String(format: "%%%02X", byte) }
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        if ["cur", "new", "tmp"].contains(out) {
            out = String(format: "%%%02X", out.utf8.first!) + out.dropFirst()
        }
        return out
    }

    /// The tar directory of a folder under the account root.
    static func folderPath(root: String, folder: String) -> String {
        ([root] + folder.split(separator: "/", omittingEmptySubsequences: false).map { encodeComponent(String($0)) })
            .joined(separator: "/")
    }

    /// A sortable, readable archive id: creation time and 32 random bits.
    static func makeId(created: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: created) + "-" + String(format: "%08x", UInt32.random(in: 0...UInt32.max))
    }

    static func iso8601(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}

// MARK: - Header entry and manifest records

/// `ferrymail-archive.json`, the first entry: enough to list archives and
/// check a chain without decompressing everything.
public struct ArchiveHeader: Codable, Sendable, Hashable {
    public var format: String
    public var version: Int
    public var id: String
    public var account: String
    /// ISO 8601, UTC.
    public var created: String
    public var createdUnix: Int64
    /// Ids of the archives this one builds on, oldest first; empty for a full backup.
    public var previous: [String]
    /// The account's directory in the tar.
    public var root: String
    public var layout: String
    public var manifest: String
}

/// Manifest line 1 (`"type": "archive"`): the header again, so the manifest
/// stands alone.
struct ManifestArchiveRecord: Codable {
    var type = "archive"
    var format: String
    var version: Int
    var id: String
    var account: String
    var created: String
    var createdUnix: Int64
    var previous: [String]
    var root: String
    var layout: String

    init(_ header: ArchiveHeader) {
        format = header.format
        version = header.version
        id = header.id
        account = header.account
        created = header.created
        createdUnix = header.createdUnix
        previous = header.previous
        root = header.root
        layout = header.layout
    }

    var header: ArchiveHeader {
        ArchiveHeader(format: format, version: version, id: id, account: account, created: created, createdUnix: createdUnix,
                      previous: previous, root: root, layout: layout, manifest: ArchiveFormat.manifestEntry)
    }
}

/// A folder (`"type": "folder"`).
public struct ManifestFolder: Codable, Sendable, Hashable {
    var type = "folder"
    /// The folder's name, `/`-delimited, exactly as the engine named it.
    public var name: String
    /// Its directory in the tar (holding `cur/`, `new/`, `tmp/`).
    public var path: String
    /// RFC 6154 special-use attribute (`\Sent`…), if any.
    public var role: String?

    public init(name: String, path: String, role: String?) {
        self.name = name
        self.path = path
        self.role = role
    }
}

/// A message (`"type": "message"`).
public struct ManifestMessage: Codable, Sendable, Hashable {
    var type = "message"
    public var folder: String
    /// This occurrence's file in the tar.
    public var path: String
    /// Set when the entry is a hard link: the path holding the bytes (same SHA-256).
    public var linkTo: String?
    /// IMAP system flags (`\Seen`…).
    public var flags: [String]
    /// IMAP keywords (`$Forwarded`, `$Label1`…).
    public var keywords: [String]
    /// INTERNALDATE, unix seconds (also the file's mtime).
    public var internalDate: Int64?
    public var size: Int64
    /// Lower-case hex SHA-256 of the message bytes.
    public var sha256: String
    public var messageId: String?
    public var sourceUidValidity: UInt32?
    public var sourceUid: UInt32?
    /// Byte offset in the .tar.gz file of the gzip member where the entry
    /// holding the bytes starts (`linkTo`'s entry for a link): readers seek
    /// there instead of decompressing from the start.
    public var member: Int64
    /// Offset of that entry's first header block within the member's
    /// uncompressed data.
    public var memberOffset: Int64

    public var allFlags: MessageFlags { MessageFlags(flags + keywords) }
    /// The path whose entry holds the bytes.
    public var dataPath: String { linkTo ?? path }
}

/// A later flag state for a message of this or an earlier archive of the chain
/// (`"type": "flags"`); the newest record wins on restore.
public struct ManifestFlagsUpdate: Codable, Sendable, Hashable {
    var type = "flags"
    /// The id of the archive holding the message.
    public var archive: String
    public var folder: String
    public var path: String
    public var flags: [String]
    public var keywords: [String]

    public var allFlags: MessageFlags { MessageFlags(flags + keywords) }
}

/// The last line (`"type": "end"`): a manifest without it was cut short.
struct ManifestEndRecord: Codable {
    var type = "end"
    var folders: Int
    var messages: Int
    var stored: Int
    var links: Int
    var flagUpdates: Int
    var bytes: Int64
}

/// A parsed manifest.
public struct ArchiveManifest: Sendable, Hashable {
    public var header: ArchiveHeader
    public var folders: [ManifestFolder]
    /// In archive order.
    public var messages: [ManifestMessage]
    public var flagUpdates: [ManifestFlagsUpdate]

    /// Parses manifest.jsonl; `archive` names the file in errors.
    static func parse(_ data: [UInt8], archive: String) throws(ArchiveError) -> ArchiveManifest {
        struct Probe: Decodable { var type: String }
        let decoder = JSONDecoder()
        var header: ArchiveHeader?
        var folders: [ManifestFolder] = []
        var messages: [ManifestMessage] = []
        var updates: [ManifestFlagsUpdate] = []
        var end: ManifestEndRecord?
        var lineNumber = 0
        var start = 0
        while start < data.count {
            let newline = data[start...].firstIndex(of: 10) ?? data.count
            let line = Data(data[start..<newline])
            start = newline + 1
            lineNumber += 1
            if line.isEmpty { continue }
            guard end == nil else { throw .manifestInvalid(archive: archive, line: lineNumber, cause: "content after the end record") }
            do {
                let type = try decoder.decode(Probe.self, from: line).type
                switch type {
                case "archive":
                    guard header == nil, lineNumber == 1 else {
                        throw ArchiveError.manifestInvalid(archive: archive, line: lineNumber, cause: "the archive record must be the first line, once")
                    }
                    header = try decoder.decode(ManifestArchiveRecord.self, from: line).header
                case "folder": folders.append(try decoder.decode(ManifestFolder.self, from: line))
                case "message": messages.append(try decoder.decode(ManifestMessage.self, from: line))
                case "flags": updates.append(try decoder.decode(ManifestFlagsUpdate.self, from: line))
                case "end": end = try decoder.decode(ManifestEndRecord.self, from: line)
                default: break // Newer minor additions are skipped, not fatal.
                }
            } catch let error as ArchiveError {
                throw error
            } catch {
                throw .manifestInvalid(archive: archive, line: lineNumber, cause: "\(error)")
            }
        }
        guard let header else { throw .manifestInvalid(archive: archive, line: 1, cause: "no archive record") }
        guard header.format == ArchiveFormat.name, header.version <= ArchiveFormat.version else {
            throw .manifestInvalid(archive: archive, line: 1, cause: "format \(header.format) version \(header.version) is not one this Ferrymail reads (\(ArchiveFormat.name) ≤ \(ArchiveFormat.version))")
        }
        guard let end else { throw .manifestInvalid(archive: archive, line: nil, cause: "no end record: the manifest was cut short") }
        guard end.messages == messages.count, end.folders == folders.count, end.flagUpdates == updates.count else {
            throw .manifestInvalid(archive: archive, line: lineNumber, cause: "the end record counts \(end.messages) messages, \(end.folders) folders and \(end.flagUpdates) flag updates but the manifest holds \(messages.count), \(folders.count) and \(updates.count)")
        }
        return ArchiveManifest(header: header, folders: folders, messages: messages, flagUpdates: updates)
    }
}

extension JSONEncoder {
    /// One compact line per record, keys sorted so manifests diff well.
    static var manifest: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
