import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Identity and change time of one directory or file, from one `stat`.
public struct FileStamp: Sendable, Hashable {
    public let inode: UInt64
    public let seconds: Int
    public let nanoseconds: Int
    public let size: Int

    init(_ st: stat) {
        inode = UInt64(st.st_ino)
        seconds = st.st_mtim.tv_sec
        nanoseconds = st.st_mtim.tv_nsec
        size = Int(st.st_size)
    }
}

/// What a scan depended on: `cur/`, `new/` and `dovecot-keywords`.
///
/// Directory mtimes have a coarse granularity on Linux (one timer tick, and
/// a whole second on some file systems), so a change in the same tick as
/// the previous scan leaves the mtime unchanged. A token therefore only
/// proves "unchanged" when its directories were last modified at least a
/// settle interval before it was taken; until then `scanIfChanged` rescans,
/// as Dovecot does with its "dirty" maildir state. The interval is
/// ``fineSettleInterval`` (many timer ticks) when the stamps show sub-second
/// precision (ext4, xfs, btrfs, tmpfs), ``settleInterval`` when they are
/// whole seconds — so a sync right after another can still skip folders.
public struct ScanToken: Sendable, Hashable {
    public let cur: FileStamp
    public let new: FileStamp
    /// `nil` when the folder has no `dovecot-keywords` file.
    public let keywords: FileStamp?
    /// Wall-clock seconds since 1970 when the stamps were taken.
    public let takenAt: Double

    public static let settleInterval: Double = 2
    public static let fineSettleInterval: Double = 0.1

    public var isSettled: Bool {
        takenAt - latestChange >= (hasFineTimestamps ? Self.fineSettleInterval : Self.settleInterval)
    }

    /// How long after `takenAt` a token would be settled; nil where
    /// timestamps are whole seconds (waiting would take seconds).
    public var timeUntilSettled: Double? {
        hasFineTimestamps ? max(0, latestChange + Self.fineSettleInterval - takenAt) : nil
    }

    private var stamps: [FileStamp] { [cur, new, keywords].compactMap { $0 } }
    private var latestChange: Double { stamps.map { Double($0.seconds) + Double($0.nanoseconds) / 1e9 }.max() ?? 0 }
    private var hasFineTimestamps: Bool { stamps.contains { $0.nanoseconds != 0 } }

    /// True when both tokens describe the same directory states.
    public func sameState(as other: ScanToken) -> Bool {
        cur == other.cur && new == other.new && keywords == other.keywords
    }
}

public struct ScanResult: Sendable {
    public let entries: [MaildirEntry]
    public let issues: [ScanIssue]
    public let token: ScanToken
}

/// A message opened for streaming reads.
public struct OpenedMessage: Sendable {
    /// Closes its descriptor when released.
    public let fileHandle: FileHandle
    public let size: Int
    /// The file's mtime, which this store sets to the IMAP INTERNALDATE.
    public let internalDate: Date
    public let entry: MaildirEntry
}

/// One Maildir folder (a directory with `tmp/`, `new/`, `cur/`).
///
/// The object holds descriptors of its four directories and performs every
/// operation relative to them, so it keeps working on the same directory if
/// the folder is renamed while open.
public final class MaildirFolder: Sendable {
    /// IMAP name (`INBOX`, `Lists/swift-dev`).
    public let name: String
    let directory: DirectoryHandle
    let tmp: DirectoryHandle
    let new: DirectoryHandle
    let cur: DirectoryHandle
    let issues: IssueLog
    private let keywordCache = Mutex<(stamp: FileStamp?, table: KeywordTable)>((nil, KeywordTable()))
    /// Deliveries complete in `tmp/` that the next `publishStaged` makes
    /// durable and visible.
    private let staged = Mutex<[StagedDelivery]>([])
    /// Held through a whole publish, so that one that returns found every
    /// earlier delivery on disk, including those another thread's publish
    /// had taken and was still syncing.
    private let publishing = Mutex<Void>(())
    private let groupSyncIsSlow = Atomic<Bool>(false)
    private let slowGroupSync: Duration

    /// True once a publish's `syncfs` took longer than the store's
    /// `slowGroupSync`: the file system is busy with other writes, which
    /// `syncfs` waits for too. Deliveries should then be made durable one by
    /// one (`commit`), which waits for their own data only.
    public var prefersFileSync: Bool { groupSyncIsSlow.load(ordering: .relaxed) }

    /// Absolute path of the folder directory.
    public var path: String { directory.path }

    init(name: String, directory: DirectoryHandle, tmp: DirectoryHandle, new: DirectoryHandle, cur: DirectoryHandle, issues: IssueLog,
         slowGroupSync: Duration) {
        self.slowGroupSync = slowGroupSync
        self.name = name
        self.directory = directory
        self.tmp = tmp
        self.new = new
        self.cur = cur
        self.issues = issues
    }

    /// Deliveries staged and never published (the process stopped between
    /// a delivery and its batch's flush) are not left in `tmp/` for 36 hours:
    /// the sync state still calls them pending, and the next run copies them
    /// again.
    deinit {
        for delivery in staged.withLock({ $0 }) { _ = unlinkat(tmp.fd, delivery.temporaryName, 0) }
    }

    func handle(_ sub: MaildirSubdirectory) -> DirectoryHandle { sub == .cur ? cur : new }

    func stage(_ delivery: StagedDelivery) {
        staged.withLock { $0.append(delivery) }
    }

    /// `lstat` of a scanned file, relative to its directory: a listing of
    /// 100,000 files then resolves one name each instead of a whole path.
    public func fileStatus(of entry: MaildirEntry) -> stat? {
        handle(entry.subdirectory).lstat(entry.fileName)
    }

    /// Renames a complete, durable delivery from `tmp/` to its entry's
    /// name in `new/` or `cur/`, never replacing a file there.
    func moveIntoPlace(_ temporaryName: String, as entry: MaildirEntry) throws {
        let code = NoReplaceRename.rename(from: tmp, temporaryName, to: handle(entry.subdirectory), entry.fileName)
        if code != 0 {
            throw MaildirError.systemCall(operation: "rename into \(entry.subdirectory.rawValue)", path: tmp.child(temporaryName), errno: code)
        }
    }

    /// Deliveries staged and not yet published.
    public var stagedCount: Int { staged.withLock { $0.count } }

    /// Makes every staged delivery durable, then visible: one `syncfs` of the
    /// file system (data and inodes of all of them at once; each file's own
    /// `fsync` where `syncfs` is missing), then each rename into `cur/` or
    /// `new/`, then `fsync` of both directories. A file thus appears only
    /// complete and on disk, as with a delivery's own `commit`; a crash
    /// before the renames leaves only `tmp/` files, which no reader lists.
    /// Returns how many were published.
    @discardableResult
    public func publishStaged() throws -> Int {
        try publishing.withLock { _ in try publishTaken() }
    }

    private func publishTaken() throws -> Int {
        let batch = staged.withLock { staged -> [StagedDelivery] in
            defer { staged = [] }
            return staged
        }
        guard !batch.isEmpty else {
            try syncDirectories()
            return 0
        }
        var published = 0
        do {
            let started = ContinuousClock.now
            try FileSystemSync.sync(tmp, names: batch.map(\.temporaryName))
            if started.duration(to: .now) >= slowGroupSync { groupSyncIsSlow.store(true, ordering: .relaxed) }
            for delivery in batch {
                try moveIntoPlace(delivery.temporaryName, as: delivery.entry)
                published += 1
            }
            try syncDirectories()
        } catch {
            // The rest are not published: removed, so that nothing of this
            // batch is left behind in `tmp/`; the caller records none of it.
            for delivery in batch.dropFirst(published) { _ = unlinkat(tmp.fd, delivery.temporaryName, 0) }
            throw error
        }
        return published
    }

    // MARK: Keywords

    static let keywordsFile = "dovecot-keywords"
    static let keywordsLock = "dovecot-keywords.lock"

    /// The current letter table, re-read only when the file's stamp changed.
    public func keywordTable() throws -> KeywordTable {
        let stamp = directory.lstat(Self.keywordsFile).map(FileStamp.init)
        if let cached = keywordCache.withLock({ $0.stamp == stamp ? $0.table : nil }) { return cached }
        let table = try readKeywordTable()
        keywordCache.withLock { $0 = (stamp, table) }
        return table
    }

    private func readKeywordTable() throws -> KeywordTable {
        let fd = openat(directory.fd, Self.keywordsFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return KeywordTable() }
            if code == ELOOP { throw MaildirError.symlinkInTree(path: directory.child(Self.keywordsFile)) }
            throw MaildirError.systemCall(operation: "open", path: directory.child(Self.keywordsFile), errno: code)
        }
        defer { _ = close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw MaildirError.systemCall(operation: "read", path: directory.child(Self.keywordsFile), errno: errno)
            }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[..<n])
            // 26 lines of at most ~260 bytes; anything bigger is not a keyword file.
            if bytes.count > 64 * 1024 { break }
        }
        return KeywordTable(parsing: String(decoding: bytes, as: UTF8.self))
    }

    /// Letters for `keywords`, allocating missing ones in `dovecot-keywords`.
    ///
    /// Allocation takes Dovecot's dotlock (`dovecot-keywords.lock`, created
    /// with `O_EXCL`), re-reads the file under it, writes the new table into
    /// the lock file and renames it over `dovecot-keywords` — the same
    /// protocol Dovecot uses, so concurrent writers never lose a letter.
    func keywordMask(for keywords: [String]) throws -> UInt32 {
        if keywords.isEmpty { return 0 }
        for keyword in keywords {
            if let problem = MessageFlags.validationProblem(keyword: keyword) {
                throw MaildirError.invalidKeyword(folder: name, keyword: keyword, reason: problem)
            }
        }
        var table = try keywordTable()
        if let mask = Self.mask(keywords, in: table) { return mask }
        try withKeywordsLock { lockFD in
            table = try readKeywordTable()
            for keyword in keywords where table.index(of: keyword) == nil {
                guard table.allocate(keyword) != nil else {
                    throw MaildirError.keywordLimitReached(folder: name, keyword: keyword)
                }
            }
            let data = Array(table.serialized.utf8)
            try writeAll(lockFD, data, path: directory.child(Self.keywordsLock))
            if fsync(lockFD) != 0 { throw MaildirError.systemCall(operation: "fsync", path: directory.child(Self.keywordsLock), errno: errno) }
            if renameat(directory.fd, Self.keywordsLock, directory.fd, Self.keywordsFile) != 0 {
                throw MaildirError.systemCall(operation: "rename", path: directory.child(Self.keywordsFile), errno: errno)
            }
            try directory.sync()
        }
        let stamp = directory.lstat(Self.keywordsFile).map(FileStamp.init)
        keywordCache.withLock { $0 = (stamp, table) }
        return Self.mask(keywords, in: table)!
    }

    private static func mask(_ keywords: [String], in table: KeywordTable) -> UInt32? {
        var mask: UInt32 = 0
        for keyword in keywords {
            guard let index = table.index(of: keyword) else { return nil }
            mask |= 1 << UInt32(index)
        }
        return mask
    }

    /// A lock older than this is left over from a crashed writer (Dovecot
    /// treats keyword dotlocks the same way).
    static let staleLockAge: Double = 120

    private func withKeywordsLock(_ body: (Int32) throws -> Void) throws {
        let deadline = Date().addingTimeInterval(5)
        while true {
            let fd = openat(directory.fd, Self.keywordsLock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 {
                do {
                    try body(fd)
                    _ = close(fd)
                } catch {
                    _ = close(fd)
                    _ = unlinkat(directory.fd, Self.keywordsLock, 0)
                    throw error
                }
                return
            }
            let code = errno
            guard code == EEXIST else { throw MaildirError.systemCall(operation: "create lock", path: directory.child(Self.keywordsLock), errno: code) }
            if let st = directory.lstat(Self.keywordsLock), Date().timeIntervalSince(st.modificationDate) > Self.staleLockAge {
                _ = unlinkat(directory.fd, Self.keywordsLock, 0)
                continue
            }
            if Date() > deadline { throw MaildirError.keywordsFileLocked(path: directory.child(Self.keywordsLock)) }
            usleep(10_000)
        }
    }

    // MARK: Scanning

    /// Two `stat` calls for `cur/` and `new/`, one for `dovecot-keywords`.
    public func scanToken() throws -> ScanToken {
        let now = Date().timeIntervalSince1970
        return ScanToken(
            cur: FileStamp(try cur.fstat()), new: FileStamp(try new.fstat()),
            keywords: directory.lstat(Self.keywordsFile).map(FileStamp.init), takenAt: now)
    }

    /// Rescans only when `token` does not prove the folder unchanged.
    public func scanIfChanged(since token: ScanToken) throws -> ScanResult? {
        let current = try scanToken()
        if token.isSettled && token.sameState(as: current) { return nil }
        return try scan()
    }

    /// Lists `new/` and `cur/` with `readdir` only: no per-file `stat` and no
    /// file reads. Foreign files are returned as issues (and logged once) and
    /// never modified. When a base name occurs twice, the first file wins and
    /// the other is reported.
    public func scan() throws -> ScanResult {
        var entries: [MaildirEntry] = []
        entries.reserveCapacity(1024)
        var duplicates = BaseNameSet()
        let (issues, token) = try scan { entry, base in
            guard duplicates.insert(base, index: entries.count, entries: entries) else { return false }
            entries.append(entry)
            return true
        }
        return ScanResult(entries: entries, issues: issues, token: token)
    }

    /// `scan()` without the list: each message file goes to `accept` as it is
    /// read, with its base name, and is not kept. `accept` returns false when
    /// it already holds that base name; the file is then reported as a
    /// duplicate, as `scan()` reports it. For a caller that keeps a smaller
    /// picture of the folder: as a list, a 60,000-file folder's entries and
    /// their names take 9 MB.
    public func scan(_ accept: (MaildirEntry, _ baseName: Substring) -> Bool) throws
        -> (issues: [ScanIssue], token: ScanToken) {
        let token = try scanToken()
        let table = try keywordTable()
        var issueList: [ScanIssue] = []
        var keywordCache: [UInt32: ([String], [UInt8])] = [:]
        for sub in [MaildirSubdirectory.new, .cur] {
            let dir = handle(sub)
            try dir.forEachEntry { rawName, type in
                guard let fileName = String(validatingCString: rawName) else {
                    issueList.append(ScanIssue(path: dir.child(String(cString: rawName)), reason: "file name is not valid UTF-8"))
                    return
                }
                if type == UInt8(DT_LNK) { issueList.append(ScanIssue(path: dir.child(fileName), reason: "symbolic link")); return }
                if type == UInt8(DT_DIR) { issueList.append(ScanIssue(path: dir.child(fileName), reason: "directory inside \(sub.rawValue)/")); return }
                if type != UInt8(DT_REG) && type != UInt8(DT_UNKNOWN) {
                    issueList.append(ScanIssue(path: dir.child(fileName), reason: "not a regular file")); return
                }
                switch MaildirFileName.parse(fileName, inNew: sub == .new) {
                case .foreign(let reason):
                    issueList.append(ScanIssue(path: dir.child(fileName), reason: reason))
                case .message(let parsed):
                    let (keywords, unmapped): ([String], [UInt8])
                    if parsed.keywordMask == 0 {
                        (keywords, unmapped) = ([], [])
                    } else if let cached = keywordCache[parsed.keywordMask] {
                        (keywords, unmapped) = cached
                    } else {
                        (keywords, unmapped) = table.keywords(forMask: parsed.keywordMask)
                        keywordCache[parsed.keywordMask] = (keywords, unmapped)
                    }
                    var flags = MessageFlags(system: parsed.system)
                    if !keywords.isEmpty { flags = MessageFlags(system: parsed.system, sortedKeywords: keywords) }
                    let entry = MaildirEntry(
                        fileName: fileName, subdirectory: sub, size: parsed.size, flags: flags,
                        preservedInfo: unmapped.isEmpty ? parsed.preserved : (parsed.preserved + unmapped).sorted())
                    let base = fileName[..<parsed.baseEnd]
                    if !accept(entry, base) {
                        issueList.append(ScanIssue(path: dir.child(fileName), reason: "duplicate base name \(base)"))
                    }
                }
            }
        }
        for issue in issueList { issues.report(issue) }
        return (issueList, token)
    }

    /// Calls `body` with each file name in `new/` and `cur/` that `scan()`
    /// would list as a message, and the end of its base name, without
    /// building entries: checking a folder of 100,000 messages against what
    /// is expected then holds no array of them. Unlike `scan()` it reports no
    /// issues and passes on a second file with the same base name. Returns
    /// the token taken before reading.
    public func forEachMessageFileName(_ body: (_ fileName: String, _ baseEnd: String.Index) -> Void) throws -> ScanToken {
        let token = try scanToken()
        for sub in [MaildirSubdirectory.new, .cur] {
            try handle(sub).forEachEntry { rawName, type in
                guard type == UInt8(DT_REG) || type == UInt8(DT_UNKNOWN), let fileName = String(validatingCString: rawName),
                      case .message(let parsed) = MaildirFileName.parse(fileName, inNew: sub == .new) else { return }
                body(fileName, parsed.baseEnd)
            }
        }
        return token
    }

    // MARK: Finding a message

    private func validate(baseName: String) throws {
        if let problem = MaildirFileName.validationProblem(baseName: baseName) {
            throw MaildirError.invalidBaseName(folder: name, baseName: baseName, reason: problem)
        }
    }

    /// Builds an entry for a known file name without touching the disk.
    private func entry(fileName: String, in sub: MaildirSubdirectory) throws -> MaildirEntry? {
        guard case .message(let parsed) = MaildirFileName.parse(fileName, inNew: sub == .new) else { return nil }
        let (keywords, unmapped) = parsed.keywordMask == 0 ? ([], []) : try keywordTable().keywords(forMask: parsed.keywordMask)
        return MaildirEntry(
            fileName: fileName, subdirectory: sub, size: parsed.size,
            flags: MessageFlags(system: parsed.system, sortedKeywords: keywords),
            preservedInfo: (parsed.preserved + unmapped).sorted())
    }

    /// Finds the current file of a message. `hint` (the file name from the
    /// last scan) is tried first with one `stat` per directory; otherwise
    /// `cur/` and `new/` are listed, which is linear in the folder size.
    public func find(baseName: String, hint: String? = nil) throws -> MaildirEntry? {
        try validate(baseName: baseName)
        var candidates: [String] = [baseName]
        if let hint, hint == baseName || hint.hasPrefix(baseName + ":"), !hint.contains("/") { candidates.insert(hint, at: 0) }
        for candidate in candidates {
            for sub in [MaildirSubdirectory.cur, .new] where handle(sub).lstat(candidate)?.isRegularFile == true {
                if let found = try entry(fileName: candidate, in: sub) { return found }
            }
        }
        let prefix = baseName + ":"
        for sub in [MaildirSubdirectory.cur, .new] {
            var match: String?
            try handle(sub).forEachEntry { raw, _ in
                guard match == nil, let fileName = String(validatingCString: raw) else { return }
                if fileName == baseName || fileName.hasPrefix(prefix) { match = fileName }
            }
            if let match, let found = try entry(fileName: match, in: sub) { return found }
        }
        return nil
    }

    private func require(baseName: String, hint: String?) throws -> MaildirEntry {
        guard let entry = try find(baseName: baseName, hint: hint) else {
            throw MaildirError.messageNotFound(folder: name, baseName: baseName)
        }
        return entry
    }

    /// Retries an operation whose file was renamed by another program
    /// (a mail reader changing flags) between finding and using it.
    private func withCurrentFile<T>(baseName: String, hint: String?, _ body: (MaildirEntry) throws -> T?) throws -> T {
        var hint = hint
        for _ in 0..<5 {
            let entry = try require(baseName: baseName, hint: hint)
            if let result = try body(entry) { return result }
            hint = nil
        }
        throw MaildirError.messageNotFound(folder: name, baseName: baseName)
    }

    // MARK: Changing messages

    /// Replaces the message's flags by renaming it into `cur/` with a new
    /// info part; the base name stays the same. Unknown info characters are
    /// preserved. Directory fsync is off by default: a lost flag rename
    /// after a crash is repaired by the next sync, unlike a lost delivery.
    @discardableResult
    public func setFlags(baseName: String, flags: MessageFlags, hint: String? = nil, syncDirectory: Bool = false) throws -> MaildirEntry {
        let mask = try keywordMask(for: flags.keywords)
        let result = try withCurrentFile(baseName: baseName, hint: hint) { current -> MaildirEntry? in
            let newName = MaildirFileName.fileName(baseName: baseName, system: flags.system, keywordMask: mask, preserved: current.preservedInfo)
            if current.subdirectory == .cur && current.fileName == newName { return current }
            if renameat(handle(current.subdirectory).fd, current.fileName, cur.fd, newName) != 0 {
                let code = errno
                if code == ENOENT { return nil }
                throw MaildirError.systemCall(operation: "rename", path: handle(current.subdirectory).child(current.fileName), errno: code)
            }
            return MaildirEntry(fileName: newName, subdirectory: .cur, size: current.size, flags: flags, preservedInfo: current.preservedInfo)
        }
        if syncDirectory { try syncDirectories() }
        return result
    }

    /// ``setFlags(baseName:flags:hint:syncDirectory:)`` with system flags and
    /// keywords given separately.
    @discardableResult
    public func setFlags(baseName: String, flags: SystemFlags, keywords: [String], hint: String? = nil, syncDirectory: Bool = false) throws -> MaildirEntry {
        try setFlags(baseName: baseName, flags: MessageFlags(system: flags, keywords: keywords), hint: hint, syncDirectory: syncDirectory)
    }

    /// Expunges a message. The directory is fsynced by default so that a
    /// crash cannot resurrect a message the sync already reported as gone.
    public func remove(baseName: String, hint: String? = nil, syncDirectory: Bool = true) throws {
        let sub = try withCurrentFile(baseName: baseName, hint: hint) { current -> MaildirSubdirectory? in
            if unlinkat(handle(current.subdirectory).fd, current.fileName, 0) != 0 {
                let code = errno
                if code == ENOENT { return nil }
                throw MaildirError.systemCall(operation: "unlink", path: handle(current.subdirectory).child(current.fileName), errno: code)
            }
            return current.subdirectory
        }
        if syncDirectory { try handle(sub).sync() }
    }

    /// Moves a message to another folder of the same store, keeping its base
    /// name, subdirectory and flags. Keyword letters are translated through
    /// the destination's `dovecot-keywords`, because letters are per folder.
    @discardableResult
    public func move(baseName: String, to destination: MaildirFolder, hint: String? = nil, syncDirectory: Bool = true) throws -> MaildirEntry {
        let result = try withCurrentFile(baseName: baseName, hint: hint) { current -> MaildirEntry? in
            let mask = try destination.keywordMask(for: current.flags.keywords)
            let preserved = current.preservedInfo.filter { !($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) }
            let newName = current.fileName.contains(":")
                ? MaildirFileName.fileName(baseName: baseName, system: current.flags.system, keywordMask: mask, preserved: preserved)
                : current.fileName
            let code = NoReplaceRename.rename(from: handle(current.subdirectory), current.fileName, to: destination.handle(current.subdirectory), newName)
            if code == ENOENT { return nil }
            if code != 0 {
                throw MaildirError.systemCall(operation: "move to \(destination.name)", path: handle(current.subdirectory).child(current.fileName), errno: code)
            }
            return MaildirEntry(fileName: newName, subdirectory: current.subdirectory, size: current.size, flags: current.flags, preservedInfo: preserved)
        }
        if syncDirectory {
            try destination.handle(result.subdirectory).sync()
            try handle(result.subdirectory).sync()
        }
        return result
    }

    /// Opens a message for streaming reads; the body is never loaded here.
    public func openMessage(baseName: String, hint: String? = nil) throws -> OpenedMessage {
        try withCurrentFile(baseName: baseName, hint: hint) { current -> OpenedMessage? in
            let dir = handle(current.subdirectory)
            let fd = openat(dir.fd, current.fileName, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            if fd < 0 {
                let code = errno
                if code == ENOENT { return nil }
                if code == ELOOP { throw MaildirError.symlinkInTree(path: dir.child(current.fileName)) }
                throw MaildirError.systemCall(operation: "open", path: dir.child(current.fileName), errno: code)
            }
            var st = stat()
            guard Glibc.fstat(fd, &st) == 0, st.isRegularFile else {
                _ = close(fd)
                throw MaildirError.notARegularFile(path: dir.child(current.fileName))
            }
            return OpenedMessage(
                fileHandle: FileHandle(fileDescriptor: fd, closeOnDealloc: true),
                size: Int(st.st_size), internalDate: st.modificationDate, entry: current)
        }
    }

    /// Makes renames into `cur/` and `new/` durable; pairs with
    /// `commit(…, syncDirectory: false)` to batch many deliveries.
    public func syncDirectories() throws {
        try cur.sync()
        try new.sync()
    }

    /// Removes files in `tmp/` whose mtime and ctime are both older than 36
    /// hours, the age the Maildir spec gives for abandoned deliveries. Using
    /// ctime too keeps a delivery in progress whose mtime was already set to
    /// an old INTERNALDATE. Returns the number of files removed.
    @discardableResult
    public func cleanStaleTemporaryFiles(now: Date = Date()) throws -> Int {
        let limit = now.timeIntervalSince1970 - 36 * 3600
        var removed = 0
        for (entry, _) in try tmp.entries().names {
            guard let st = tmp.lstat(entry), st.isRegularFile else { continue }
            let mtime = Double(st.st_mtim.tv_sec), ctime = Double(st.st_ctim.tv_sec)
            guard max(mtime, ctime) < limit else { continue }
            if unlinkat(tmp.fd, entry, 0) == 0 { removed += 1 } else if errno != ENOENT {
                throw MaildirError.systemCall(operation: "unlink stale", path: tmp.child(entry), errno: errno)
            }
        }
        return removed
    }

    // MARK: Delivery

    /// Starts a delivery: creates a new file in `tmp/` with `O_EXCL`, mode 0600.
    public func beginDelivery() throws -> MessageDelivery {
        try MessageDelivery(folder: self, fault: nil)
    }

    /// A delivery that stops as if the process died right after `step`.
    func beginDelivery(simulatingCrashAfter step: DeliveryStep) throws -> MessageDelivery {
        try MessageDelivery(folder: self, fault: step)
    }
}

func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
    try bytes.withUnsafeBytes { try writeAll(fd, $0, path: path) }
}

func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
    var offset = 0
    while offset < buffer.count {
        let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
        if n < 0 {
            if errno == EINTR { continue }
            throw MaildirError.systemCall(operation: "write", path: path, errno: errno)
        }
        offset += n
    }
}

/// Detects a base name that occurs twice in one scan, without hashing every
/// name with `String`'s Unicode-normalizing hash (which dominated scan time):
/// names are keyed by an FNV-1a hash of their bytes and compared exactly only
/// when two hashes meet.
private struct BaseNameSet {
    private var firstIndexByHash: [UInt64: Int] = [:]
    private var exact: Set<String> = []

    /// False when `base` was already inserted.
    mutating func insert(_ base: Substring, index: Int, entries: [MaildirEntry]) -> Bool {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in base.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        guard let other = firstIndexByHash[hash] else {
            firstIndexByHash[hash] = index
            return true
        }
        let otherBase = entries[other].baseName
        if otherBase.utf8.elementsEqual(base.utf8) { return false }
        exact.insert(otherBase)
        return exact.insert(String(base)).inserted
    }
}
