import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The steps of a delivery, in order. Tests stop a delivery after any of
/// them to check that a crash there never leaves a partial message in
/// `cur/` or `new/`.
enum DeliveryStep: Int, CaseIterable, Sendable {
    case opened, partiallyWritten, written, keywordsResolved, timesSet, fileSynced, closed, renamed, directorySynced
}

/// Thrown only when a test asked a delivery to "crash" after a step.
struct SimulatedCrash: Error, Equatable {
    let after: DeliveryStep
}

/// A message being written into `tmp/`.
///
/// Writes go straight to the file as they arrive, so a large message never
/// sits in memory. `commit` makes the file durable before it becomes
/// visible, which is what makes the Maildir protocol crash-safe: readers
/// only look at `cur/` and `new/`, and a file appears there only by an atomic
/// rename of a complete, fsynced file. If the object is released without
/// `commit`, the temporary file is removed.
public final class MessageDelivery: Sendable {
    public let folder: MaildirFolder
    /// The unique part of the file name; also the temporary file's name.
    public let uniqueName: String
    private struct State {
        var fd: Int32
        var size: Int
        var finished: Bool
    }
    private let state: Mutex<State>
    private let fault: DeliveryStep?

    init(folder: MaildirFolder, fault: DeliveryStep?) throws {
        self.folder = folder
        self.fault = fault
        var unique = UniqueName.next()
        var fd: Int32 = -1
        // The name is unique by construction; EEXIST can only mean a clock
        // step backwards together with PID reuse, and a fresh name resolves it.
        for _ in 0..<10 {
            fd = openat(folder.tmp.fd, unique, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 || errno != EEXIST { break }
            unique = UniqueName.next()
        }
        if fd < 0 { throw MaildirError.systemCall(operation: "create", path: folder.tmp.child(unique), errno: errno) }
        self.uniqueName = unique
        self.state = Mutex(State(fd: fd, size: 0, finished: false))
        try checkFault(.opened)
    }

    deinit {
        abort()
    }

    private var temporaryPath: String { folder.tmp.child(uniqueName) }

    /// Simulates a crash: the descriptor is closed (as the kernel would) and
    /// nothing is cleaned up.
    private func checkFault(_ step: DeliveryStep) throws {
        guard fault == step else { return }
        state.withLock { state in
            if state.fd >= 0 { _ = close(state.fd) }
            state.fd = -1
            state.finished = true
        }
        throw SimulatedCrash(after: step)
    }

    /// Bytes written so far.
    public var size: Int { state.withLock { $0.size } }

    /// Appends a chunk of the message.
    public func write(_ chunk: some ContiguousBytes) throws {
        try chunk.withUnsafeBytes { buffer in
            let fd = try state.withLock { state -> Int32 in
                guard !state.finished else { throw MaildirError.deliveryFinished(folder: folder.name) }
                return state.fd
            }
            if fault == .partiallyWritten, buffer.count > 1 {
                try writeAll(fd, UnsafeRawBufferPointer(rebasing: buffer[..<(buffer.count / 2)]), path: temporaryPath)
                try checkFault(.partiallyWritten)
            }
            do {
                try writeAll(fd, buffer, path: temporaryPath)
            } catch {
                abort()
                throw error
            }
            state.withLock { $0.size += buffer.count }
        }
    }

    /// Makes the message visible and durable.
    ///
    /// Order: resolve keyword letters (possibly extending
    /// `dovecot-keywords`, so the table is on disk before any file uses a new
    /// letter), set atime/mtime to `internalDate`, `fsync` the file, close
    /// it, rename it with `RENAME_NOREPLACE` to
    /// `<unique>,S=<size>:2,<flags>` in `cur/` and `fsync` `cur/`. The times are
    /// set before the file fsync so that they are durable with the data.
    ///
    /// - Parameters:
    ///   - toNew: deliver into `new/` as an unseen message, with no info
    ///     part, as an MDA does. Honoured only when `flags` is empty, because
    ///     the spec gives `new/` files no info; flagged mail goes to `cur/`
    ///     (Dovecot's rule too).
    ///   - syncDirectory: `false` to batch: the file itself is still fsynced
    ///     before its rename, and `folder.syncDirectories()` must be called
    ///     before the deliveries are reported as stored.
    @discardableResult
    public func commit(
        flags: MessageFlags = .none,
        internalDate: Date? = nil,
        toNew: Bool = false,
        syncDirectory: Bool = true
    ) throws -> MaildirEntry {
        let (fd, size) = try writtenFile()
        try checkFault(.written)
        do {
            let entry = try completeFile(fd, size: size, flags: flags, internalDate: internalDate, toNew: toNew)
            if fsync(fd) != 0 { throw MaildirError.systemCall(operation: "fsync", path: temporaryPath, errno: errno) }
            try checkFault(.fileSynced)
            state.withLock { $0.fd = -1 }
            if close(fd) != 0 && errno != EINTR { throw MaildirError.systemCall(operation: "close", path: temporaryPath, errno: errno) }
            try checkFault(.closed)
            try folder.moveIntoPlace(uniqueName, as: entry)
            state.withLock { $0.finished = true }
            try checkFault(.renamed)
            if syncDirectory { try folder.handle(entry.subdirectory).sync() }
            try checkFault(.directorySynced)
            return entry
        } catch let error as MaildirError {
            abort()
            throw error
        }
    }

    /// Completes the file in `tmp/` without making it durable or visible:
    /// the folder publishes it with everything else staged, at the next
    /// ``MaildirFolder/publishStaged()``, which makes them durable together
    /// (one `syncfs` instead of one journal commit per message) before a
    /// single one of them appears in `cur/` or `new/`. The returned entry is
    /// what the file will be once published; until then it is not there.
    public func stage(flags: MessageFlags = .none, internalDate: Date? = nil, toNew: Bool = false) throws -> MaildirEntry {
        let (fd, size) = try writtenFile()
        do {
            let entry = try completeFile(fd, size: size, flags: flags, internalDate: internalDate, toNew: toNew)
            // From here the folder owns the file: it is published or, if the
            // folder goes away first, removed.
            let taken = state.withLock { state -> Bool in
                guard !state.finished else { return false }
                state.finished = true
                state.fd = -1
                return true
            }
            guard taken else { throw MaildirError.deliveryFinished(folder: folder.name) }
            if close(fd) != 0 && errno != EINTR {
                _ = unlinkat(folder.tmp.fd, uniqueName, 0)
                throw MaildirError.systemCall(operation: "close", path: temporaryPath, errno: errno)
            }
            folder.stage(StagedDelivery(temporaryName: uniqueName, entry: entry))
            return entry
        } catch let error as MaildirError {
            abort()
            throw error
        }
    }

    /// The written file's descriptor and size, while the delivery is open.
    private func writtenFile() throws -> (fd: Int32, size: Int) {
        try state.withLock { state -> (Int32, Int) in
            guard !state.finished else { throw MaildirError.deliveryFinished(folder: folder.name) }
            return (state.fd, state.size)
        }
    }

    /// What `commit` and `stage` both do before the file is made durable:
    /// resolve keyword letters (possibly extending `dovecot-keywords`, so
    /// the table is on disk before any file uses a new letter), set
    /// atime/mtime to `internalDate`, and name the file. Returns the entry
    /// the file will be once moved into place.
    private func completeFile(_ fd: Int32, size: Int, flags: MessageFlags, internalDate: Date?, toNew: Bool) throws -> MaildirEntry {
        let mask = try folder.keywordMask(for: flags.keywords)
        try checkFault(.keywordsResolved)
        let time = makeTimespec(internalDate ?? Date())
        let times = [time, time]
        if futimens(fd, times) != 0 { throw MaildirError.systemCall(operation: "futimens", path: temporaryPath, errno: errno) }
        try checkFault(.timesSet)
        let base = "\(uniqueName),S=\(size)"
        let intoNew = toNew && flags == .none
        let finalName = intoNew ? base : MaildirFileName.fileName(baseName: base, system: flags.system, keywordMask: mask, preserved: [])
        return MaildirEntry(fileName: finalName, subdirectory: intoNew ? .new : .cur, size: size, flags: flags, preservedInfo: [])
    }

    /// ``commit(flags:internalDate:toNew:syncDirectory:)`` with system flags
    /// and keywords given separately.
    @discardableResult
    public func commit(
        flags: SystemFlags, keywords: [String], internalDate: Date? = nil,
        toNew: Bool = false, syncDirectory: Bool = true
    ) throws -> MaildirEntry {
        try commit(flags: MessageFlags(system: flags, keywords: keywords), internalDate: internalDate,
                   toNew: toNew, syncDirectory: syncDirectory)
    }

    /// Discards the delivery and its temporary file. Safe to call twice.
    public func abort() {
        let fd = state.withLock { state -> Int32? in
            guard !state.finished else { return nil }
            state.finished = true
            defer { state.fd = -1 }
            return state.fd
        }
        guard let fd else { return }
        if fd >= 0 { _ = close(fd) }
        _ = unlinkat(folder.tmp.fd, uniqueName, 0)
    }
}

/// A complete message in `tmp/` waiting for its folder's next
/// ``MaildirFolder/publishStaged()``.
struct StagedDelivery: Sendable {
    var temporaryName: String
    /// The file it becomes once published.
    var entry: MaildirEntry
}
