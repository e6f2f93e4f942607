#if canImport(Glibc)
import Glibc
#endif

/// The few POSIX calls the archive needs, with errors naming the archive.
enum FileIO {
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, archive: String, operation: String) throws(ArchiveError) {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw .io(archive: archive, operation: operation, errno: errno)
            }
            offset += written
        }
    }

    /// Reads up to `buffer.count` bytes at `offset`; 0 at end of file.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, archive: String, operation: String) throws(ArchiveError) -> Int {
        while true {
            let count = pread(fd, buffer.baseAddress, buffer.count, off_t(offset))
            if count >= 0 { return count }
            if errno == EINTR { continue }
            throw .io(archive: archive, operation: operation, errno: errno)
        }
    }

    /// Reads bytes 0..<length of `fd` in chunks of `chunkSize`, handing each
    /// to `body`: how spooled messages and the manifest scratch file are
    /// copied into the archive without holding them in memory.
    static func forEachChunk(_ fd: Int32, length: Int64, chunkSize: Int, archive: String, operation: String,
                             _ body: (UnsafeRawBufferPointer) throws(ArchiveError) -> Void) throws(ArchiveError) {
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var offset: Int64 = 0
        while offset < length {
            let count = try buffer.withMutableBytes { (raw) throws(ArchiveError) in
                try read(fd, into: raw, at: offset, archive: archive, operation: operation)
            }
            guard count > 0 else { throw .io(archive: archive, operation: operation, errno: EIO) }
            try buffer.withBytes { (raw) throws(ArchiveError) in try body(UnsafeRawBufferPointer(rebasing: raw[0..<count])) }
            offset += Int64(count)
        }
    }

    /// An anonymous scratch file next to `path` (same filesystem, same
    /// privacy as the archive): created 0600 with `mkstemp` and unlinked at
    /// once, so nothing is left behind even if the process is killed.
    static func anonymousFile(nextTo path: String, archive: String) throws(ArchiveError) -> Int32 {
        var template = Array((path + ".spool-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw .io(archive: archive, operation: "creating a scratch file next to", errno: errno) }
        unlink(template)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    /// fsync of the directory holding `path`, so a rename into it survives
    /// a power cut.
    static func syncDirectory(of path: String, archive: String) throws(ArchiveError) {
        let directory = parent(of: path)
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(archive: archive, operation: "opening the directory \(directory) of", errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .io(archive: archive, operation: "syncing the directory \(directory) of", errno: errno) }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    static func randomHex(bytes: Int) -> String {
        (0..<bytes).map { _ in
            let value = UInt8.random(in: 0...255)
            let digits = Array("0123456789abcdef")
            return String([digits[Int(value >> 4)], digits[Int(value & 0x0f)]])
        }.joined()
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` keeping the archive's typed errors (the standard
    /// library's version rethrows untyped).
    func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws(ArchiveError) -> Result) throws(ArchiveError) -> Result {
        var outcome: Swift.Result<Result, ArchiveError>?
        withUnsafeBytes { raw in outcome = Swift.Result { () throws(ArchiveError) -> Result in try body(raw) } }
        return try outcome!.get()
    }

    mutating func withMutableBytes<Result>(_ body: (UnsafeMutableRawBufferPointer) throws(ArchiveError) -> Result) throws(ArchiveError) -> Result {
        var outcome: Swift.Result<Result, ArchiveError>?
        withUnsafeMutableBytes { raw in outcome = Swift.Result { () throws(ArchiveError) -> Result in try body(raw) } }
        return try outcome!.get()
    }
}
