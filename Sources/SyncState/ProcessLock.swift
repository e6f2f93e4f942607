import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The exclusive lock that keeps two Ferrymail processes from syncing the same
/// state at once (they would both copy the same new messages).
///
/// `flock(2)` locks belong to the open file description, not the process, so a
/// second `open` of the same state inside one process conflicts exactly like a
/// second process does (POSIX `fcntl` record locks would silently succeed
/// there), and a failed second open closing its own descriptor does not drop
/// the first one's lock, as it would with POSIX record locks.
/// flock also exists on macOS, where Linux's OFD locks do not, and is
/// released by the kernel if the process dies, so a crash never leaves a
/// stale lock behind. The lock file stays on disk: unlinking it would let a
/// third process lock a fresh inode while a second still holds the old one.
final class ProcessLock: @unchecked Sendable {
    let path: String
    // Guards `fd`; `release` may race with `deinit` of a store shared across tasks.
    private let mutex = NSLock()
    private var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Takes the lock or fails at once: a daemon that waits on another would
    /// look hung, and the user needs to know which pid to stop.
    ///
    /// - Parameter databasePath: named in the error, because users know the
    ///   database, not its lock file.
    static func acquire(path: String, databasePath: String) throws(StateError) -> ProcessLock {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 {
            throw .io(path: path, operation: "opening lock file", errno: errno)
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            let holder = readPID(fd: fd)
            close(fd)
            if code == EWOULDBLOCK || code == EAGAIN {
                throw .locked(path: databasePath, holderPID: holder)
            }
            throw .io(path: path, operation: "locking", errno: code)
        }
        _ = fchmod(fd, 0o600)
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) != 0 || pid.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) != pid.count {
            let code = errno
            close(fd)
            throw .io(path: path, operation: "writing pid to lock file", errno: code)
        }
        return ProcessLock(path: path, fd: fd)
    }

    /// Idempotent, so both an explicit close and deinit may call it.
    func release() {
        mutex.lock()
        defer { mutex.unlock() }
        guard fd >= 0 else { return }
        // Truncate first so nobody reads our pid as the holder after we exit.
        _ = ftruncate(fd, 0)
        // Unlock explicitly rather than rely on close: a child being spawned
        // at this moment shares the open file description until its exec
        // closes it (O_CLOEXEC), and would keep the lock held meanwhile.
        _ = flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit {
        release()
    }

    private static func readPID(fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self)
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
