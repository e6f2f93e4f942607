/// POSIX tar (ustar, with pax extended headers) headers: building and parsing.
///
/// Only what mail archives need: regular files, hard links, directories. A pax
/// `x` header precedes an entry whose path or link target does not fit ustar's
/// 100-byte ASCII fields, or whose mtime or size does not fit its octal
/// fields; every tar since 2001 (GNU tar, bsdtar, Python's tarfile) reads it.
enum Tar {
    static let blockSize = 512

    enum EntryType: UInt8 {
        case regular = 0x30 // '0'
        case hardLink = 0x31 // '1'
        case directory = 0x35 // '5'
        case paxExtended = 0x78 // 'x'
        case paxGlobal = 0x67 // 'g'
        case gnuLongName = 0x4c // 'L'
        case gnuLongLink = 0x4b // 'K'
    }

    struct Entry: Equatable {
        var path: String
        var type: EntryType
        var size: Int64
        var mtime: Int64
        var mode: UInt32
        var linkTarget: String?
    }

    // MARK: - Writing

    /// The header blocks (pax header and its data when needed, then the ustar
    /// header) for one entry. Data and padding follow separately.
    static func headerBlocks(for entry: Entry) -> [UInt8] {
        var pax: [(String, String)] = []
        if !fitsUstar(entry.path) { pax.append(("path", entry.path)) }
        if let link = entry.linkTarget, !fitsUstar(link) { pax.append(("linkpath", link)) }
        if entry.mtime < 0 || entry.mtime >= 0o77777777777 { pax.append(("mtime", String(entry.mtime))) }
        if entry.size >= 0o77777777777 { pax.append(("size", String(entry.size))) }

        var out: [UInt8] = []
        if !pax.isEmpty {
            var data: [UInt8] = []
            for (key, value) in pax { data += paxRecord(key, value) }
            let paxEntry = Entry(path: "PaxHeaders/" + String(asciiFallback(entry.path).suffix(80)), type: .paxExtended,
                                 size: Int64(data.count), mtime: clampedTime(entry.mtime), mode: 0o644, linkTarget: nil)
            out += ustarHeader(paxEntry)
            out += data
            out += [UInt8](repeating: 0, count: padding(Int64(data.count)))
        }
        out += ustarHeader(entry)
        return out
    }

    /// Zero bytes after `size` data bytes up to the next block.
    static func padding(_ size: Int64) -> Int {
        let remainder = Int(size % Int64(blockSize))
        return remainder == 0 ? 0 : blockSize - remainder
    }

    /// Two zero blocks end an archive.
    static let endOfArchive = [UInt8](repeating: 0, count: 2 * blockSize)

    private static func fitsUstar(_ text: String) -> Bool {
        text.utf8.count <= 100 && text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }

    private static func asciiFallback(_ text: String) -> String {
        String(decoding: text.utf8.map { $0 >= 0x20 && $0 < 0x7f ? $0 : UInt8(ascii: "_") }, as: UTF8.self)
    }

    private static func clampedTime(_ time: Int64) -> Int64 { min(max(time, 0), 0o77777777777 - 1) }

    /// `"<length> <key>=<value>\n"`, where the length counts itself.
    static func paxRecord(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n"
        let bodyLength = body.utf8.count
        var length = bodyLength + 1
        while String(length).utf8.count + bodyLength != length { length += 1 }
        return Array((String(length) + body).utf8)
    }

    private static func ustarHeader(_ entry: Entry) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: blockSize)
        func put(_ bytes: some Collection<UInt8>, at offset: Int, max: Int) {
            for (index, byte) in bytes.prefix(max).enumerated() { block[offset + index] = byte }
        }
        func octal(_ value: Int64, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            let padded = String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits
            put(padded.utf8, at: offset, max: width - 1)
        }
        put(asciiFallback(entry.path).utf8, at: 0, max: 100)
        octal(Int64(entry.mode), at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(min(entry.size, 0o77777777777), at: 124, width: 12)
        octal(clampedTime(entry.mtime), at: 136, width: 12)
        block[156] = entry.type.rawValue
        if let link = entry.linkTarget { put(asciiFallback(link).utf8, at: 157, max: 100) }
        put("ustar".utf8, at: 257, max: 6) // "ustar\0"
        put("00".utf8, at: 263, max: 2)
        put("ferrymail".utf8, at: 265, max: 32)
        put("ferrymail".utf8, at: 297, max: 32)
        for index in 148..<156 { block[index] = 0x20 }
        let sum = block.reduce(0) { $0 + Int64($1) }
        let digits = String(sum, radix: 8)
        put((String(repeating: "0", count: max(0, 6 - digits.count)) + digits).utf8, at: 148, max: 6)
        block[154] = 0
        block[155] = 0x20
        return block
    }

    // MARK: - Reading

    enum HeaderResult: Equatable {
        case entry(Entry)
        case endOfArchive
    }

    enum ParseError: Error, Equatable {
        case badChecksum
        case notUstar
        case badNumber(String)
        case badPax(String)
    }

    /// Parses one 512-byte ustar header. `pax` holds the preceding pax
    /// (or GNU long name) overrides.
    static func parseHeader(_ block: [UInt8], pax: [String: String]) throws(ParseError) -> HeaderResult {
        precondition(block.count == blockSize)
        if block.allSatisfy({ $0 == 0 }) { return .endOfArchive }
        let stored = try number(block[148..<156])
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (index, byte) in block.enumerated() {
            let value = (148..<156).contains(index) ? 0x20 : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        guard stored == unsigned || stored == signed else { throw .badChecksum }
        guard Array(block[257..<262]) == Array("ustar".utf8) else { throw .notUstar }

        func text(_ range: Range<Int>) -> String {
            let bytes = block[range].prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        var path = text(0..<100)
        let prefix = text(345..<500)
        if !prefix.isEmpty { path = prefix + "/" + path }
        let rawType = block[156] == 0 ? EntryType.regular.rawValue : block[156]
        let type = EntryType(rawValue: rawType) ?? .regular
        var size = try number(block[124..<136])
        var mtime = try number(block[136..<148])
        var link: String? = text(157..<257)
        if link?.isEmpty == true { link = nil }
        if let value = pax["path"] { path = value }
        if let value = pax["linkpath"] { link = value }
        if let value = pax["size"] {
            guard let parsed = Int64(value) else { throw .badPax("size=\(value)") }
            size = parsed
        }
        if let value = pax["mtime"] {
            let whole = value.split(separator: ".").first.map(String.init) ?? value
            guard let parsed = Int64(whole) else { throw .badPax("mtime=\(value)") }
            mtime = parsed
        }
        let mode = UInt32(try number(block[100..<108]))
        return .entry(Entry(path: path, type: type, size: size, mtime: mtime, mode: mode, linkTarget: link))
    }

    /// Parses pax extended header data into key/value pairs.
    static func parsePax(_ data: [UInt8]) throws(ParseError) -> [String: String] {
        var result: [String: String] = [:]
        var index = 0
        while index < data.count {
            guard let space = data[index...].firstIndex(of: 0x20),
                  let length = Int(String(decoding: data[index..<space], as: UTF8.self)),
                  length > 0, index + length <= data.count, data[index + length - 1] == 0x0a else {
                throw .badPax("malformed record at byte \(index)")
            }
            let record = data[(space + 1)..<(index + length - 1)]
            guard let equals = record.firstIndex(of: 0x3d) else { throw .badPax("record without '='") }
            result[String(decoding: record[record.startIndex..<equals], as: UTF8.self)] =
                String(decoding: record[(equals + 1)...], as: UTF8.self)
            index += length
        }
        return result
    }

    /// Octal (NUL/space terminated) or base-256 (GNU, high bit set) number.
    private static func number(_ field: ArraySlice<UInt8>) throws(ParseError) -> Int64 {
        if let first = field.first, first & 0x80 != 0 {
            var value: Int64 = Int64(first & 0x7f)
            for byte in field.dropFirst() { value = value << 8 | Int64(byte) }
            return value
        }
        var value: Int64 = 0
        var seenDigit = false
        for byte in field {
            if byte == 0 || byte == 0x20 {
                if seenDigit { break } else { continue }
            }
            guard byte >= 0x30 && byte <= 0x37 else {
                throw .badNumber(String(decoding: field, as: UTF8.self))
            }
            seenDigit = true
            value = value * 8 + Int64(byte - 0x30)
        }
        return value
    }
}
