import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What changed in a Maildir tree during one debounce window.
public struct MaildirChangeBatch: Sendable, Hashable {
    /// Folder directories, relative to the root ("" is the root itself, the
    /// INBOX), whose `cur/` or `new/` gained, lost or renamed a message file.
    public var folders: Set<String> = []
    /// A folder directory appeared, disappeared or was renamed.
    public var foldersChanged = false
    /// The kernel's event queue overflowed: changes were lost, so everything
    /// must be looked at.
    public var overflowed = false
    /// Raw inotify events merged into this batch.
    public var eventCount = 0

    public init() {}

    public var isEmpty: Bool { eventCount == 0 }
}

/// Watches a Maildir tree with inotify and delivers debounced batches.
///
/// Every directory of the tree except the `tmp/` directories is watched:
/// folder directories for folders appearing and disappearing, `cur/` and
/// `new/` for message files. `tmp/` is skipped because a delivery there is
/// not a message yet; its final rename into `new/`/`cur/` is what counts
/// (`IN_MOVED_TO`). New directories are watched as they appear, so a folder
/// created by a mail reader is followed without a restart.
///
/// Events are read on a dedicated thread blocked in `poll(2)` on the inotify
/// descriptor and a stop pipe, rather than on the cooperative pool: a blocking
/// read there would starve other tasks, and the poll timeout doubles as the
/// debounce timer (quiet period after the last event, maximum delay after the
/// first), so there is no extra timer task.
///
/// Changes the daemon itself makes during a sync are reported like any other;
/// the resulting sync finds every folder's scan token unchanged and costs a
/// few `stat`s (see `AccountSupervisor`).
public final class MaildirWatcher: Sendable {
    public let root: String
    private let stopWriteFD: Int32
    private let done = ThreadCompletion()

    /// Starts watching. Throws when inotify is unavailable or the root cannot
    /// be watched; folders that vanish while being added are skipped.
    public init(root: String, account: String? = nil, debounce: DebouncePolicy = .local,
                logger: Logger = Logger(label: "ferrymail.watch"),
                onBatch: @escaping @Sendable (MaildirChangeBatch) -> Void) throws(ServiceError) {
        let root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        self.root = root
        let inotifyFD = inotify_init1(Int32(O_CLOEXEC | O_NONBLOCK))
        guard inotifyFD >= 0 else { throw .watch(account: account, path: root, errno: errno, operation: "start inotify for") }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            let code = errno
            close(inotifyFD)
            throw .watch(account: account, path: root, errno: code, operation: "create a stop pipe for")
        }
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        stopWriteFD = pipeFDs[1]
        let table = WatchTable(inotifyFD: inotifyFD, root: root, account: account, logger: logger)
        do {
            try table.addTree(root, isRoot: true)
        } catch {
            close(inotifyFD)
            close(pipeFDs[0])
            close(pipeFDs[1])
            throw error
        }
        let loop = WatchLoop(table: table, stopReadFD: pipeFDs[0], debounce: debounce, onBatch: onBatch)
        let thread = Thread { [done] in
            loop.run()
            done.finish()
        }
        thread.name = "ferrymail-inotify"
        thread.start()
    }

    /// Stops the thread and waits until it has closed its descriptors. A
    /// batch still inside its debounce window is dropped: the caller is going
    /// away, and the next start syncs from the state anyway.
    public func stop() async {
        var byte: UInt8 = 1
        _ = write(stopWriteFD, &byte, 1)
        await done.wait()
    }

    deinit {
        close(stopWriteFD)
    }
}

/// Lets `stop()` await the end of the watcher thread.
final class ThreadCompletion: Sendable {
    private let state = Mutex<(finished: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func finish() {
        let waiters = state.withLock { state in
            state.finished = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = state.withLock { state in
                if !state.finished { state.waiters.append(continuation) }
                return state.finished
            }
            if finished { continuation.resume() }
        }
    }
}

// inotify(7) masks, spelled out: Glibc imports some as Int32 and some as enum
// members, and these values are kernel ABI.
enum InotifyMask {
    static let attrib: UInt32 = 0x0000_0004
    static let movedFrom: UInt32 = 0x0000_0040
    static let movedTo: UInt32 = 0x0000_0080
    static let create: UInt32 = 0x0000_0100
    static let delete: UInt32 = 0x0000_0200
    static let deleteSelf: UInt32 = 0x0000_0400
    static let moveSelf: UInt32 = 0x0000_0800
    static let queueOverflow: UInt32 = 0x0000_4000
    static let ignored: UInt32 = 0x0000_8000
    static let onlyDirectory: UInt32 = 0x0100_0000
    static let dontFollow: UInt32 = 0x0200_0000
    static let excludeUnlinked: UInt32 = 0x0400_0000
    static let isDirectory: UInt32 = 0x4000_0000

    static let watched = attrib | movedFrom | movedTo | create | delete | deleteSelf | moveSelf
        | onlyDirectory | dontFollow | excludeUnlinked
}

/// The watch descriptors and their directories. Used by `init` before the
/// thread starts and by the thread alone afterwards, never concurrently:
/// hence `@unchecked Sendable`.
final class WatchTable: @unchecked Sendable {
    let inotifyFD: Int32
    let root: String
    let account: String?
    let logger: Logger
    private(set) var paths: [Int32: String] = [:]

    init(inotifyFD: Int32, root: String, account: String?, logger: Logger) {
        self.inotifyFD = inotifyFD
        self.root = root
        self.account = account
        self.logger = logger
    }

    /// Watches `path` and every directory below it except `tmp/` of a Maildir
    /// folder. Only a failure on the root is an error.
    func addTree(_ path: String, isRoot: Bool = false) throws(ServiceError) {
        let wd = inotify_add_watch(inotifyFD, path, InotifyMask.watched)
        guard wd >= 0 else {
            let code = errno
            if isRoot || code == ENOSPC {
                let error = ServiceError.watch(account: account, path: path, errno: code, operation: "watch")
                if isRoot { throw error }
                logger.warning("\(error.description)")
            }
            return
        }
        paths[wd] = path
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: path) else { return }
        let isFolder = entries.contains("cur")
        for name in entries.sorted() where !(isFolder && name == "tmp") {
            let child = path + "/" + name
            var info = stat()
            guard lstat(child, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { continue }
            try addTree(child)
        }
    }

    func removed(_ wd: Int32) {
        paths[wd] = nil
    }

    /// The folder (relative to the root) whose `cur/` or `new/` is `directory`, if it is one.
    func folder(ofMessageDirectory directory: String) -> String? {
        let last = directory.split(separator: "/").last
        guard last == "cur" || last == "new" else { return nil }
        let folder = String(directory.dropLast(4))
        if folder == root || folder.count < root.count { return "" }
        return String(folder.dropFirst(root.count + 1))
    }
}

/// The body of the watcher thread.
struct WatchLoop: @unchecked Sendable {
    let table: WatchTable
    let stopReadFD: Int32
    let debounce: DebouncePolicy
    let onBatch: @Sendable (MaildirChangeBatch) -> Void

    func run() {
        defer {
            close(table.inotifyFD)
            close(stopReadFD)
        }
        var debouncer = Debouncer(debounce)
        var batch = MaildirChangeBatch()
        let bufferSize = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer { buffer.deallocate() }
        let clock = ContinuousClock()
        while true {
            var timeout: Int32 = -1
            if let deadline = debouncer.deadline {
                let remaining = clock.now.duration(to: deadline)
                let millis = ReconnectBackoff.seconds(remaining) * 1000
                timeout = millis <= 0 ? 0 : Int32(min(millis.rounded(.up), 60_000))
            }
            var fds = [pollfd(fd: table.inotifyFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stopReadFD, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                table.logger.error("\(ServiceError.watch(account: table.account, path: table.root, errno: errno, operation: "poll inotify for").description)")
                return
            }
            if fds[1].revents != 0 { return }
            if fds[0].revents & Int16(POLLIN) != 0 {
                let events = drain(buffer: buffer, size: bufferSize, into: &batch)
                if events > 0 {
                    let now = clock.now
                    for _ in 0..<events { debouncer.record(at: now) }
                }
            }
            if debouncer.fire(at: clock.now) != nil, !batch.isEmpty {
                onBatch(batch)
                batch = MaildirChangeBatch()
            }
        }
    }

    /// Reads every queued event; returns how many were relevant.
    private func drain(buffer: UnsafeMutableRawPointer, size: Int, into batch: inout MaildirChangeBatch) -> Int {
        var relevant = 0
        while true {
            let count = read(table.inotifyFD, buffer, size)
            if count < 0 {
                if errno == EINTR { continue }
                return relevant // EAGAIN: queue empty
            }
            if count == 0 { return relevant }
            var offset = 0
            let headerSize = 16 // wd, mask, cookie, len
            while offset + headerSize <= count {
                let wd = buffer.loadUnaligned(fromByteOffset: offset, as: Int32.self)
                let mask = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                let nameLength = Int(buffer.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                var name = ""
                if nameLength > 0 {
                    let start = buffer.advanced(by: offset + headerSize).assumingMemoryBound(to: CChar.self)
                    name = String(cString: start)
                }
                offset += headerSize + nameLength
                if handle(wd: wd, mask: mask, name: name, batch: &batch) { relevant += 1 }
            }
        }
    }

    private func handle(wd: Int32, mask: UInt32, name: String, batch: inout MaildirChangeBatch) -> Bool {
        if mask & InotifyMask.queueOverflow != 0 {
            batch.overflowed = true
            batch.eventCount += 1
            return true
        }
        if mask & InotifyMask.ignored != 0 {
            table.removed(wd)
            return false
        }
        guard let directory = table.paths[wd] else { return false }
        if mask & InotifyMask.isDirectory != 0 {
            if mask & (InotifyMask.create | InotifyMask.movedTo) != 0 {
                let isMaildirTmp = name == "tmp" && FileManager.default.fileExists(atPath: directory + "/cur")
                if !isMaildirTmp { try? table.addTree(directory + "/" + name) }
            }
            guard mask & (InotifyMask.create | InotifyMask.movedTo | InotifyMask.movedFrom | InotifyMask.delete) != 0 else { return false }
            batch.foldersChanged = true
            batch.eventCount += 1
            return true
        }
        if mask & (InotifyMask.deleteSelf | InotifyMask.moveSelf) != 0 {
            batch.foldersChanged = true
            batch.eventCount += 1
            return true
        }
        guard let folder = table.folder(ofMessageDirectory: directory) else { return false }
        batch.folders.insert(folder)
        batch.eventCount += 1
        return true
    }
}
