import CompressNIO
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Writes a multi-member gzip file through zlib (compress-nio's
/// `ZlibCompressor`), in constant memory.
///
/// A new gzip member is started at a tar entry boundary once the current
/// member holds `memberSize` uncompressed bytes. Concatenated members are
/// plain gzip (`gzip -d`, `tar xzf` and Python read them as one stream), and
/// each member can be inflated on its own, so a restore seeks to the member
/// the manifest names instead of decompressing everything before a message
/// (bgzip uses the same trick). At 1 MiB per member the ratio loss is a
/// fraction of a percent.
final class GzipFileWriter {
    let path: String
    private let fd: Int32
    private let compressor: ZlibCompressor
    private var input: ByteBuffer
    private var output: ByteBuffer
    private let chunkSize: Int
    /// Compressed bytes written to the file so far.
    private(set) var fileOffset: Int64 = 0
    /// File offset where the current member starts.
    private(set) var memberStart: Int64 = 0
    /// Uncompressed bytes fed into the current member.
    private(set) var memberUncompressed: Int64 = 0
    /// All uncompressed bytes.
    private(set) var totalUncompressed: Int64 = 0

    init(fd: Int32, path: String, level: Int32, chunkSize: Int) throws(ArchiveError) {
        self.fd = fd
        self.path = path
        self.chunkSize = chunkSize
        do {
            compressor = try ZlibCompressor(algorithm: .gzip, configuration: ZlibConfiguration(compressionLevel: level))
        } catch {
            throw .compression(archive: path, cause: "cannot start the compressor: \(error)")
        }
        input = ByteBufferAllocator().buffer(capacity: chunkSize)
        output = ByteBufferAllocator().buffer(capacity: chunkSize * 2)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(ArchiveError) {
        var offset = 0
        while offset < bytes.count {
            let count = min(chunkSize, bytes.count - offset)
            input.clear()
            input.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
            try deflate(flush: .no)
            offset += count
        }
        memberUncompressed += Int64(bytes.count)
        totalUncompressed += Int64(bytes.count)
    }

    func write(_ bytes: [UInt8]) throws(ArchiveError) {
        try bytes.withBytes { (raw) throws(ArchiveError) in try write(raw) }
    }

    /// Ends the current member (if it holds anything) and starts the next.
    func startNewMember() throws(ArchiveError) {
        guard memberUncompressed > 0 else { return }
        try endMember()
        do {
            try compressor.reset()
        } catch {
            throw .compression(archive: path, cause: "cannot start a new gzip member: \(error)")
        }
        memberStart = fileOffset
        memberUncompressed = 0
    }

    /// Ends the last member and writes everything out (no fsync).
    func finish() throws(ArchiveError) {
        try endMember()
    }

    private func endMember() throws(ArchiveError) {
        input.clear()
        try deflate(flush: .finish)
        try flushOutput()
    }

    /// Feeds `input` through zlib; `.finish` also drains zlib's state.
    private func deflate(flush: CompressNIOFlush) throws(ArchiveError) {
        while true {
            if output.writableBytes < chunkSize / 2 { try flushOutput() }
            do {
                try compressor.deflate(from: &input, to: &output, flush: flush)
                // `.no` returns once input is consumed or output is full.
                if flush == .no, input.readableBytes > 0 { continue }
                return
            } catch let error as CompressNIOError where error == .bufferOverflow {
                try flushOutput()
            } catch {
                throw .compression(archive: path, cause: "\(error)")
            }
        }
    }

    private func flushOutput() throws(ArchiveError) {
        while output.readableBytes > 0 {
            let written = output.withUnsafeReadableBytes { raw in Glibc.write(fd, raw.baseAddress, raw.count) }
            if written < 0 {
                if errno == EINTR { continue }
                throw .io(archive: path, operation: "writing", errno: errno)
            }
            output.moveReaderIndex(forwardBy: written)
            fileOffset += Int64(written)
        }
        output.clear()
    }
}

/// Reads a (multi-member) gzip file as one stream of decompressed bytes,
/// and can restart at any member boundary.
///
/// compress-nio's `ZlibDecompressor.inflate` does not report zlib's
/// `Z_STREAM_END` directly; a member's end is recognised by its effect: the
/// call returns normally with input left over, or — when the member ended
/// exactly at the end of the input read so far — the next call makes no
/// progress at all on fresh input (an ended stream consumes nothing, a live
/// one always consumes or fails). The gzip CRC-32 and length of every member
/// are checked by zlib; a mismatch is `corruptData`.
final class GzipFileReader {
    let path: String
    private let fd: Int32
    private var decompressor: ZlibDecompressor
    private var input: ByteBuffer
    /// Decompressed bytes not yet consumed.
    private(set) var output: ByteBuffer
    private let chunkSize: Int
    /// File offset of the next byte to read into `input`.
    private var filePosition: Int64 = 0
    private var endOfFile = false
    private var memberEnded = false
    /// The last inflate consumed all input without error: the member may or
    /// may not have ended exactly there.
    private var maybeEnded = false
    /// File offset of the member that produced `output`.
    private(set) var memberStart: Int64 = 0
    /// Uncompressed bytes produced by that member, including `output`.
    private var memberProduced: Int64 = 0
    private(set) var fileSize: Int64

    init(path: String, chunkSize: Int = 64 * 1024) throws(ArchiveError) {
        self.path = path
        self.chunkSize = chunkSize
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(archive: path, operation: "opening", errno: errno) }
        self.fd = fd
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw .io(archive: path, operation: "reading the size of", errno: code)
        }
        fileSize = Int64(info.st_size)
        do {
            decompressor = try ZlibDecompressor(algorithm: .gzip)
        } catch {
            close(fd)
            throw .compression(archive: path, cause: "cannot start the decompressor: \(error)")
        }
        input = ByteBufferAllocator().buffer(capacity: chunkSize)
        output = ByteBufferAllocator().buffer(capacity: chunkSize)
    }

    deinit {
        close(fd)
    }

    /// The position just after the consumed bytes: member and offset within
    /// its uncompressed data (the manifest's `member` / `memberOffset`).
    var position: (member: Int64, offset: Int64) {
        (memberStart, memberProduced - Int64(output.readableBytes))
    }

    /// Restarts decompression at a member boundary.
    func seek(member: Int64) throws(ArchiveError) {
        guard member >= 0, member < fileSize else {
            throw .damaged(archive: path, entry: nil, cause: "gzip member offset \(member) lies outside the file (\(fileSize) bytes)")
        }
        do {
            try decompressor.reset()
        } catch {
            throw .compression(archive: path, cause: "cannot restart the decompressor: \(error)")
        }
        input.clear()
        output.clear()
        filePosition = member
        endOfFile = false
        memberEnded = false
        maybeEnded = false
        memberStart = member
        memberProduced = 0
    }

    /// Makes decompressed bytes available in `output`. Returns false at the
    /// clean end of the file (every member complete); throws `.truncated`
    /// when the file ends inside a member, `.damaged` for corrupt data.
    /// `entry` names the tar entry being read, for the error.
    func fill(entry: String?) throws(ArchiveError) -> Bool {
        if output.readableBytes > 0 { return true }
        output.clear()
        while true {
            if input.readableBytes == 0, !endOfFile { try readInput() }
            if memberEnded {
                if input.readableBytes == 0, endOfFile { return false }
                // The next member starts here.
                do { try decompressor.reset() } catch {
                    throw .compression(archive: path, cause: "cannot restart the decompressor: \(error)")
                }
                memberEnded = false
                maybeEnded = false
                memberStart = filePosition - Int64(input.readableBytes)
                memberProduced = 0
            }
            if input.readableBytes == 0, endOfFile {
                if maybeEnded, try probeEnded() {
                    memberEnded = true
                    return false
                }
                throw .truncated(archive: path, entry: entry)
            }
            let consumedBefore = input.readableBytes
            let producedBefore = output.writerIndex
            var threw = false
            do {
                try decompressor.inflate(from: &input, to: &output)
            } catch let error as CompressNIOError where error == .bufferOverflow || error == .inputBufferOverflow {
                threw = true
            } catch let error as CompressNIOError where error == .corruptData {
                throw .damaged(archive: path, entry: entry,
                               cause: "compressed data is corrupt (deflate error or gzip CRC mismatch) in the gzip member at byte \(memberStart)")
            } catch {
                throw .compression(archive: path, cause: "\(error)")
            }
            let consumed = consumedBefore - input.readableBytes
            let produced = output.writerIndex - producedBefore
            memberProduced += Int64(produced)
            if !threw {
                if input.readableBytes > 0 || (consumed == 0 && produced == 0 && consumedBefore > 0) {
                    memberEnded = true
                    maybeEnded = false
                } else {
                    maybeEnded = true
                }
            } else {
                maybeEnded = false
            }
            if produced > 0 { return true }
        }
    }

    /// Hands the next `count` decompressed bytes (at most what `fill` made
    /// available) to `body` and consumes them.
    func consumeOutput(_ count: Int, _ body: (UnsafeRawBufferPointer) throws(ArchiveError) -> Void) throws(ArchiveError) {
        precondition(count <= output.readableBytes)
        do {
            try output.withUnsafeReadableBytes { raw in try body(UnsafeRawBufferPointer(rebasing: raw[0..<count])) }
        } catch let error as ArchiveError {
            throw error
        } catch {
            throw .compression(archive: path, cause: "\(error)")
        }
        output.moveReaderIndex(forwardBy: count)
    }

    func consumeOutputIndex(_ count: Int) {
        output.moveReaderIndex(forwardBy: count)
    }

    /// At the end of the file: did the last member end exactly there? An
    /// ended zlib stream consumes nothing more; a live one takes the byte.
    private func probeEnded() throws(ArchiveError) -> Bool {
        var probe = ByteBufferAllocator().buffer(capacity: 1)
        probe.writeInteger(UInt8(0))
        var sink = ByteBufferAllocator().buffer(capacity: 64)
        do {
            try decompressor.inflate(from: &probe, to: &sink)
        } catch {
            return false
        }
        return probe.readableBytes == 1 && sink.readableBytes == 0
    }

    private func readInput() throws(ArchiveError) {
        input.clear()
        let capacity = chunkSize
        let position = filePosition
        var failure: Int32 = 0
        let readCount = input.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { raw in
            while true {
                let count = pread(fd, raw.baseAddress, min(raw.count, capacity), off_t(position))
                if count >= 0 { return count }
                if errno == EINTR { continue }
                failure = errno
                return 0
            }
        }
        if failure != 0 { throw .io(archive: path, operation: "reading", errno: failure) }
        if readCount == 0 { endOfFile = true }
        filePosition += Int64(readCount)
    }
}
