import Digest
import Foundation
import SyncEngine
import SyncState
#if canImport(Glibc)
import Glibc
#endif

/// Tuning of the writer. The defaults suit mail: level 6 is gzip's own
/// default (level 9 gains ~1% on text at twice the CPU), 1 MiB members keep
/// random access cheap at a negligible ratio cost.
public struct ArchiveWriterOptions: Sendable, Hashable {
    /// zlib level, 0 (store) … 9 (smallest).
    public var compressionLevel: Int32
    /// A new gzip member starts at the next entry once the current one holds
    /// this many uncompressed bytes (see `GzipFileWriter`).
    public var memberSize: Int
    /// A message up to this size is spooled in memory before it is written;
    /// a larger one goes through an unlinked scratch file next to the archive.
    public var spoolMemoryLimit: Int
    /// Read/write/compress chunk size.
    public var chunkSize: Int

    public init(compressionLevel: Int32 = 1, memberSize: Int = 1 << 20, spoolMemoryLimit: Int = 4 << 20, chunkSize: Int = 64 << 10) {
        self.compressionLevel = min(9, max(0, compressionLevel))
        self.memberSize = max(64 << 10, memberSize)
        self.spoolMemoryLimit = max(0, spoolMemoryLimit)
        self.chunkSize = max(4096, chunkSize)
    }
}

/// What the writer needs to know about a message before its bytes.
public struct MessageMetadata: Sendable, Hashable {
    /// `/`-delimited folder name.
    public var folder: String
    /// System flags and keywords.
    public var flags: MessageFlags
    public var internalDate: Int64?
    /// Exact byte count to come.
    public var size: Int64
    public var messageId: String?
    public var sourceUidValidity: UInt32?
    public var sourceUid: UInt32?

    public init(folder: String, flags: MessageFlags = .none, internalDate: Int64?, size: Int64, messageId: String?,
                sourceUidValidity: UInt32? = nil, sourceUid: UInt32? = nil) {
        self.folder = folder
        self.flags = flags
        self.internalDate = internalDate
        self.size = size
        self.messageId = messageId
        self.sourceUidValidity = sourceUidValidity
        self.sourceUid = sourceUid
    }
}

/// A message as written.
public struct ArchivedMessage: Sendable, Hashable {
    public var folder: String
    public var path: String
    /// The earlier path it is a hard link to (same bytes in another folder).
    public var linkTo: String?
    public var sha256: String
    public var size: Int64
}

/// What a finished archive holds.
public struct ArchiveSummary: Sendable, Hashable {
    public var id: String
    public var path: String
    public var account: String
    public var previous: [String]
    public var folders: Int
    /// Message records, hard links included.
    public var messages: Int
    /// Messages whose bytes are in this archive (the rest are links).
    public var storedMessages: Int
    public var links: Int
    public var flagUpdates: Int
    /// Sum of all messages' sizes (links counted).
    public var messageBytes: Int64
    /// Uncompressed tar size.
    public var tarBytes: Int64
    /// Size of the .tar.gz file.
    public var archiveBytes: Int64

    /// Uncompressed tar bytes per compressed byte.
    public var compressionRatio: Double { archiveBytes > 0 ? Double(tarBytes) / Double(archiveBytes) : 0 }
}

/// One message's bytes on their way into the archive: hashed as they arrive
/// and held (memory up to `spoolMemoryLimit`, an unlinked scratch file
/// beyond) until `ArchiveWriter.commit`.
///
/// Why spool instead of streaming straight into the tar: the SHA-256 must be
/// known before the header (a duplicate becomes a hard-link entry, which has
/// no data); several mailboxes may be appending at once (the engine syncs
/// mailboxes in parallel) while a tar stream takes one entry at a time; and
/// an append the engine abandons half-way (source failed mid-message) must
/// leave nothing in the archive. Memory stays bounded by
/// `spoolMemoryLimit` × concurrent appends.
public final class MessageSpool {
    public let metadata: MessageMetadata
    private let archive: String
    private let scratchDirectoryPath: String
    private let memoryLimit: Int
    private var hasher: SHA256Hasher? = SHA256Hasher()
    private var finalDigest: [UInt8]?
    private var memory: [UInt8] = []
    private var fd: Int32 = -1
    public private(set) var received: Int64 = 0

    init(metadata: MessageMetadata, archive: String, scratchNextTo: String, memoryLimit: Int) {
        self.metadata = metadata
        self.archive = archive
        self.scratchDirectoryPath = scratchNextTo
        self.memoryLimit = memoryLimit
        if metadata.size <= Int64(memoryLimit) { memory.reserveCapacity(Int(metadata.size)) }
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(ArchiveError) {
        guard !bytes.isEmpty else { return }
        guard finalDigest == nil else { throw .closed(archive: archive) }
        received += Int64(bytes.count)
        guard received <= metadata.size else {
            throw .sizeMismatch(archive: archive, folder: metadata.folder, announced: metadata.size, received: received)
        }
        hasher?.update(bytes)
        if fd < 0, memory.count + bytes.count > memoryLimit {
            fd = try FileIO.anonymousFile(nextTo: scratchDirectoryPath, archive: archive)
            try memory.withBytes { (raw) throws(ArchiveError) in
                try FileIO.writeAll(fd, raw, archive: archive, operation: "spooling a message next to")
            }
            memory = []
        }
        if fd >= 0 {
            try FileIO.writeAll(fd, bytes, archive: archive, operation: "spooling a message next to")
        } else {
            memory.append(contentsOf: bytes)
        }
    }

    public func write(_ bytes: [UInt8]) throws(ArchiveError) {
        try bytes.withBytes { (raw) throws(ArchiveError) in try write(raw) }
    }

    /// The digest; the spool can no longer be written afterwards.
    /// The SHA-256 of everything written; the spool takes no more bytes afterwards.
    func digest() -> [UInt8] {
        if let finalDigest { return finalDigest }
        let digest: [UInt8]
        if let hasher = self.hasher.take() { digest = hasher.finalize() } else { digest = SHA256Hasher().finalize() }
        finalDigest = digest
        return digest
    }

    /// Lower-case hex SHA-256 of the bytes written so far; ends writing.
    public var sha256: String { digest().hexString }

    /// The spooled bytes, in chunks.
    func forEachChunk(size: Int, _ body: (UnsafeRawBufferPointer) throws(ArchiveError) -> Void) throws(ArchiveError) {
        if fd < 0 {
            try memory.withBytes { (raw) throws(ArchiveError) in
                var offset = 0
                while offset < raw.count {
                    let end = min(offset + size, raw.count)
                    try body(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                    offset = end
                }
            }
            return
        }
        try FileIO.forEachChunk(fd, length: received, chunkSize: size, archive: archive,
                                operation: "reading back a spooled message for", body)
    }
}

/// Writes one archive: a gzip-compressed POSIX tar holding a nested Maildir
/// per folder, `ferrymail-archive.json` first and `manifest.jsonl` last (see
/// FORMAT.md).
///
/// Streaming and bounded in memory: message bytes go through a spool and the
/// compressor; the manifest is collected in an unlinked scratch file and
/// copied in at the end. What stays in memory per message is the dedup index
/// entry (~100 bytes).
///
/// Atomic: everything is written to `<path>.partial-<random>` (created 0600
/// with O_EXCL), fsynced, then hard-linked to `path` (which fails rather
/// than replace an existing archive) and the directory fsynced. The final
/// name therefore appears only with the trailer and manifest in place; an
/// abandoned or crashed writer leaves at most a `.partial-` file (removed by
/// `abandon()` and `deinit`).
///
/// Not thread-safe: one owner (the `ArchiveWriterStore` actor, a benchmark).
public final class ArchiveWriter {
    public let id: String
    public let account: String
    /// The final path.
    public let path: String
    public let previous: [String]
    public let header: ArchiveHeader
    private let partialPath: String
    private let options: ArchiveWriterOptions
    private let created: Date
    private var fd: Int32
    private var gzip: GzipFileWriter
    private var manifest: ManifestSpool
    private var folders: [String: ManifestFolder] = [:]
    private var dedup: [DigestKey: (path: String, member: Int64, offset: Int64)] = [:]
    private var sequence = 0
    private var counts = (messages: 0, stored: 0, links: 0, flagUpdates: 0)
    private var messageBytes: Int64 = 0
    private var state: State = .open

    private enum State { case open, finished, abandoned }

    public init(path: String, account: String, previous: [String] = [], options: ArchiveWriterOptions = ArchiveWriterOptions(),
                created: Date = Date()) throws(ArchiveError) {
        guard !FileIO.exists(path) else { throw .alreadyExists(archive: path) }
        self.path = path
        self.account = account
        self.previous = previous
        self.options = options
        self.created = created
        id = ArchiveFormat.makeId(created: created)
        partialPath = path + ".partial-" + FileIO.randomHex(bytes: 6)
        fd = open(partialPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(archive: path, operation: "creating \(partialPath) for", errno: errno) }
        fchmod(fd, 0o600)
        let createdUnix = Int64(created.timeIntervalSince1970.rounded(.down))
        header = ArchiveHeader(format: ArchiveFormat.name, version: ArchiveFormat.version, id: id, account: account,
                               created: ArchiveFormat.iso8601(created), createdUnix: createdUnix, previous: previous,
                               root: ArchiveFormat.encodeComponent(account), layout: ArchiveFormat.layout,
                               manifest: ArchiveFormat.manifestEntry)
        do throws(ArchiveError) {
            gzip = try GzipFileWriter(fd: fd, path: path, level: options.compressionLevel, chunkSize: options.chunkSize)
            manifest = try ManifestSpool(nextTo: partialPath, archive: path)
            let headerJSON: [UInt8]
            do {
                let encoder = JSONEncoder.manifest
                encoder.outputFormatting.insert(.prettyPrinted)
                headerJSON = Array(try encoder.encode(header)) + [10]
            } catch {
                throw ArchiveError.manifestInvalid(archive: path, line: nil, cause: "cannot encode the header: \(error)")
            }
            try writeEntry(Tar.Entry(path: ArchiveFormat.headerEntry, type: .regular, size: Int64(headerJSON.count),
                                     mtime: createdUnix, mode: 0o600, linkTarget: nil), data: headerJSON)
            try manifest.append(ManifestArchiveRecord(header))
        } catch {
            close(fd)
            unlink(partialPath)
            throw error
        }
    }

    deinit {
        if state == .open { abandon() }
    }

    /// Folders in the archive so far.
    public var folderNames: [String] { folders.keys.sorted() }

    /// Adds a folder (its Maildir directories and manifest record). Adding an
    /// existing folder does nothing.
    public func addFolder(_ name: String, role: SpecialUse?) throws(ArchiveError) {
        try requireOpen()
        guard folders[name] == nil else { return }
        let directory = ArchiveFormat.folderPath(root: header.root, folder: name)
        let folder = ManifestFolder(name: name, path: directory, role: role?.rawValue)
        folders[name] = folder
        for sub in ["", "/cur", "/new", "/tmp"] {
            try writeEntry(Tar.Entry(path: directory + sub + "/", type: .directory, size: 0, mtime: header.createdUnix,
                                     mode: 0o700, linkTarget: nil), data: [])
        }
        try manifest.append(folder)
    }

    /// Starts a message; write its bytes into the spool, then `commit` it.
    public func beginMessage(_ metadata: MessageMetadata) throws(ArchiveError) -> MessageSpool {
        try requireOpen()
        return MessageSpool(metadata: metadata, archive: path, scratchNextTo: partialPath, memoryLimit: options.spoolMemoryLimit)
    }

    /// Writes a spooled message: a regular entry, or a hard link to the
    /// first entry with the same SHA-256.
    @discardableResult
    public func commit(_ spool: MessageSpool) throws(ArchiveError) -> ArchivedMessage {
        try requireOpen()
        let metadata = spool.metadata
        guard spool.received == metadata.size else {
            throw .sizeMismatch(archive: path, folder: metadata.folder, announced: metadata.size, received: spool.received)
        }
        let digest = spool.digest()
        let hex = digest.hexString
        if folders[metadata.folder] == nil { try addFolder(metadata.folder, role: nil) }
        sequence += 1
        let date = metadata.internalDate ?? header.createdUnix
        let file = "\(date).F\(sequence).ferrymail:2,\(ArchiveFormat.maildirInfo(metadata.flags))"
        let entryPath = folders[metadata.folder]!.path + "/cur/" + file
        let key = DigestKey(digest)
        let location: (path: String, member: Int64, offset: Int64)
        var linkTo: String?
        if let existing = dedup[key] {
            location = existing
            linkTo = existing.path
            try writeEntry(Tar.Entry(path: entryPath, type: .hardLink, size: 0, mtime: date, mode: 0o600, linkTarget: existing.path), data: [])
            counts.links += 1
        } else {
            if gzip.memberUncompressed >= Int64(options.memberSize) { try gzip.startNewMember() }
            location = (entryPath, gzip.memberStart, gzip.memberUncompressed)
            try gzip.write(Tar.headerBlocks(for: Tar.Entry(path: entryPath, type: .regular, size: metadata.size, mtime: date,
                                                           mode: 0o600, linkTarget: nil)))
            try spool.forEachChunk(size: options.chunkSize) { (chunk) throws(ArchiveError) in try gzip.write(chunk) }
            try gzip.write([UInt8](repeating: 0, count: Tar.padding(metadata.size)))
            dedup[key] = location
            counts.stored += 1
        }
        counts.messages += 1
        messageBytes += metadata.size
        var system: [String] = []
        var keywords: [String] = []
        for name in metadata.flags.names where name.lowercased() != "\\recent" {
            if ArchiveFormat.isSystemFlag(name) { system.append(name) } else { keywords.append(name) }
        }
        try manifest.append(ManifestMessage(
            folder: metadata.folder, path: entryPath, linkTo: linkTo, flags: system, keywords: keywords,
            internalDate: metadata.internalDate, size: metadata.size, sha256: hex, messageId: metadata.messageId,
            sourceUidValidity: metadata.sourceUidValidity, sourceUid: metadata.sourceUid,
            member: location.member, memberOffset: location.offset))
        return ArchivedMessage(folder: metadata.folder, path: entryPath, linkTo: linkTo, sha256: hex, size: metadata.size)
    }

    /// Adds a whole message held in memory (tests, small tools).
    @discardableResult
    public func addMessage(_ metadata: MessageMetadata, body: [UInt8]) throws(ArchiveError) -> ArchivedMessage {
        let spool = try beginMessage(metadata)
        try spool.write(body)
        return try commit(spool)
    }

    /// Records a newer flag state for a message of this or an earlier archive
    /// of the chain (incremental backups); restore applies the newest.
    public func recordFlags(archive: String, folder: String, path: String, flags: MessageFlags) throws(ArchiveError) {
        try requireOpen()
        let names = flags.names.filter { $0.lowercased() != "\\recent" }
        try manifest.append(ManifestFlagsUpdate(archive: archive, folder: folder, path: path,
                                                flags: names.filter(ArchiveFormat.isSystemFlag),
                                                keywords: names.filter { !ArchiveFormat.isSystemFlag($0) }))
        counts.flagUpdates += 1
    }

    /// Writes the manifest and trailer, syncs, and publishes the archive
    /// under its final name.
    public func finish() throws(ArchiveError) -> ArchiveSummary {
        try requireOpen()
        do throws(ArchiveError) {
            try manifest.append(ManifestEndRecord(folders: folders.count, messages: counts.messages, stored: counts.stored,
                                                  links: counts.links, flagUpdates: counts.flagUpdates, bytes: messageBytes))
            try manifest.flush()
            try gzip.startNewMember()
            try gzip.write(Tar.headerBlocks(for: Tar.Entry(path: ArchiveFormat.manifestEntry, type: .regular, size: manifest.size,
                                                           mtime: header.createdUnix, mode: 0o600, linkTarget: nil)))
            try manifest.forEachChunk(size: options.chunkSize) { (chunk) throws(ArchiveError) in try gzip.write(chunk) }
            try gzip.write([UInt8](repeating: 0, count: Tar.padding(manifest.size)))
            try gzip.write(Tar.endOfArchive)
            try gzip.finish()
            guard fsync(fd) == 0 else { throw ArchiveError.io(archive: path, operation: "syncing", errno: errno) }
            close(fd)
            fd = -1
            try publish()
        } catch {
            abandon()
            throw error
        }
        state = .finished
        manifest.close()
        return ArchiveSummary(id: id, path: path, account: account, previous: previous, folders: folders.count,
                              messages: counts.messages, storedMessages: counts.stored, links: counts.links,
                              flagUpdates: counts.flagUpdates, messageBytes: messageBytes, tarBytes: gzip.totalUncompressed,
                              archiveBytes: gzip.fileOffset)
    }

    /// Drops the partial file. Idempotent; `deinit` calls it for a writer
    /// never finished.
    public func abandon() {
        guard state == .open else { return }
        state = .abandoned
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(partialPath)
        manifest.close()
    }

    /// Links the synced partial file to the final name — `link` fails with
    /// EEXIST instead of replacing a file that appeared meanwhile — then
    /// removes the partial name and syncs the directory.
    private func publish() throws(ArchiveError) {
        if link(partialPath, path) != 0 {
            let code = errno
            if code == EEXIST { throw .alreadyExists(archive: path) }
            // Filesystems without hard links: rename, after one more check.
            guard !FileIO.exists(path) else { throw .alreadyExists(archive: path) }
            guard rename(partialPath, path) == 0 else { throw .io(archive: path, operation: "renaming \(partialPath) to", errno: errno) }
        } else {
            unlink(partialPath)
        }
        try FileIO.syncDirectory(of: path, archive: path)
    }

    private func writeEntry(_ entry: Tar.Entry, data: [UInt8]) throws(ArchiveError) {
        try gzip.write(Tar.headerBlocks(for: entry))
        if !data.isEmpty {
            try gzip.write(data)
            try gzip.write([UInt8](repeating: 0, count: Tar.padding(Int64(data.count))))
        }
    }

    private func requireOpen() throws(ArchiveError) {
        guard state == .open else { throw .closed(archive: path) }
    }
}

/// A SHA-256 as four words: a cheap dictionary key for the dedup index.
struct DigestKey: Hashable {
    var a: UInt64, b: UInt64, c: UInt64, d: UInt64

    init(_ digest: [UInt8]) {
        func word(_ start: Int) -> UInt64 {
            digest[start..<(start + 8)].reduce(0) { $0 << 8 | UInt64($1) }
        }
        a = word(0)
        b = word(8)
        c = word(16)
        d = word(24)
    }

    init?(hex: String) {
        let bytes = Array(hex.utf8)
        guard bytes.count == 64 else { return nil }
        var digest: [UInt8] = []
        var index = 0
        while index < 64 {
            guard let byte = UInt8(String(decoding: bytes[index..<(index + 2)], as: UTF8.self), radix: 16) else { return nil }
            digest.append(byte)
            index += 2
        }
        self.init(digest)
    }
}

/// manifest.jsonl lines collected in an unlinked scratch file, so a large
/// account's manifest never sits in memory.
final class ManifestSpool {
    private let fd: Int32
    private let archive: String
    private var buffer: [UInt8] = []
    private(set) var size: Int64 = 0
    private var closed = false
    private let encoder = JSONEncoder.manifest

    init(nextTo path: String, archive: String) throws(ArchiveError) {
        self.archive = archive
        fd = try FileIO.anonymousFile(nextTo: path, archive: archive)
        buffer.reserveCapacity(64 << 10)
    }

    deinit { close() }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    func append(_ record: some Encodable) throws(ArchiveError) {
        let line: Data
        do {
            line = try encoder.encode(record)
        } catch {
            throw .manifestInvalid(archive: archive, line: nil, cause: "cannot encode a record: \(error)")
        }
        buffer.append(contentsOf: line)
        buffer.append(10)
        size += Int64(line.count + 1)
        if buffer.count >= 64 << 10 { try flush() }
    }

    func flush() throws(ArchiveError) {
        try buffer.withBytes { (raw) throws(ArchiveError) in
            try FileIO.writeAll(fd, raw, archive: archive, operation: "writing the manifest scratch file of")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    func forEachChunk(size chunk: Int, _ body: (UnsafeRawBufferPointer) throws(ArchiveError) -> Void) throws(ArchiveError) {
        try FileIO.forEachChunk(fd, length: size, chunkSize: chunk, archive: archive,
                                operation: "reading the manifest scratch file of", body)
    }
}
