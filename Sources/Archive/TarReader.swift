import NIOCore

/// Walks the tar entries of a gzip stream, streaming entry data in chunks.
final class TarReader {
    let gzip: GzipFileReader
    var path: String { gzip.path }
    /// The entry being read, for error messages.
    private(set) var currentEntry: String?
    /// Where the current entry's first header block (pax or ustar) starts.
    private(set) var entryStart: (member: Int64, offset: Int64) = (0, 0)
    private var pendingData: Int64 = 0
    private var pendingPadding = 0

    init(gzip: GzipFileReader) {
        self.gzip = gzip
    }

    convenience init(path: String) throws(ArchiveError) {
        self.init(gzip: try GzipFileReader(path: path))
    }

    /// Restarts at an entry the manifest located.
    func seek(member: Int64, offset: Int64) throws(ArchiveError) {
        try gzip.seek(member: member)
        pendingData = 0
        pendingPadding = 0
        currentEntry = nil
        try skip(offset)
    }

    /// Positions at (member, offset) by reading forward when the reader is
    /// already in that member before the offset, else by seeking: messages
    /// of one folder are mostly consecutive, so a restore reads the archive
    /// about once.
    func position(member: Int64, offset: Int64) throws(ArchiveError) {
        try finishEntry()
        let here = gzip.position
        if here.member == member, here.offset <= offset, offset - here.offset <= 4 * 1024 * 1024 {
            try skip(offset - here.offset)
        } else {
            try seek(member: member, offset: offset)
        }
    }

    /// The next entry's header, pax and GNU long names applied; nil after
    /// the end-of-archive blocks. Skips any unread data of the previous entry.
    func nextEntry() throws(ArchiveError) -> Tar.Entry? {
        try finishEntry()
        var pax: [String: String] = [:]
        var first = true
        while true {
            if first {
                // At a member's end, step into the next member first, so the
                // position reads (next member, 0) as the writer recorded it.
                _ = try gzip.fill(entry: currentEntry)
                entryStart = gzip.position
            }
            first = false
            guard let block = try readBlock(atBoundary: true) else {
                throw .truncated(archive: path, entry: currentEntry)
            }
            let result: Tar.HeaderResult
            do {
                result = try Tar.parseHeader(block, pax: pax)
            } catch {
                throw .damaged(archive: path, entry: currentEntry.map { "after \($0)" },
                               cause: "tar header invalid (\(error)); the archive is corrupt from here on")
            }
            guard case .entry(let entry) = result else { return nil }
            switch entry.type {
            case .paxExtended, .gnuLongName, .gnuLongLink:
                let data = try readAll(entry.size, limit: 1 << 20)
                switch entry.type {
                case .paxExtended:
                    do {
                        for (key, value) in try Tar.parsePax(data) { pax[key] = value }
                    } catch {
                        throw .damaged(archive: path, entry: currentEntry.map { "after \($0)" }, cause: "pax header invalid (\(error))")
                    }
                case .gnuLongName: pax["path"] = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
                default: pax["linkpath"] = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
                }
            case .paxGlobal:
                _ = try readAll(entry.size, limit: 1 << 20)
            default:
                currentEntry = entry.path
                pendingData = entry.type == .regular ? entry.size : 0
                pendingPadding = entry.type == .regular ? Tar.padding(entry.size) : 0
                return entry
            }
        }
    }

    /// Streams the current entry's data in chunks of at most the reader's
    /// chunk size, then skips its padding.
    func readData(_ body: (UnsafeRawBufferPointer) throws(ArchiveError) -> Void) throws(ArchiveError) {
        while pendingData > 0 {
            guard try gzip.fill(entry: currentEntry) else { throw .truncated(archive: path, entry: currentEntry) }
            let count = Int(min(Int64(gzip.output.readableBytes), pendingData))
            try consume(count, body)
            pendingData -= Int64(count)
        }
        try skip(Int64(pendingPadding))
        pendingPadding = 0
    }

    /// The next chunk (at most one decompression window) of the current
    /// entry's data; nil once it is all read (its padding is then skipped).
    /// For callers that must await between chunks.
    func nextDataChunk() throws(ArchiveError) -> [UInt8]? {
        guard pendingData > 0 else {
            try skip(Int64(pendingPadding))
            pendingPadding = 0
            return nil
        }
        guard try gzip.fill(entry: currentEntry) else { throw .truncated(archive: path, entry: currentEntry) }
        let count = Int(min(Int64(gzip.output.readableBytes), pendingData))
        var chunk: [UInt8] = []
        chunk.reserveCapacity(count)
        try consume(count) { raw in chunk.append(contentsOf: raw) }
        pendingData -= Int64(count)
        return chunk
    }

    /// Reads on to the end of the file so every gzip member's CRC is checked
    /// and nothing follows the archive unnoticed.
    func drainToEnd() throws(ArchiveError) {
        while try gzip.fill(entry: currentEntry) {
            let bytes = gzip.output.readableBytes
            try consume(bytes) { (raw) throws(ArchiveError) in
                if raw.contains(where: { $0 != 0 }) {
                    throw .damaged(archive: path, entry: nil, cause: "data follows the end-of-archive blocks")
                }
            }
        }
    }

    private func finishEntry() throws(ArchiveError) {
        if pendingData > 0 || pendingPadding > 0 {
            try skip(pendingData + Int64(pendingPadding))
            pendingData = 0
            pendingPadding = 0
        }
    }

    private func readAll(_ size: Int64, limit: Int64) throws(ArchiveError) -> [UInt8] {
        guard size <= limit else {
            throw .damaged(archive: path, entry: currentEntry.map { "after \($0)" }, cause: "extended header of \(size) bytes is implausibly large")
        }
        var data: [UInt8] = []
        data.reserveCapacity(Int(size))
        var remaining = size
        while remaining > 0 {
            guard try gzip.fill(entry: currentEntry) else { throw .truncated(archive: path, entry: currentEntry) }
            let count = Int(min(Int64(gzip.output.readableBytes), remaining))
            try consume(count) { raw in data.append(contentsOf: raw) }
            remaining -= Int64(count)
        }
        try skip(Int64(Tar.padding(size)))
        return data
    }

    /// One 512-byte block; nil at a clean end of the file when `atBoundary`.
    private func readBlock(atBoundary: Bool) throws(ArchiveError) -> [UInt8]? {
        var block: [UInt8] = []
        block.reserveCapacity(Tar.blockSize)
        while block.count < Tar.blockSize {
            guard try gzip.fill(entry: currentEntry) else {
                if block.isEmpty && atBoundary { return nil }
                throw .truncated(archive: path, entry: currentEntry)
            }
            let count = min(gzip.output.readableBytes, Tar.blockSize - block.count)
            try consume(count) { raw in block.append(contentsOf: raw) }
        }
        return block
    }

    private func skip(_ count: Int64) throws(ArchiveError) {
        var remaining = count
        while remaining > 0 {
            guard try gzip.fill(entry: currentEntry) else { throw .truncated(archive: path, entry: currentEntry) }
            let step = Int(min(Int64(gzip.output.readableBytes), remaining))
            gzip.skipOutput(step)
            remaining -= Int64(step)
        }
    }

    private func consume(_ count: Int, _ body: (UnsafeRawBufferPointer) throws(ArchiveError) -> Void) throws(ArchiveError) {
        try gzip.consumeOutput(count, body)
    }
}

extension GzipFileReader {
    func skipOutput(_ count: Int) {
        consumeOutputIndex(count)
    }
}
