import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An open directory that closes itself.
///
/// All access below the root goes through `*at()` calls relative to one of
/// these, each opened with `O_NOFOLLOW`, so a symlink planted after a folder
/// was opened cannot redirect a write outside the tree.
final class DirectoryHandle: Sendable {
    let fd: Int32
    /// Absolute path, for error messages and logs only; never used to open files.
    let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { _ = Glibc.close(fd) }

    /// Opens `path` itself. The root may be a symlink (an administrator's
    /// choice such as `~/Maildir -> /srv/mail/alice`), so it is followed.
    static func openRoot(_ path: String) throws -> DirectoryHandle {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw MaildirError.systemCall(operation: "open directory", path: path, errno: errno) }
        return DirectoryHandle(fd: fd, path: path)
    }

    func child(_ name: String) -> String { path.hasSuffix("/") ? path + name : path + "/" + name }

    /// Opens the directory `name` inside this one, refusing symlinks.
    func openSubdirectory(_ name: String) throws -> DirectoryHandle {
        let fd = Glibc.openat(self.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            throw classify(code, name: name, operation: "open directory")
        }
        return DirectoryHandle(fd: fd, path: child(name))
    }

    /// Maps the errno of an `O_NOFOLLOW|O_DIRECTORY` open to the precise error:
    /// Linux reports a symlink as `ELOOP` or `ENOTDIR` depending on the call.
    func classify(_ code: Int32, name: String, operation: String) -> MaildirError {
        if code == ELOOP || code == ENOTDIR {
            var st = stat()
            if fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                if (st.st_mode & S_IFMT) == S_IFLNK { return .symlinkInTree(path: child(name)) }
                if (st.st_mode & S_IFMT) != S_IFDIR { return .notADirectory(path: child(name)) }
            }
        }
        return .systemCall(operation: operation, path: child(name), errno: code)
    }

    /// Creates `name` as a directory (mode 0700) if it does not exist, then opens it.
    /// Returns whether it was created.
    func makeSubdirectory(_ name: String) throws -> (DirectoryHandle, created: Bool) {
        var created = true
        if mkdirat(fd, name, 0o700) != 0 {
            let code = errno
            guard code == EEXIST else {
                throw MaildirError.systemCall(operation: "mkdir", path: child(name), errno: code)
            }
            created = false
        }
        return (try openSubdirectory(name), created)
    }

    func exists(_ name: String) -> Bool {
        var st = stat()
        return fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    func lstat(_ name: String) -> stat? {
        var st = stat()
        return fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st : nil
    }

    func fstat() throws -> stat {
        var st = stat()
        if Glibc.fstat(fd, &st) != 0 { throw MaildirError.systemCall(operation: "fstat", path: path, errno: errno) }
        return st
    }

    /// Makes renames and creations in this directory durable.
    func sync() throws {
        if fsync(fd) != 0 { throw MaildirError.systemCall(operation: "fsync directory", path: path, errno: errno) }
    }

    /// Lists entry names with `readdir` only: no `stat` per entry, so listing a
    /// 100,000-message `cur/` costs a handful of `getdents64` calls.
    ///
    /// A fresh open file description is used (not `dup`) so that concurrent
    /// listings of the same directory do not share a read offset.
    func forEachEntry(_ body: (_ name: UnsafePointer<CChar>, _ type: UInt8) -> Void) throws {
        let own = Glibc.openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if own < 0 { throw MaildirError.systemCall(operation: "open directory", path: path, errno: errno) }
        guard let dir = fdopendir(own) else {
            let code = errno
            _ = Glibc.close(own)
            throw MaildirError.systemCall(operation: "fdopendir", path: path, errno: code)
        }
        defer { closedir(dir) }
        while true {
            errno = 0
            guard let ent = readdir(dir) else {
                if errno != 0 { throw MaildirError.systemCall(operation: "readdir", path: path, errno: errno) }
                return
            }
            let type = ent.pointee.d_type
            withUnsafePointer(to: &ent.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: 256) { name in
                    // Skip "." and "..".
                    if name[0] == 0x2E && (name[1] == 0 || (name[1] == 0x2E && name[2] == 0)) { return }
                    body(name, type)
                }
            }
        }
    }

    /// Entry names as Swift strings; names that are not valid UTF-8 are
    /// returned separately because they cannot round-trip through `String`.
    func entries() throws -> (names: [(String, UInt8)], undecodable: Int) {
        var names: [(String, UInt8)] = []
        var bad = 0
        try forEachEntry { name, type in
            if let s = String(validatingCString: name) { names.append((s, type)) } else { bad += 1 }
        }
        return (names, bad)
    }
}

/// `syncfs(2)`, looked up at run time like `renameat2` (the Glibc module map
/// does not import it).
enum FileSystemSync {
    private typealias SyncFS = @convention(c) (Int32) -> Int32
    private static let syncfs: SyncFS? = {
        guard let symbol = dlsym(nil, "syncfs") else { return nil }
        return unsafeBitCast(symbol, to: SyncFS.self)
    }()

    /// Makes the files `names` in `directory` durable: `syncfs` on the file
    /// system holding it, else an `fsync` of each file.
    static func sync(_ directory: DirectoryHandle, names: [String]) throws {
        if let syncfs {
            if syncfs(directory.fd) == 0 { return }
            let code = errno
            if code != ENOSYS { throw MaildirError.systemCall(operation: "syncfs", path: directory.path, errno: code) }
        }
        for name in names {
            let fd = openat(directory.fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            if fd < 0 { throw MaildirError.systemCall(operation: "open", path: directory.child(name), errno: errno) }
            defer { _ = close(fd) }
            if fsync(fd) != 0 { throw MaildirError.systemCall(operation: "fsync", path: directory.child(name), errno: errno) }
        }
    }
}

/// `renameat2(…, RENAME_NOREPLACE)`, looked up at run time because the Glibc
/// module map does not import it. Falls back to `link`+`unlink`, which also
/// refuses to replace, where the file system or kernel lacks the flag.
enum NoReplaceRename {
    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, UInt32) -> Int32
    private static let renameat2: RenameAt2? = {
        guard let symbol = dlsym(nil, "renameat2") else { return nil }
        return unsafeBitCast(symbol, to: RenameAt2.self)
    }()
    private static let RENAME_NOREPLACE: UInt32 = 1

    /// Returns 0 or an errno (`EEXIST` when the destination exists).
    /// Directories cannot be hard-linked, so for them the fallback is a check
    /// followed by a plain rename, which is only racy against a concurrent
    /// creation of the very same destination.
    static func rename(from src: DirectoryHandle, _ srcName: String, to dst: DirectoryHandle, _ dstName: String, isDirectory: Bool = false) -> Int32 {
        if let renameat2 {
            if renameat2(src.fd, srcName, dst.fd, dstName, RENAME_NOREPLACE) == 0 { return 0 }
            let code = errno
            if code != EINVAL && code != ENOSYS { return code }
        }
        if isDirectory {
            if dst.exists(dstName) { return EEXIST }
            return renameat(src.fd, srcName, dst.fd, dstName) == 0 ? 0 : errno
        }
        if linkat(src.fd, srcName, dst.fd, dstName, 0) != 0 { return errno }
        if unlinkat(src.fd, srcName, 0) != 0 { return errno }
        return 0
    }
}

extension stat {
    var isDirectory: Bool { (st_mode & S_IFMT) == S_IFDIR }
    var isRegularFile: Bool { (st_mode & S_IFMT) == S_IFREG }
    var isSymlink: Bool { (st_mode & S_IFMT) == S_IFLNK }
    var modificationDate: Date {
        Date(timeIntervalSince1970: Double(st_mtim.tv_sec) + Double(st_mtim.tv_nsec) / 1e9)
    }
}

func makeTimespec(_ date: Date) -> timespec {
    let t = date.timeIntervalSince1970
    var sec = t.rounded(.down)
    var nsec = ((t - sec) * 1e9).rounded()
    if nsec >= 1e9 { sec += 1; nsec = 0 }
    return Glibc.timespec(tv_sec: Int(sec), tv_nsec: Int(nsec))
}
