import Digest
import Foundation

/// Counts of one folder in a verified archive.
public struct FolderCount: Sendable, Hashable {
    public var messages = 0
    public var bytes: Int64 = 0
}

/// The result of reading one archive from end to end.
public struct ArchiveVerification: Sendable, Hashable {
    public var path: String
    /// nil when the archive could not be read far enough to find it.
    public var header: ArchiveHeader?
    /// nil when the archive is damaged before or in the manifest.
    public var manifest: ArchiveManifest?
    /// Per folder name: message records and their bytes.
    public var folders: [String: FolderCount] = [:]
    public var messages = 0
    public var storedEntries = 0
    public var links = 0
    /// Sum of message sizes, links counted.
    public var messageBytes: Int64 = 0
    /// Bytes hashed (every stored entry).
    public var hashedBytes: Int64 = 0
    public var compressedBytes: Int64 = 0
    /// Everything wrong, each naming the archive and entry; empty when the
    /// archive is intact.
    public var problems: [ArchiveError] = []

    public var isIntact: Bool { problems.isEmpty && manifest != nil }
}

/// Reads archives: the header entry alone, or everything with every
/// entry's SHA-256 checked against the manifest.
public enum ArchiveReader {
    /// `ferrymail-archive.json`: read from the first gzip member only, so
    /// listing archives is cheap.
    public static func readHeader(path: String) throws(ArchiveError) -> ArchiveHeader {
        let tar = try TarReader(path: path)
        guard let entry = try tar.nextEntry() else {
            throw .manifestInvalid(archive: path, line: nil, cause: "empty archive")
        }
        guard entry.path == ArchiveFormat.headerEntry, entry.type == .regular, entry.size < 1 << 20 else {
            throw .manifestInvalid(archive: path, line: nil, cause: "the first entry is \(entry.path), not \(ArchiveFormat.headerEntry): not a Ferrymail archive")
        }
        var data: [UInt8] = []
        try tar.readData { raw in data.append(contentsOf: raw) }
        do {
            let header = try JSONDecoder().decode(ArchiveHeader.self, from: Data(data))
            guard header.format == ArchiveFormat.name, header.version <= ArchiveFormat.version else {
                throw ArchiveError.manifestInvalid(archive: path, line: nil, cause: "format \(header.format) version \(header.version) is not one this Ferrymail reads")
            }
            return header
        } catch let error as ArchiveError {
            throw error
        } catch {
            throw .manifestInvalid(archive: path, line: nil, cause: "\(ArchiveFormat.headerEntry) is not valid: \(error)")
        }
    }

    /// Reads the whole archive once: decompresses every gzip member (CRC
    /// checked), checks every tar header checksum, hashes every stored entry,
    /// then compares with the manifest (last entry). Stream damage stops the
    /// pass; hash mismatches are all collected.
    public static func verify(path: String) -> ArchiveVerification {
        var result = ArchiveVerification(path: path)
        struct Seen {
            var sha256: String
            var size: Int64
            var linkTo: String?
            var member: Int64
            var offset: Int64
        }
        var seen: [String: Seen] = [:]
        var order: [String] = []
        var manifestData: [UInt8]?
        do {
            let tar = try TarReader(path: path)
            result.compressedBytes = tar.gzip.fileSize
            var first = true
            while let entry = try tar.nextEntry() {
                let start = tar.entryStart
                if first {
                    guard entry.path == ArchiveFormat.headerEntry else {
                        throw ArchiveError.manifestInvalid(archive: path, line: nil, cause: "the first entry is \(entry.path), not \(ArchiveFormat.headerEntry): not a Ferrymail archive")
                    }
                    var data: [UInt8] = []
                    try tar.readData { raw in data.append(contentsOf: raw) }
                    do {
                        result.header = try JSONDecoder().decode(ArchiveHeader.self, from: Data(data))
                    } catch {
                        throw ArchiveError.manifestInvalid(archive: path, line: nil, cause: "\(ArchiveFormat.headerEntry) is not valid: \(error)")
                    }
                    first = false
                    continue
                }
                guard manifestData == nil else {
                    throw ArchiveError.damaged(archive: path, entry: entry.path, cause: "an entry follows \(ArchiveFormat.manifestEntry), which must be last")
                }
                switch entry.type {
                case .regular where entry.path == ArchiveFormat.manifestEntry:
                    guard entry.size < 1 << 34 else {
                        throw ArchiveError.manifestInvalid(archive: path, line: nil, cause: "manifest of \(entry.size) bytes is implausibly large")
                    }
                    var data: [UInt8] = []
                    data.reserveCapacity(Int(entry.size))
                    try tar.readData { raw in data.append(contentsOf: raw) }
                    manifestData = data
                case .regular:
                    var hasher = SHA256Hasher()
                    try tar.readData { raw in hasher.update(raw) }
                    let digest = hasher.finalize().hexString
                    seen[entry.path] = Seen(sha256: digest, size: entry.size, linkTo: nil, member: start.member, offset: start.offset)
                    order.append(entry.path)
                    result.hashedBytes += entry.size
                    result.storedEntries += 1
                case .hardLink:
                    seen[entry.path] = Seen(sha256: "", size: 0, linkTo: entry.linkTarget, member: start.member, offset: start.offset)
                    order.append(entry.path)
                    result.links += 1
                default:
                    continue
                }
            }
            try tar.drainToEnd()
        } catch let error as ArchiveError {
            result.problems.append(error)
            return result
        } catch {
            result.problems.append(.damaged(archive: path, entry: nil, cause: "\(error)"))
            return result
        }

        guard let header = result.header else {
            result.problems.append(.manifestInvalid(archive: path, line: nil, cause: "no \(ArchiveFormat.headerEntry) entry"))
            return result
        }
        guard let manifestData else {
            result.problems.append(.truncated(archive: path, entry: ArchiveFormat.manifestEntry))
            return result
        }
        let manifest: ArchiveManifest
        do {
            manifest = try ArchiveManifest.parse(manifestData, archive: path)
        } catch {
            result.problems.append(error)
            return result
        }
        if manifest.header.id != header.id || manifest.header.account != header.account || manifest.header.previous != header.previous {
            result.problems.append(.manifestInvalid(archive: path, line: 1, cause: "the manifest's archive record (id \(manifest.header.id)) disagrees with \(ArchiveFormat.headerEntry) (id \(header.id))"))
        }

        var described: Set<String> = []
        for message in manifest.messages {
            described.insert(message.path)
            result.messages += 1
            result.messageBytes += message.size
            result.folders[message.folder, default: FolderCount()].messages += 1
            result.folders[message.folder, default: FolderCount()].bytes += message.size
            guard let entry = seen[message.path] else {
                result.problems.append(.damaged(archive: path, entry: message.path, cause: "the manifest lists it but the tar holds no such entry"))
                continue
            }
            if let target = message.linkTo {
                guard entry.linkTo == target else {
                    result.problems.append(.damaged(archive: path, entry: message.path, cause: "the manifest says it links to \(target) but the tar entry \(entry.linkTo.map { "links to \($0)" } ?? "is a regular file")"))
                    continue
                }
            } else if entry.linkTo != nil {
                result.problems.append(.damaged(archive: path, entry: message.path, cause: "the tar entry is a hard link but the manifest lists a stored message"))
                continue
            }
            guard let data = seen[message.dataPath], data.linkTo == nil else {
                result.problems.append(.damaged(archive: path, entry: message.path, cause: "its data entry \(message.dataPath) is missing"))
                continue
            }
            if data.sha256 != message.sha256 {
                result.problems.append(.hashMismatch(archive: path, entry: message.dataPath, expected: message.sha256, actual: data.sha256))
            } else if data.size != message.size {
                result.problems.append(.damaged(archive: path, entry: message.dataPath, cause: "\(data.size) bytes but the manifest records \(message.size)"))
            } else if data.member != message.member || data.offset != message.memberOffset {
                result.problems.append(.manifestInvalid(archive: path, line: nil, cause: "entry \(message.dataPath) starts at gzip member \(data.member) + \(data.offset), the manifest says \(message.member) + \(message.memberOffset)"))
            }
        }
        for entryPath in order where !described.contains(entryPath) {
            result.problems.append(.damaged(archive: path, entry: entryPath, cause: "the tar holds this entry but the manifest does not list it"))
        }
        for folder in manifest.folders where result.folders[folder.name] == nil {
            result.folders[folder.name] = FolderCount()
        }
        result.manifest = manifest
        return result
    }
}

/// Several archives checked together.
public struct VerificationSummary: Sendable, Hashable {
    /// In chain order (oldest first) when the headers could be read, else as given.
    public var archives: [ArchiveVerification]
    /// Problems of the chain as a whole (missing link, mixed accounts…).
    public var chainProblems: [ArchiveError]

    public var problems: [ArchiveError] { archives.flatMap(\.problems) + chainProblems }
    public var isIntact: Bool { problems.isEmpty && archives.allSatisfy(\.isIntact) }
    public var messages: Int { archives.reduce(0) { $0 + $1.messages } }
    public var messageBytes: Int64 { archives.reduce(0) { $0 + $1.messageBytes } }
    public var hashedBytes: Int64 { archives.reduce(0) { $0 + $1.hashedBytes } }

    /// Message counts per folder over all archives.
    public var folders: [String: FolderCount] {
        var total: [String: FolderCount] = [:]
        for archive in archives {
            for (name, count) in archive.folders {
                total[name, default: FolderCount()].messages += count.messages
                total[name, default: FolderCount()].bytes += count.bytes
            }
        }
        return total
    }
}

/// `ferrymail verify-archive`: every archive read to the end, every hash
/// checked, and — for several archives — the incremental chain checked.
public enum ArchiveVerifier {
    public static func verify(paths: [String]) -> VerificationSummary {
        let results = paths.map { ArchiveReader.verify(path: $0) }
        let (ordered, problems) = ArchiveChain.order(results)
        return VerificationSummary(archives: ordered, chainProblems: problems)
    }
}
