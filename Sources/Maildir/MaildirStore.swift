import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A problem with one file or directory that was skipped, never touched.
public struct ScanIssue: Sendable, Hashable, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Logs each problematic path once per store, so a foreign file in a folder
/// scanned every minute does not flood the log.
final class IssueLog: Sendable {
    private let seen = Mutex<Set<String>>([])
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func report(_ issue: ScanIssue) {
        let isNew = seen.withLock { $0.insert(issue.path).inserted }
        if isNew {
            logger.warning("Skipping \(issue.path): \(issue.reason). It is left untouched; move or remove it by hand if it is not mail.")
        }
    }
}

/// A folder as listed from disk.
public struct FolderListing: Sendable, Hashable {
    /// IMAP name with `/` as hierarchy separator, `INBOX` for the inbox.
    public let name: String
    /// Absolute path of the folder's directory (the one holding `cur/`).
    public let path: String
}

/// A tree of Maildir folders under one root directory.
///
/// Every path below the root is reached by `openat(…, O_NOFOLLOW)` from the
/// root's descriptor, so neither a hostile mailbox name nor a symlink planted
/// in the tree can make the store read or write outside the root.
public final class MaildirStore: Sendable {
    public let rootPath: String
    public let layout: MaildirLayout
    public let codec: MailboxNameCodec
    let root: DirectoryHandle
    let issues: IssueLog
    /// How long one group's `syncfs` may take before a folder makes its
    /// deliveries durable one by one (`MaildirFolder.prefersFileSync`).
    public let slowGroupSync: Duration

    /// Opens (creating it with mode 0700 if missing) the Maildir root.
    public init(
        root rootPath: String,
        layout: MaildirLayout = .maildirPlusPlus,
        folderNameEncoding: FolderNameEncoding = .utf8,
        slowGroupSync: Duration = .seconds(1),
        logger: Logger = Logger(label: "ferrymail.maildir")
    ) throws {
        self.slowGroupSync = slowGroupSync
        let absolute = rootPath.hasPrefix("/") ? rootPath : FileManager.default.currentDirectoryPath + "/" + rootPath
        // Create missing parents too, as a first run into ~/Mail/x needs.
        var prefix = ""
        for component in absolute.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw MaildirError.systemCall(operation: "create Maildir root", path: prefix, errno: errno)
            }
        }
        self.rootPath = absolute
        self.layout = layout
        self.codec = MailboxNameCodec(layout: layout, encoding: folderNameEncoding)
        self.root = try DirectoryHandle.openRoot(absolute)
        self.issues = IssueLog(logger: logger)
    }

    /// The absolute directory a mailbox name maps to (whether or not it exists).
    public func path(forFolder name: String) throws -> String {
        let components = try codec.relativeComponents(for: name)
        return components.reduce(rootPath) { $0 + "/" + $1 }
    }

    private func canonicalName(_ name: String) throws -> String {
        try MailboxNameCodec.levels(of: name).joined(separator: "/")
    }

    /// Opens a folder, creating it (and, for the nested layout, its parent
    /// directories) when `create` is true.
    public func folder(named name: String, create: Bool = false) throws -> MaildirFolder {
        let canonical = try canonicalName(name)
        let components = try codec.relativeComponents(for: canonical)
        var parent = root
        var createdAny = false
        for component in components {
            if create {
                let (next, created) = try parent.makeSubdirectory(component)
                if created { try parent.sync(); createdAny = true }
                parent = next
            } else {
                do { parent = try parent.openSubdirectory(component) } catch MaildirError.systemCall(_, _, ENOENT) {
                    throw MaildirError.folderNotFound(name: canonical, path: try path(forFolder: canonical))
                }
            }
        }
        let directory = parent
        func sub(_ n: String) throws -> DirectoryHandle {
            if create {
                let (handle, created) = try directory.makeSubdirectory(n)
                if created { createdAny = true }
                return handle
            }
            do { return try directory.openSubdirectory(n) } catch MaildirError.systemCall(_, _, ENOENT) {
                throw MaildirError.folderNotFound(name: canonical, path: directory.path)
            }
        }
        let tmp = try sub("tmp"), new = try sub("new"), cur = try sub("cur")
        if create && layout == .maildirPlusPlus && !components.isEmpty && !directory.exists("maildirfolder") {
            let fd = openat(directory.fd, "maildirfolder", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd < 0 { throw MaildirError.systemCall(operation: "create marker", path: directory.child("maildirfolder"), errno: errno) }
            _ = close(fd)
            createdAny = true
        }
        if createdAny { try directory.sync() }
        return MaildirFolder(name: canonical, directory: directory, tmp: tmp, new: new, cur: cur, issues: issues,
                             slowGroupSync: slowGroupSync)
    }

    /// Creates a folder that must not exist yet.
    @discardableResult
    public func createFolder(named name: String) throws -> MaildirFolder {
        let canonical = try canonicalName(name)
        if (try? folder(named: canonical)) != nil {
            throw MaildirError.folderExists(name: canonical, path: try path(forFolder: canonical))
        }
        return try folder(named: canonical, create: true)
    }

    /// Selectable folders (those with a `cur/` directory), sorted by name,
    /// INBOX first. Entries that are symlinks, undecodable or not
    /// directories are logged once and skipped.
    public func listFolders() throws -> [FolderListing] {
        var result: [FolderListing] = []
        switch layout {
        case .maildirPlusPlus:
            if root.lstat("cur")?.isDirectory == true { result.append(FolderListing(name: "INBOX", path: rootPath)) }
            let (entries, undecodable) = try root.entries()
            if undecodable > 0 { issues.report(ScanIssue(path: rootPath, reason: "\(undecodable) entries with names that are not UTF-8")) }
            for (entry, type) in entries where entry.hasPrefix(".") {
                guard let st = directoryEntryStat(root, entry, type) else { continue }
                guard st.isDirectory else { continue }
                guard let name = codec.mailboxName(maildirPlusPlusDirectory: entry) else {
                    issues.report(ScanIssue(path: root.child(entry), reason: "directory name is not a Maildir++ folder name this store can decode"))
                    continue
                }
                guard let sub = try? root.openSubdirectory(entry), sub.lstat("cur")?.isDirectory == true else { continue }
                result.append(FolderListing(name: name, path: sub.path))
            }
        case .nested:
            if root.lstat("cur")?.isDirectory == true { result.append(FolderListing(name: "INBOX", path: rootPath)) }
            try walkNested(root, levels: [], depth: 0, into: &result)
        }
        return result.sorted { a, b in
            if a.name == "INBOX" { return b.name != "INBOX" }
            if b.name == "INBOX" { return false }
            return a.name < b.name
        }
    }

    /// `d_type` when the file system provides it, `lstat` otherwise; symlinks
    /// are reported and yield `nil`.
    private func directoryEntryStat(_ dir: DirectoryHandle, _ name: String, _ type: UInt8) -> stat? {
        if type == UInt8(DT_LNK) {
            issues.report(ScanIssue(path: dir.child(name), reason: "symbolic link inside the Maildir tree"))
            return nil
        }
        guard let st = dir.lstat(name) else { return nil }
        if st.isSymlink {
            issues.report(ScanIssue(path: dir.child(name), reason: "symbolic link inside the Maildir tree"))
            return nil
        }
        return st
    }

    private static let maximumDepth = 64

    private func walkNested(_ dir: DirectoryHandle, levels: [String], depth: Int, into result: inout [FolderListing]) throws {
        guard depth < Self.maximumDepth else {
            issues.report(ScanIssue(path: dir.path, reason: "folder hierarchy deeper than \(Self.maximumDepth) levels"))
            return
        }
        let (entries, undecodable) = try dir.entries()
        if undecodable > 0 { issues.report(ScanIssue(path: dir.path, reason: "\(undecodable) entries with names that are not UTF-8")) }
        for (entry, type) in entries {
            // The encoder never produces these, so they are the Maildir
            // directories of the folder (or INBOX at the root) itself.
            if entry.hasPrefix(".") || ["cur", "new", "tmp"].contains(entry) { continue }
            if type != UInt8(DT_DIR) {
                guard type == UInt8(DT_UNKNOWN) || type == UInt8(DT_LNK), let st = directoryEntryStat(dir, entry, type), st.isDirectory else { continue }
            }
            let level: String
            if levels.isEmpty && entry == "INBOX" {
                level = "INBOX"
            } else if let decoded = codec.decodeLevel(entry), !(levels.isEmpty && MailboxNameCodec.isInbox(decoded)) {
                level = decoded
            } else {
                issues.report(ScanIssue(path: dir.child(entry), reason: "directory name is not a folder name this store can decode"))
                continue
            }
            guard let sub = try? dir.openSubdirectory(entry) else { continue }
            let path = levels + [level]
            // `<root>/INBOX` only holds INBOX's children; INBOX is the root.
            if path != ["INBOX"], sub.lstat("cur")?.isDirectory == true {
                result.append(FolderListing(name: path.joined(separator: "/"), path: sub.path))
            }
            try walkNested(sub, levels: path, depth: depth + 1, into: &result)
        }
    }

    /// Deletes an empty folder. Refuses when `cur/`, `new/` or `tmp/` holds
    /// anything (including foreign files, which are never deleted) or when
    /// the folder directory holds files other than Maildir/Dovecot metadata.
    /// With the nested layout, a folder that has child folders loses only its
    /// Maildir directories and stays as a plain parent directory.
    public func deleteFolder(named name: String) throws {
        let canonical = try canonicalName(name)
        if canonical == "INBOX" { throw MaildirError.inboxOperationNotSupported(operation: "deleted") }
        let folder = try self.folder(named: canonical)
        let dir = folder.directory
        for sub in [folder.cur, folder.new, folder.tmp] {
            let (entries, undecodable) = try sub.entries()
            if !entries.isEmpty || undecodable > 0 {
                throw MaildirError.folderNotEmpty(name: canonical, path: dir.path, reason: "\(entries.count + undecodable) entries in \(sub.path)")
            }
        }
        var metadata: [String] = []
        var hasChildren = false
        let (entries, undecodable) = try dir.entries()
        if undecodable > 0 { throw MaildirError.folderNotEmpty(name: canonical, path: dir.path, reason: "entries with non-UTF-8 names") }
        for (entry, _) in entries where !["cur", "new", "tmp"].contains(entry) {
            guard let st = dir.lstat(entry) else { continue }
            if st.isRegularFile && (entry == "maildirfolder" || entry.hasPrefix("dovecot")) {
                metadata.append(entry)
            } else if layout == .nested && st.isDirectory && !entry.hasPrefix(".") {
                hasChildren = true
            } else {
                throw MaildirError.folderNotEmpty(name: canonical, path: dir.path, reason: "foreign entry \(entry)")
            }
        }
        for entry in metadata where unlinkat(dir.fd, entry, 0) != 0 && errno != ENOENT {
            throw MaildirError.systemCall(operation: "unlink", path: dir.child(entry), errno: errno)
        }
        for sub in ["tmp", "new", "cur"] where unlinkat(dir.fd, sub, AT_REMOVEDIR) != 0 {
            throw MaildirError.systemCall(operation: "rmdir", path: dir.child(sub), errno: errno)
        }
        let components = try codec.relativeComponents(for: canonical)
        let parent = try openParent(of: components, create: false)
        if !hasChildren, unlinkat(parent.fd, components.last!, AT_REMOVEDIR) != 0 {
            throw MaildirError.systemCall(operation: "rmdir", path: dir.path, errno: errno)
        }
        try dir.sync()
        try parent.sync()
    }

    private func openParent(of components: [String], create: Bool) throws -> DirectoryHandle {
        var parent = root
        for component in components.dropLast() {
            parent = create ? try parent.makeSubdirectory(component).0 : try parent.openSubdirectory(component)
        }
        return parent
    }

    /// Renames a folder and, as Dovecot does, its child folders. The
    /// destination must not exist; renames use `RENAME_NOREPLACE`, so a
    /// folder created concurrently at the destination is never overwritten.
    public func renameFolder(from oldName: String, to newName: String) throws {
        let old = try canonicalName(oldName), new = try canonicalName(newName)
        if old == "INBOX" || new == "INBOX" { throw MaildirError.inboxOperationNotSupported(operation: "renamed") }
        if new.hasPrefix(old + "/") {
            throw MaildirError.unsafeMailboxName(name: new, reason: "a folder cannot be moved into its own subtree \(String(reflecting: old))")
        }
        let oldComponents = try codec.relativeComponents(for: old)
        let newComponents = try codec.relativeComponents(for: new)
        switch layout {
        case .nested:
            let srcParent = try openParent(of: oldComponents, create: false)
            let dstParent = try openParent(of: newComponents, create: true)
            guard let st = srcParent.lstat(oldComponents.last!) else {
                throw MaildirError.folderNotFound(name: old, path: srcParent.child(oldComponents.last!))
            }
            if st.isSymlink { throw MaildirError.symlinkInTree(path: srcParent.child(oldComponents.last!)) }
            let code = NoReplaceRename.rename(from: srcParent, oldComponents.last!, to: dstParent, newComponents.last!, isDirectory: true)
            if code == EEXIST || code == ENOTEMPTY { throw MaildirError.folderExists(name: new, path: dstParent.child(newComponents.last!)) }
            if code != 0 { throw MaildirError.systemCall(operation: "rename folder", path: srcParent.child(oldComponents.last!), errno: code) }
            try dstParent.sync()
            try srcParent.sync()
        case .maildirPlusPlus:
            let oldDisk = oldComponents[0], newDisk = newComponents[0]
            // A parent that is only a hierarchy level (no directory of its
            // own) is renamed by renaming its children, as Dovecot does.
            var moves: [(String, String)] = []
            let (entries, _) = try root.entries()
            for (entry, _) in entries where entry == oldDisk || entry.hasPrefix(oldDisk + ".") {
                if let st = root.lstat(entry), st.isSymlink { throw MaildirError.symlinkInTree(path: root.child(entry)) }
                moves.append((entry, newDisk + entry.dropFirst(oldDisk.count)))
            }
            if moves.isEmpty { throw MaildirError.folderNotFound(name: old, path: root.child(oldDisk)) }
            for (_, target) in moves {
                if target.utf8.count > MailboxNameCodec.maximumComponentBytes {
                    throw MaildirError.unsafeMailboxName(name: new, reason: "child directory \(target) would exceed 255 bytes")
                }
                if root.exists(target) { throw MaildirError.folderExists(name: new, path: root.child(target)) }
            }
            for (source, target) in moves {
                let code = NoReplaceRename.rename(from: root, source, to: root, target, isDirectory: true)
                if code == EEXIST || code == ENOTEMPTY { throw MaildirError.folderExists(name: new, path: root.child(target)) }
                if code != 0 { throw MaildirError.systemCall(operation: "rename folder", path: root.child(source), errno: code) }
            }
            try root.sync()
        }
    }
}
