import Digest
import SyncEngine
import SyncState

/// A message as a chain of archives presents it: where its bytes are and
/// its newest flags.
public struct ChainMessage: Sendable, Hashable {
    /// Index into `ArchiveChain.archives` of the archive holding the bytes.
    public var archiveIndex: Int
    public var folder: String
    /// The path in that archive of this occurrence.
    public var path: String
    /// The path whose tar entry holds the bytes (differs for hard links).
    public var dataPath: String
    public var flags: MessageFlags
    public var internalDate: Int64?
    public var size: Int64
    public var sha256: String
    public var messageId: String?
    public var member: Int64
    public var memberOffset: Int64
}

/// A folder as a chain presents it.
public struct ChainFolder: Sendable, Hashable {
    public var name: String
    public var role: SpecialUse?
    /// Messages in chain order; a restore hands out UID n+1 for index n.
    public var messages: [ChainMessage]
    /// Stable for a chain (derived from its first archive's id and the folder
    /// name), so a restore interrupted and run again sees the same UIDs.
    public var uidValidity: UInt32
}

/// One or more archives of an account, verified, in chain order: a full
/// backup followed by the incremental ones built on it.
///
/// The chain restores the union of its archives: every message archived by
/// any of them (an incremental archive stores only what the earlier ones
/// lack, so messages deleted from the account between backups come back).
/// A message stored again by a later archive in the same folder with the
/// same SHA-256 is the same message; the newest flags win, whether from a
/// later message record or a later `flags` record.
public struct ArchiveChain: Sendable {
    public struct Member: Sendable, Hashable {
        public var path: String
        public var header: ArchiveHeader
        public var manifest: ArchiveManifest
    }

    /// Oldest first.
    public let archives: [Member]
    /// By folder name.
    public let folders: [String: ChainFolder]

    public var account: String { archives.first?.header.account ?? "" }
    public var ids: [String] { archives.map(\.header.id) }

    /// Reads and verifies every archive (all hashes checked) and orders them
    /// into a chain. Throws the first problem found, so a restore refuses a
    /// damaged or incomplete chain before it touches anything.
    public static func open(paths: [String]) throws(ArchiveError) -> ArchiveChain {
        guard !paths.isEmpty else { throw .chainBroken(archive: "(none)", cause: "no archive was given") }
        let (ordered, problems) = order(paths.map { ArchiveReader.verify(path: $0) })
        if let problem = ordered.flatMap(\.problems).first ?? problems.first { throw problem }
        if let first = ordered.first?.header, !first.previous.isEmpty {
            throw .chainBroken(archive: ordered[0].path, cause: "it builds on \(first.previous.joined(separator: ", ")), which was not given; pass every archive of the chain")
        }
        return ArchiveChain(ordered.map { Member(path: $0.path, header: $0.header!, manifest: $0.manifest!) })
    }

    /// Builds the merged view of archives already verified and ordered.
    public init(_ archives: [Member]) {
        self.archives = archives
        var folders: [String: ChainFolder] = [:]
        let base = archives.first?.header.id ?? ""
        func folder(_ name: String) -> ChainFolder {
            folders[name] ?? ChainFolder(name: name, role: nil, messages: [], uidValidity: Self.uidValidity(base: base, folder: name))
        }
        // (archive id, path) → (folder, index) of the message it became.
        var byOccurrence: [String: (folder: String, index: Int)] = [:]
        for (archiveIndex, archive) in archives.enumerated() {
            let manifest = archive.manifest
            for record in manifest.folders {
                var entry = folder(record.name)
                if let role = record.role { entry.role = SpecialUse(rawValue: role) }
                folders[record.name] = entry
            }
            // Earlier archives' occurrences by (folder, sha), each matched once.
            var earlier: [String: [Int]] = [:]
            for (name, entry) in folders {
                for (index, message) in entry.messages.enumerated() where message.archiveIndex < archiveIndex {
                    earlier[name + "\u{0}" + message.sha256, default: []].append(index)
                }
            }
            for message in manifest.messages {
                var entry = folder(message.folder)
                let key = message.folder + "\u{0}" + message.sha256
                if var indices = earlier[key], !indices.isEmpty {
                    let index = indices.removeFirst()
                    earlier[key] = indices
                    entry.messages[index].flags = message.allFlags
                    byOccurrence[archive.header.id + "\u{0}" + message.path] = (message.folder, index)
                } else {
                    entry.messages.append(ChainMessage(
                        archiveIndex: archiveIndex, folder: message.folder, path: message.path, dataPath: message.dataPath,
                        flags: message.allFlags, internalDate: message.internalDate, size: message.size, sha256: message.sha256,
                        messageId: message.messageId, member: message.member, memberOffset: message.memberOffset))
                    byOccurrence[archive.header.id + "\u{0}" + message.path] = (message.folder, entry.messages.count - 1)
                }
                folders[message.folder] = entry
            }
            for update in manifest.flagUpdates {
                guard let target = byOccurrence[update.archive + "\u{0}" + update.path] else { continue }
                folders[target.folder]?.messages[target.index].flags = update.allFlags
            }
        }
        self.folders = folders
    }

    /// Orders verification results into a chain and lists what does not fit:
    /// archives of different accounts, an archive whose `previous` list is
    /// not exactly the ids of the archives before it, ids given twice.
    static func order(_ results: [ArchiveVerification]) -> ([ArchiveVerification], [ArchiveError]) {
        guard results.count > 1 else { return (results, []) }
        let readable = results.filter { $0.header != nil }
        guard readable.count == results.count else { return (results, []) } // Already reported per archive.
        let ordered = readable.sorted { a, b in
            let (x, y) = (a.header!, b.header!)
            if x.previous.count != y.previous.count { return x.previous.count < y.previous.count }
            return x.createdUnix < y.createdUnix
        }
        var problems: [ArchiveError] = []
        let account = ordered[0].header!.account
        var ids: [String] = []
        for result in ordered {
            let header = result.header!
            if header.account != account {
                problems.append(.chainBroken(archive: result.path, cause: "it belongs to account \(header.account), the chain to \(account)"))
            }
            if ids.contains(header.id) {
                problems.append(.chainBroken(archive: result.path, cause: "archive \(header.id) was given twice"))
            } else if header.previous != ids {
                let missing = header.previous.filter { !ids.contains($0) }
                let cause = missing.isEmpty
                    ? "it builds on [\(header.previous.joined(separator: ", "))] but the archives before it are [\(ids.joined(separator: ", "))]"
                    : "it builds on \(missing.joined(separator: ", ")), which was not given; pass every archive of the chain"
                problems.append(.chainBroken(archive: result.path, cause: cause))
            }
            ids.append(header.id)
        }
        return (ordered, problems)
    }

    static func uidValidity(base: String, folder: String) -> UInt32 {
        let digest = SHA256Hasher.digest(Array((base + "\u{0}" + folder).utf8))
        let value = digest[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return value == 0 ? 1 : value
    }
}
