import Foundation
import Logging
import Maildir
import NIOPosix
import SyncEngine
import SyncState
#if canImport(Glibc)
import Glibc
#endif

/// The near side: a `MailStore` over a Maildir tree, keyed by base name
/// (the file name before `:2,`), which survives flag changes, `new/`→`cur/`
/// and moves between folders.
///
/// Folder names are the engine's IMAP-style names with `/` as delimiter;
/// the Maildir module maps them to the configured layout and encoding.
///
/// Decisions:
/// - **Unchanged folders** are recognised by `scanToken()` (two `stat`s of
///   `cur/` and `new/`, one of `dovecot-keywords`), reported by LIST and
///   SELECT; a token taken within the directories' mtime granularity is made
///   unique so it never proves "unchanged" (see `ScanToken.isSettled`).
/// - **Listings** come from `readdir` plus one `stat` per file for the
///   internal date (the file's mtime, which a download sets to the server's
///   INTERNALDATE). The date is what lets an upload keep its arrival date and
///   lets the engine find an upload again without UIDPLUS, or an interrupted
///   download, when the message has no Message-ID; it is only paid for
///   folders whose scan token changed.
/// - **Durability**: a delivered file is fsynced before its rename, and the
///   folder's directories are fsynced in `flush(_:)`, which the engine calls
///   once per copy batch before recording the batch as synced: a rename lost
///   in a crash after that would read as a local deletion and delete the
///   server's copy. Flag renames are not fsynced
///   (a lost one is redone by the next sync); expunges and moves fsync the
///   directories once per call.
/// - **Own changes are remembered**: after a scan, this store keeps a table
///   of the folder's files (`hints`: by a hash of each base name, the rest
///   of its name; `FolderFiles`) and a proof of them (their number and a sum
///   of hashes of their names, `FolderProof`), and applies its own
///   deliveries, renames and removals to both. A later listing checks
///   `readdir` against the table (no `stat` per file), and a run that
///   changed a folder can prove, by one `readdir` once the directory has
///   settled, that nothing else did — so the next run skips it instead of
///   rescanning (`settledStatus`). The proof needs no table: a first
///   download of any size keeps none past 640 KB. One store per account is
///   shared by the engine's workers for this.
/// - **Transfer ids** are not kept: `MessageDelivery` owns the unique part
///   of the name, and an interrupted download is found again by Message-ID,
///   size and mtime (= INTERNALDATE) instead.
/// - The Maildir `P` (passed) flag has no IMAP equivalent: it is neither
///   reported nor removed by flag changes.
public actor MaildirMailStore: MailStore {
    /// Up to 32 deliveries are committed at once, off the caller's thread: a
    /// file's fsync is most of a small message's cost, and concurrent fsyncs
    /// share the file system's journal commits.
    public nonisolated let capabilities = StoreCapabilities(keyKind: .name, move: true, keysSurviveMove: true, keywords: true,
                                                            appendWindow: 32)
    public nonisolated let account: String
    public nonisolated let maildir: MaildirStore
    /// Staged deliveries are published (made durable together, then
    /// renamed into `cur/`) once this many wait, and at every `flush`.
    static let publishEvery = 64
    /// Unseen downloads go to `new/` (`new_mail_to = new`), else to `cur/`.
    public nonisolated let deliversUnseenToNew: Bool
    private var folders: [String: MaildirFolder] = [:]
    /// Per folder, its files from the last scan, kept current through this
    /// store's own changes: finding a message costs one `stat`.
    private var hints: [String: FolderFiles] = [:]
    /// Per folder, what proves it holds exactly the files of a read of it
    /// plus this store's own changes since (`settledStatus`). Kept when the
    /// folder's table is forgotten or never made: 16 bytes a folder.
    private var proofs: [String: FolderProof] = [:]
    /// Per folder, its files as of a scan token: the last scan, or the last
    /// proof that only this store changed it. A listing since that token is
    /// the difference to them, this store's own changes included, as an IMAP
    /// server's CHANGEDSINCE includes a client's own.
    private var snapshots: [String: (token: String, files: FolderFiles)] = [:]
    /// Per folder, the settled token a listing found unchanged (an empty
    /// delta, without a `readdir`): the state knows the folder as it was then.
    private var unchangedAt: [String: String] = [:]
    /// How many files `hints` and `snapshots` may keep together (12.5–19
    /// bytes each, at most 7.6 MB at the default): beyond it the least recently
    /// used folders are forgotten, so a store shared by a whole account (and
    /// kept by the daemon) does not grow with it. A forgotten folder costs
    /// one `readdir` when it is next acted on, and a full listing instead of
    /// a delta when it is next listed; it is never proven settled from a
    /// snapshot it no longer has.
    public nonisolated let retainedFileNames: Int
    /// Beyond this many slots (640 KB at the default) a full table is not
    /// grown by this store's own deliveries (`setHint`).
    nonisolated let growableSlots: Int
    /// Bits of each base name's hash the tables keep: fewer only in tests,
    /// where names then share keys and every doubt is exercised.
    nonisolated let tableKeyBits: Int
    private var lastUse: [String: Int] = [:]
    private var useClock = 0

    public init(root: String, layout: MaildirLayout = .maildirPlusPlus, folderNameEncoding: FolderNameEncoding = .utf8,
                deliversUnseenToNew: Bool = false, slowGroupSync: Duration = .seconds(1), retainedFileNames: Int = 400_000,
                growableSlots: Int = 1 << 16, tableKeyBits: Int = 64, account: String,
                logger: Logger = Logger(label: "ferrymail.maildir")) throws {
        self.account = account
        self.growableSlots = growableSlots
        self.tableKeyBits = tableKeyBits
        self.retainedFileNames = max(0, retainedFileNames)
        self.deliversUnseenToNew = deliversUnseenToNew
        do {
            maildir = try MaildirStore(root: root, layout: layout, folderNameEncoding: folderNameEncoding,
                                       slowGroupSync: slowGroupSync, logger: logger)
        } catch {
            throw MailStoreError.maildir(account: account, mailbox: nil, operation: "opening \(root)", cause: "\(error)")
        }
    }

    // MARK: - Mailboxes

    public func listMailboxes() async throws -> [MailboxInfo] {
        try run(nil, "listing folders") {
            try maildir.listFolders().map { listing in
                let folder = try self.folder(listing.name)
                return MailboxInfo(name: listing.name, role: nil, delimiter: "/", selectable: true,
                                   status: MailboxStatus(scanToken: Self.text(try folder.scanToken())))
            }
        }
    }

    public func createMailbox(_ name: String, role: SpecialUse?) async throws {
        try run(name, "creating folder") { _ = try self.folder(name, create: true) }
    }

    /// Removes the folder's messages, then the folder. Files that are not
    /// messages (foreign files, subdirectories) make `deleteFolder` refuse,
    /// so nothing but mail is ever deleted.
    public func deleteMailbox(_ name: String) async throws {
        try run(name, "deleting folder") {
            let folder: MaildirFolder
            do { folder = try self.folder(name) } catch MaildirError.folderNotFound { return }
            // Unflushed deliveries are messages of the folder too.
            try folder.publishStaged()
            for entry in try folder.scan().entries {
                do { try folder.remove(baseName: entry.baseName, hint: entry.fileName, syncDirectory: false) } catch MaildirError.messageNotFound {}
            }
            try folder.syncDirectories()
            folders[name] = nil
            hints[name] = nil
            lastUse[name] = nil
            unchangedAt[name] = nil
            proofs[name] = nil
            snapshots[name] = nil
            try maildir.deleteFolder(named: name)
        }
    }

    public func select(_ mailbox: String) async throws -> MailboxStatus {
        try run(mailbox, "reading folder status") {
            MailboxStatus(scanToken: Self.text(try self.folder(mailbox).scanToken()))
        }
    }

    // MARK: - Listing messages

    /// A settled token equal to the watermark means nothing changed: an empty
    /// delta, no `readdir`. A watermark this store's snapshot is taken at
    /// gives a delta from one `readdir` checked against the snapshot.
    /// Anything else is a full listing.
    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?) async throws -> MessageListing {
        try listing(mailbox, changedSince: watermark, comparedWith: nil)
    }

    /// Where the listing would be full, the scan keeps only the folder's
    /// table of files (which it keeps anyway, as the snapshot); each
    /// recorded key is looked up in it, and only the files that are new or
    /// differ are `stat`ed and listed, from a second `readdir`.
    public func messages(in mailbox: String, changedSince watermark: SyncWatermark?, comparedWith recorded: RecordedMessages) async throws
        -> MessageListing {
        try listing(mailbox, changedSince: watermark, comparedWith: recorded)
    }

    private func listing(_ mailbox: String, changedSince watermark: SyncWatermark?, comparedWith recorded: RecordedMessages?) throws
        -> MessageListing {
        try run(mailbox, "scanning folder") {
            let folder = try self.folder(mailbox)
            // A Maildir has no UIDVALIDITY; a watermark carrying one is not ours.
            let watermark = watermark?.uidValidity == nil ? watermark : nil
            if let since = watermark?.scanToken {
                let current = try folder.scanToken()
                if current.isSettled && Self.text(current) == since {
                    unchangedAt[mailbox] = since
                    return .delta(changed: [], vanished: [])
                }
            }
            let snapshot = snapshots[mailbox]
            if let snapshot, watermark?.scanToken == snapshot.token,
               let delta = try delta(mailbox, folder, since: snapshot.files, recorded: recorded) {
                return delta
            }
            if let recorded, let delta = try compared(mailbox, folder, with: recorded) { return delta }
            return try fullListing(mailbox, folder, capacity: max(1024, snapshot?.files.count ?? 0))
        }
    }

    /// Every message of the folder. A second file of a base name is
    /// reported by the scan and left out; it is told from another base name
    /// with the same hash by the listing itself, which holds every name.
    private func fullListing(_ mailbox: String, _ folder: MaildirFolder, capacity: Int) throws -> MessageListing {
        var files = FolderFiles(minimumCapacity: capacity, keyBits: tableKeyBits)
        var proof = FolderProof()
        var messages: [MessageInfo] = []
        var duplicates = false
        let scan = try folder.scan { entry, base in
            proof.add(entry.fileName)
            if !files.insertIfAbsent(fileName: entry.fileName, baseEnd: base.endIndex) {
                let key = MessageKey.name(String(base))
                if messages.contains(where: { $0.key == key }) {
                    duplicates = true
                    return false
                }
            }
            messages.append(info(entry, base: base, in: folder))
            return true
        }
        // A folder with a file more than the listing never settles: it is
        // read again, and its duplicate reported, each time.
        remember(mailbox, files, duplicates ? nil : proof, at: scan.token)
        return .full(messages)
    }

    /// The files added or renamed since `baseline` (the snapshot at the
    /// watermark), and the recorded keys whose files are gone since. Nil
    /// when hashes cannot tell it exactly (a key held twice) or a file
    /// vanished and there are no recorded keys to name it.
    private func delta(_ mailbox: String, _ folder: MaildirFolder, since baseline: FolderFiles,
                       recorded: RecordedMessages?) throws -> MessageListing? {
        guard baseline.isExact else { return nil }
        var messages: [MessageInfo] = []
        let read = try readTable(folder, capacity: baseline.count) { entry, base, _ in
            if !baseline.holds(fileName: entry.fileName, baseEnd: base.endIndex) {
                messages.append(info(entry, base: base, in: folder))
            }
        }
        guard let (files, proof, token) = read else { return nil }
        let missing = baseline.keys(missingFrom: files)
        var vanished: [MessageKey] = []
        if !missing.isEmpty {
            // A file the state never knew needs no name: only recorded keys vanish.
            guard let recorded else { return nil }
            try recorded.forEach { key, _ in
                if case .name(let name) = key, missing.contains(files.key(of: name)) { vanished.append(key) }
                return true
            }
        }
        remember(mailbox, files, proof, at: token)
        return .delta(changed: messages, vanished: vanished)
    }

    /// The full listing of `folder` as a delta against `recorded`, from two
    /// `readdir`s: the first fills the folder's table, each recorded key is
    /// looked up in it, and the second lists the files that are new or whose
    /// flags differ. Nil when more than `deltaLimit` keys differ, or hashes
    /// cannot tell it exactly (a key held twice).
    private func compared(_ mailbox: String, _ folder: MaildirFolder, with recorded: RecordedMessages) throws -> MessageListing? {
        // A suffix's flags: the same for every file that has it.
        var flagsOfSuffix: [Int: SyncState.MessageFlags] = [:]
        let read = try readTable(folder, capacity: max(1024, recorded.count)) { entry, _, suffix in
            if let suffix, flagsOfSuffix[suffix] == nil { flagsOfSuffix[suffix] = Self.syncFlags(entry.flags) }
        }
        guard let (files, proof, token) = read else { return nil }
        remember(mailbox, files, proof, at: token)

        // Per slot: 0 not recorded (new), 1 recorded and agreeing, 2 to list.
        var marks = [UInt8](repeating: 0, count: files.capacity)
        var vanished: [MessageKey] = []
        var differing = 0, matched = 0, usable = true
        let limit = recorded.deltaLimit(listed: files.count)
        try recorded.forEach { key, flags in
            // Only names are compared: a key of another kind is passed over.
            guard case .name(let name) = key else { return true }
            if let slot = files.slot(ofBase: name) {
                // Two recorded names with one hash: not told apart here.
                guard marks[slot] == 0 else {
                    usable = false
                    return false
                }
                matched += 1
                if let suffix = files.suffix(at: slot), let listed = flagsOfSuffix[suffix], RecordedMessages.agree(listed, flags) {
                    marks[slot] = 1
                } else {
                    marks[slot] = 2
                    differing += 1
                }
            } else {
                vanished.append(key)
            }
            usable = differing + vanished.count <= limit
            return usable
        }
        guard usable, differing + (files.count - matched) + vanished.count <= limit else { return nil }
        var changed: [MessageInfo] = []
        if differing + files.count - matched > 0 {
            _ = try folder.scan { entry, base in
                // A file added since the first `readdir` is in the next
                // listing: the token above is older than it.
                guard let slot = files.slot(fileName: entry.fileName, baseEnd: base.endIndex), marks[slot] != 1 else { return true }
                marks[slot] = 1
                changed.append(info(entry, base: base, in: folder))
                return true
            }
        }
        return .delta(changed: changed, vanished: vanished)
    }

    /// One `readdir` into a new table of the folder, sized for `capacity`
    /// files, and its proof; `each` gets every file the table took, with its
    /// suffix's index. Nil when a key was held twice: hashes cannot tell
    /// such a listing exactly, and the caller lists the folder in full.
    private func readTable(_ folder: MaildirFolder, capacity: Int, _ each: (MaildirEntry, Substring, _ suffix: Int?) -> Void) throws
        -> (files: FolderFiles, proof: FolderProof, token: ScanToken)? {
        var files = FolderFiles(minimumCapacity: capacity, keyBits: tableKeyBits)
        var proof = FolderProof()
        var exact = true
        let scan = try folder.scan { entry, base in
            proof.add(entry.fileName)
            guard exact else { return true }
            guard let slot = files.insertedSlot(fileName: entry.fileName, baseEnd: base.endIndex) else {
                exact = false
                return true
            }
            each(entry, base, files.suffix(at: slot))
            return true
        }
        return exact ? (files, proof, scan.token) : nil
    }

    /// A listed message: its size from the name (`,S=`) or the file, its
    /// internal date from the file's mtime.
    private func info(_ entry: MaildirEntry, base: Substring, in folder: MaildirFolder) -> MessageInfo {
        let size: Int64, date: Int64?
        if let st = folder.fileStatus(of: entry) {
            (size, date) = (Int64(entry.size ?? Int(st.st_size)), Int64(st.st_mtim.tv_sec))
        } else {
            // Renamed (a mail reader's flag change) or removed since the
            // readdir. Left out, it would read as deleted here and be
            // expunged on the server; listed as read, the next scan tells
            // which it was. Without `,S=` its size is unknown (0): a copy
            // takes the real size from the file it opens.
            (size, date) = (Int64(entry.size ?? 0), nil)
        }
        return MessageInfo(key: .name(String(base)), flags: Self.syncFlags(entry.flags), size: size, internalDate: date)
    }

    /// A scan's table is the folder's hints and its snapshot at the scan's
    /// token; its proof is what later changes are checked against.
    private func remember(_ mailbox: String, _ files: FolderFiles, _ proof: FolderProof?, at token: ScanToken) {
        hints[mailbox] = files
        proofs[mailbox] = proof
        snapshots[mailbox] = (Self.text(token), files)
        retain(mailbox)
    }

    /// One `readdir` once the directories have settled: when the folder
    /// holds exactly the files its proof says (the last read plus this
    /// store's own changes), their token is the new watermark.
    public func settledStatus(of mailbox: String) async throws -> MailboxStatus? {
        guard proofs[mailbox] != nil else { return nil }
        let folder = try run(mailbox, "reading folder status") { try self.folder(mailbox) }
        var token = try run(mailbox, "reading folder status") { try folder.scanToken() }
        if !token.isSettled {
            // Our own last change is this recent: wait the directories' timestamp
            // granularity out, so a change made right after the token is taken
            // cannot keep the same timestamp.
            guard let wait = token.timeUntilSettled, wait <= ScanToken.fineSettleInterval else { return nil }
            try await Task.sleep(for: .seconds(wait))
        }
        return try run(mailbox, "reading folder status") {
            // Read again after the wait: other workers' own changes to this
            // folder (a move into it) are in the snapshot too.
            guard let expected = proofs[mailbox] else { return nil }
            var found = FolderProof()
            token = try folder.forEachMessageFileName { fileName, _ in found.add(fileName) }
            guard token.isSettled, found == expected else { return nil }
            let text = Self.text(token)
            // The table, kept through the same changes, is the snapshot at
            // this token, unless it doubts a name.
            if let files = hints[mailbox], files.isExact, files.count == expected.count {
                snapshots[mailbox] = (text, files)
            } else {
                snapshots[mailbox] = nil
            }
            return MailboxStatus(scanToken: text)
        }
    }

    /// Reads only each file's header section (up to the blank line).
    public func messageIds(for keys: [MessageKey], in mailbox: String) async throws -> [MessageKey: String] {
        try run(mailbox, "reading Message-IDs") {
            let folder = try self.folder(mailbox)
            var result: [MessageKey: String] = [:]
            for key in keys {
                let base = try self.baseName(key, mailbox)
                guard let opened = try self.open(base, in: folder, mailbox) else { continue }
                defer { try? opened.fileHandle.close() }
                var header: [UInt8] = []
                while header.count < Self.maximumHeader {
                    guard let data = try opened.fileHandle.read(upToCount: 8192), !data.isEmpty else { break }
                    header += data
                    if Self.containsBlankLine(header) { break }
                }
                if let id = HeaderFields.value(of: "Message-ID", in: header) { result[key] = id }
            }
            return result
        }
    }

    private static let maximumHeader = 256 * 1024
    private static let chunkSize = 64 * 1024

    private static func containsBlankLine(_ bytes: [UInt8]) -> Bool {
        var previous: UInt8 = 0, beforePrevious: UInt8 = 0
        for byte in bytes {
            if byte == UInt8(ascii: "\n") && (previous == UInt8(ascii: "\n") || (previous == UInt8(ascii: "\r") && beforePrevious == UInt8(ascii: "\n"))) {
                return true
            }
            beforePrevious = previous
            previous = byte
        }
        return false
    }

    // MARK: - Bodies

    /// Streams each file in 64 KB chunks; the whole message is never in memory.
    public func fetch(_ keys: [MessageKey], in mailbox: String, into sink: any MessageSink) async throws {
        let folder = try run(mailbox, "opening folder") { try self.folder(mailbox) }
        for key in keys {
            let base = try baseName(key, mailbox)
            guard let opened = try run(mailbox, "opening message", { try self.open(base, in: folder, mailbox) }) else { continue }
            defer { try? opened.fileHandle.close() }
            try await sink.begin(key, size: Int64(opened.size))
            var remaining = opened.size
            while remaining > 0 {
                let data = try run(mailbox, "reading message \(base)") {
                    try opened.fileHandle.read(upToCount: min(Self.chunkSize, remaining))
                }
                guard let data, !data.isEmpty else {
                    throw MailStoreError.maildir(account: account, mailbox: mailbox, operation: "reading message \(base)",
                                                 cause: "file ended \(remaining) bytes early (truncated by another program)")
                }
                remaining -= data.count
                try await sink.write(Array(data))
            }
            try await sink.end()
        }
    }

    public func beginAppend(to mailbox: String, _ envelope: AppendEnvelope) async throws -> any AppendWriter {
        try run(mailbox, "starting delivery") {
            let folder = try self.folder(mailbox)
            try ensureProof(mailbox, folder)
            let delivery = try folder.beginDelivery()
            let toNew = deliversUnseenToNew && !envelope.flags.contains("\\Seen")
            return MaildirAppendWriter(store: self, account: account, mailbox: mailbox, delivery: delivery, size: envelope.size,
                                       flags: Self.maildirFlags(envelope.flags), internalDate: envelope.internalDate, toNew: toNew)
        }
    }

    /// Records this store's own change to a folder's file (nil: removed).
    /// The folder's snapshot, the picture of its last scan, is let go of
    /// first when it is the same table: changing the table would copy it
    /// (22 MB at a 200,000-message folder's first change), and the snapshot
    /// only serves a delta from that scan, which a run that changed the
    /// folder does not list from unless proving its changes failed; then
    /// the folder is compared in full with the state instead.
    private func setHint(_ fileName: String?, for base: String, in mailbox: String) {
        // Decided in a closure, so that no copy of either table outlives it
        // and the change below finds the table uniquely held.
        let shared = { () -> Bool in
            guard let files = self.hints[mailbox], let snapshot = self.snapshots[mailbox]?.files else { return false }
            return snapshot.sharesStorage(with: files)
        }()
        if shared { snapshots[mailbox] = nil }
        // A large table that is full is let go of rather than grown, which
        // holds the old and the new table at once: a first download of a
        // large folder finds no message, and the next lookup reads the
        // folder again into a table of the right size.
        if fileName != nil, let files = hints[mailbox], !files.hasRoom, files.capacity >= growableSlots, !files.contains(base) {
            hints[mailbox] = nil
            return
        }
        hints[mailbox]?[base] = fileName
    }


    /// Records this store's own change to a message's file: `old` (nil: a
    /// delivery) became `new` (nil: removed), in the folder's proof and table.
    private func record(_ base: String, from old: String?, to new: String?, in mailbox: String) {
        switch (old, new) {
        case let (old?, new?): proofs[mailbox]?.rename(old, to: new)
        case let (nil, new?): proofs[mailbox]?.add(new)
        case let (old?, nil): proofs[mailbox]?.remove(old)
        case (nil, nil): break
        }
        setHint(new, for: base, in: mailbox)
    }

    /// A delivery's file is part of the folder's proof and table from now on.
    func delivered(_ entry: MaildirEntry, to mailbox: String) {
        record(entry.baseName, from: nil, to: entry.fileName, in: mailbox)
    }

    /// Publishes the folder's staged deliveries (`MaildirFolder.publishStaged`):
    /// one `syncfs` for the batch instead of an `fsync` per message, which
    /// took 10–25 % off a large first download.
    public func flush(_ mailbox: String) async throws {
        let folder = try run(mailbox, "syncing the folder to disk") { try self.folder(mailbox) }
        // Deliveries grow the folder's names: checked once per batch.
        retain(mailbox)
        do {
            _ = try await BlockingIO.run { try folder.publishStaged() }
        } catch {
            throw MailStoreError.maildir(account: account, mailbox: mailbox, operation: "syncing the folder to disk", cause: "\(error)")
        }
    }

    // MARK: - Changing messages

    public func setFlags(_ changes: [FlagChange], in mailbox: String) async throws {
        try run(mailbox, "changing flags") {
            let folder = try self.folder(mailbox)
            try ensureHints(mailbox, folder)
            for change in changes {
                for key in change.keys {
                    let base = try self.baseName(key, mailbox)
                    // Renamed by another program since the table was read,
                    // the file is changed under its current name, and the
                    // folder's proof, which does not hold that name, fails.
                    guard let current = try folder.find(baseName: base, hint: hints[mailbox]?[base]) else { continue }
                    let wanted = SyncState.MessageFlags(Self.syncFlags(current.flags).names.filter { !change.remove.contains($0) } + change.add.names)
                    var flags = Self.maildirFlags(wanted)
                    if current.flags.system.contains(.passed) { flags.system.insert(.passed) }
                    do {
                        let entry = try folder.setFlags(baseName: base, flags: flags, hint: current.fileName)
                        record(base, from: current.fileName, to: entry.fileName, in: mailbox)
                    } catch MaildirError.messageNotFound {
                        continue
                    }
                }
            }
        }
    }

    public func expunge(_ keys: [MessageKey], in mailbox: String) async throws {
        try run(mailbox, "removing messages") {
            let folder = try self.folder(mailbox)
            try ensureHints(mailbox, folder)
            for key in keys {
                let base = try self.baseName(key, mailbox)
                guard let current = try folder.find(baseName: base, hint: hints[mailbox]?[base]) else { continue }
                do {
                    try folder.remove(baseName: base, hint: current.fileName, syncDirectory: false)
                } catch MaildirError.messageNotFound {
                    continue
                }
                record(base, from: current.fileName, to: nil, in: mailbox)
            }
            try folder.syncDirectories()
        }
    }

    public func move(_ keys: [MessageKey], from source: String, to destination: String) async throws -> [MessageKey: MessageKey] {
        try run(source, "moving messages to \(destination)") {
            let from = try self.folder(source), to = try self.folder(destination)
            try ensureHints(source, from)
            try ensureProof(destination, to)
            var moved: [MessageKey: MessageKey] = [:]
            for key in keys {
                let base = try self.baseName(key, source)
                let hint = hints[source]?[base]
                guard let current = try from.find(baseName: base, hint: hint) else { continue }
                do {
                    let entry = try from.move(baseName: base, to: to, hint: current.fileName, syncDirectory: false)
                    record(base, from: current.fileName, to: nil, in: source)
                    record(base, from: nil, to: entry.fileName, in: destination)
                    // A file renamed by another program since the table was
                    // read (a flag change) takes that change along: the
                    // source's proof fails, but the destination's would hold
                    // the new name and prove it away. Without a table to
                    // tell, the destination proves nothing either.
                    if current.fileName != hint { proofs[destination] = nil }
                    moved[key] = key
                } catch MaildirError.messageNotFound {
                    continue
                }
            }
            try to.syncDirectories()
            try from.syncDirectories()
            return moved
        }
    }

    public func close() async {}

    // MARK: - Flags

    /// Maildir flags as the sync state spells them (IMAP names, keywords as is).
    static func syncFlags(_ flags: Maildir.MessageFlags) -> SyncState.MessageFlags {
        let system = SystemFlags.imapNames.filter { flags.system.contains($0.0) }.map(\.1)
        return SyncState.MessageFlags(system + flags.keywords)
    }

    static func maildirFlags(_ flags: SyncState.MessageFlags) -> Maildir.MessageFlags {
        var system: SystemFlags = []
        var keywords: [String] = []
        for name in FlagMerge.normalized(flags).names {
            if let flag = SystemFlags.imapNames.first(where: { $0.1 == name })?.0 {
                system.insert(flag)
            } else if !FlagMerge.isSystemFlag(name) {
                keywords.append(name)
            }
        }
        return Maildir.MessageFlags(system: system, keywords: keywords)
    }

    // MARK: - Plumbing

    private func folder(_ name: String, create: Bool = false) throws -> MaildirFolder {
        if let folder = folders[name] { return folder }
        let folder = try maildir.folder(named: name, create: create)
        folders[name] = folder
        return folder
    }

    private func open(_ base: String, in folder: MaildirFolder, _ mailbox: String) throws -> OpenedMessage? {
        try ensureHints(mailbox, folder)
        do {
            return try folder.openMessage(baseName: base, hint: hints[mailbox]?[base])
        } catch MaildirError.messageNotFound {
            return nil
        }
    }

    /// Reads a folder's table before this store first looks a message up
    /// in a folder it has none of: without it every lookup costs a `readdir`
    /// of the whole folder. Sized beforehand, by the folder's proof or a
    /// first `readdir` that counts, so it is never grown, which would hold
    /// the old and the new table at once. When the directory is still at the
    /// token a listing found unchanged, before and after the `readdir`, the
    /// table is exactly what the state knows, and the folder can settle at
    /// the end of the run like a scanned one.
    private func ensureHints(_ mailbox: String, _ folder: MaildirFolder) throws {
        guard hints[mailbox] == nil else { return touch(mailbox) }
        defer { retain(mailbox) }
        var expected = proofs[mailbox]?.count ?? 0
        if proofs[mailbox] == nil { _ = try folder.forEachMessageFileName { _, _ in expected += 1 } }
        // Names only: no entries built, as `scan()` would (5 MB for 60,000
        // files). A base name with two files gives no hint.
        var names = FolderFiles(minimumCapacity: expected + expected / 16 + 64, keyBits: tableKeyBits)
        var proof = FolderProof()
        let scanned = try folder.forEachMessageFileName { fileName, baseEnd in
            proof.add(fileName)
            names.insertIfAbsent(fileName: fileName, baseEnd: baseEnd)
        }
        hints[mailbox] = names
        let token = Self.text(scanned)
        if token == unchangedAt[mailbox], Self.text(try folder.scanToken()) == token {
            proofs[mailbox] = proof
            snapshots[mailbox] = (token, names)
        }
    }

    /// Before this store first delivers to a folder it has not read (its
    /// listing was an empty delta): its proof, from one `readdir` that keeps
    /// nothing per file, when the directory is still at the token that
    /// listing found unchanged, so the folder can settle at the end of the
    /// run. Tried once per such listing.
    private func ensureProof(_ mailbox: String, _ folder: MaildirFolder) throws {
        guard proofs[mailbox] == nil, let since = unchangedAt[mailbox] else { return }
        unchangedAt[mailbox] = nil
        var proof = FolderProof()
        let scanned = try folder.forEachMessageFileName { fileName, _ in proof.add(fileName) }
        if Self.text(scanned) == since, Self.text(try folder.scanToken()) == since { proofs[mailbox] = proof }
    }

    /// Marks `mailbox` as just used, then forgets the least recently used
    /// other folders while more than `retainedFileNames` names are kept.
    private func retain(_ mailbox: String) {
        touch(mailbox)
        var kept = Set(hints.keys).union(snapshots.keys).reduce(0) { $0 + retained($1) }
        guard kept > retainedFileNames else { return }
        for folder in lastUse.sorted(by: { $0.value < $1.value }).map(\.key) where folder != mailbox {
            guard kept > retainedFileNames else { break }
            kept -= retained(folder)
            hints[folder] = nil
            snapshots[folder] = nil
            lastUse[folder] = nil
        }
    }

    /// Marks `mailbox` as the most recently used folder.
    private func touch(_ mailbox: String) {
        useClock += 1
        lastUse[mailbox] = useClock
    }

    /// Names kept for `folder`: its hints, and its snapshot unless that is
    /// the same buffer (after a listing or a settle, until the next change).
    private func retained(_ folder: String) -> Int {
        let names = hints[folder], snapshot = snapshots[folder]?.files
        if let names, let snapshot, names.sharesStorage(with: snapshot) { return names.count }
        return (names?.count ?? 0) + (snapshot?.count ?? 0)
    }

    private nonisolated func baseName(_ key: MessageKey, _ mailbox: String) throws -> String {
        guard case .name(let name) = key else { throw MailStoreError.wrongKeyKind(account: account, mailbox: mailbox, key: key) }
        return name
    }

    /// A token that is unique when it was taken too soon after the last
    /// change to prove anything (directory mtimes are coarse).
    static func text(_ token: ScanToken) -> String {
        func stamp(_ s: FileStamp?) -> String { s.map { "\($0.inode).\($0.seconds).\($0.nanoseconds)" } ?? "-" }
        var text = "c=\(stamp(token.cur));n=\(stamp(token.new));k=\(stamp(token.keywords))"
        if !token.isSettled { text += ";unsettled=\(token.takenAt)" }
        return text
    }

    private func run<T>(_ mailbox: String?, _ operation: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as MailStoreError {
            throw error
        } catch {
            throw MailStoreError.maildir(account: account, mailbox: mailbox, operation: operation, cause: "\(error)")
        }
    }
}

/// One delivery into `tmp/`. `endBody()` starts its commit (fsync, rename)
/// on `BlockingIO`'s threads and returns; `finish()` awaits it, so several
/// deliveries' fsyncs are in flight at once.
actor MaildirAppendWriter: AppendWriter {
    private let store: MaildirMailStore
    private let account: String
    private let mailbox: String
    private let delivery: MessageDelivery
    private let size: Int64
    private let flags: Maildir.MessageFlags
    private let internalDate: Int64?
    private let toNew: Bool
    private var written: Int64 = 0
    private var done = false
    private var commit: Task<MaildirEntry, any Error>?

    init(store: MaildirMailStore, account: String, mailbox: String, delivery: MessageDelivery, size: Int64,
         flags: Maildir.MessageFlags, internalDate: Int64?, toNew: Bool) {
        self.store = store
        self.account = account
        self.mailbox = mailbox
        self.delivery = delivery
        self.size = size
        self.flags = flags
        self.internalDate = internalDate
        self.toNew = toNew
    }

    func write(_ chunk: [UInt8]) async throws {
        guard !done else { throw MailStoreError.appendFinished(account: account, mailbox: mailbox) }
        guard written + Int64(chunk.count) <= size else {
            await cancel()
            throw MailStoreError.appendSizeMismatch(account: account, mailbox: mailbox, announced: size, received: written + Int64(chunk.count))
        }
        do {
            try delivery.write(chunk)
        } catch {
            await cancel()
            throw MailStoreError.maildir(account: account, mailbox: mailbox, operation: "writing delivery", cause: "\(error)")
        }
        written += Int64(chunk.count)
    }

    func endBody() async throws {
        guard !done else { throw MailStoreError.appendFinished(account: account, mailbox: mailbox) }
        guard written == size else {
            await cancel()
            throw MailStoreError.appendSizeMismatch(account: account, mailbox: mailbox, announced: size, received: written)
        }
        done = true
        let (delivery, flags, toNew) = (self.delivery, self.flags, self.toNew)
        let date = internalDate.map { Date(timeIntervalSince1970: TimeInterval($0)) }
        commit = Task {
            try await BlockingIO.run {
                // A file system busy with other writes makes each group's
                // syncfs wait for them: one fsync per file then.
                if delivery.folder.prefersFileSync {
                    return try delivery.commit(flags: flags, internalDate: date, toNew: toNew, syncDirectory: false)
                }
                let entry = try delivery.stage(flags: flags, internalDate: date, toNew: toNew)
                // Published in groups, not only at the engine's flush (up to
                // 500 messages): a run stopped mid-batch then keeps all but
                // the last few downloads, which the next run finds in `cur/`.
                if delivery.folder.stagedCount >= MaildirMailStore.publishEvery { try delivery.folder.publishStaged() }
                return entry
            }
        }
    }

    func finish() async throws -> MessageKey? {
        if commit == nil { try await endBody() }
        guard let commit else { throw MailStoreError.appendFinished(account: account, mailbox: mailbox) }
        do {
            let entry = try await commit.value
            await store.delivered(entry, to: mailbox)
            return .name(entry.baseName)
        } catch {
            throw MailStoreError.maildir(account: account, mailbox: mailbox, operation: "committing delivery", cause: "\(error)")
        }
    }

    /// Before the commit started, the temporary file is removed. After, the
    /// commit is let finish (its descriptor is in use on another thread); a
    /// message it delivers is found again by the next run, as after a crash.
    func cancel() async {
        done = true
        if let commit {
            _ = try? await commit.value
        } else {
            delivery.abort()
        }
    }
}

/// Blocking file-system work (a delivery's fsync) runs here, not on Swift's
/// cooperative threads: those are as many as the cores, and one blocked in
/// fsync holds up every task queued behind it.
enum BlockingIO {
    private static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        return pool
    }()

    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }
}
