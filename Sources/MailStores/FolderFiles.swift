/// A folder's file names by base name, as one buffer of bytes and a hash
/// table of positions in it.
///
/// The store keeps one for every folder it scanned or delivered to, for as
/// long as it runs, so its size is per message: a dictionary of strings cost
/// about 150 bytes a message (a heap block per base name, a bucket, half-empty
/// tables), 9 MB for a 60,000-message folder. Here a file costs its name's
/// bytes, 8 bytes of record and 8 of table: about 60 bytes.
struct FolderFiles: Sendable {
    /// Each file's base name, then the rest of its name: the part after the
    /// base name (`:2,FS`), or the whole name where it does not start with
    /// its base name (never made by this store, but kept exactly if it were).
    private var bytes: [UInt8] = []
    /// Live records and the dead ones a change or removal left behind, until
    /// the next compaction.
    private var records: [Record] = []
    /// Open addressing with linear probing; a record's index + 1, 0 when empty.
    private var table: [UInt32] = []
    private(set) var count = 0
    /// Bytes of dead records, reclaimed once they are half of `bytes`.
    private var deadBytes = 0

    private struct Record {
        var start: UInt32
        var baseLength: UInt16
        /// Length of the rest; `wholeName` set when the rest is the whole name.
        var restLength: UInt16
        var isDead: Bool { baseLength == .max }
        var wholeName: Bool { restLength & 0x8000 != 0 }
        var restCount: Int { Int(restLength & 0x7fff) }
        var end: Int { Int(start) + Int(baseLength) + restCount }
    }

    init(minimumCapacity: Int = 0) {
        records.reserveCapacity(minimumCapacity)
        bytes.reserveCapacity(minimumCapacity * 48)
        table = [UInt32](repeating: 0, count: Self.tableSize(for: minimumCapacity))
    }

    func contains(_ base: String) -> Bool { find(base.utf8) != nil }

    /// Whether both are copies of one value not changed since (their
    /// buffers are shared), so the memory is counted once.
    func sharesStorage(with other: FolderFiles) -> Bool {
        records.withUnsafeBufferPointer { mine in
            other.records.withUnsafeBufferPointer { theirs in mine.baseAddress == theirs.baseAddress }
        }
    }

    /// The whole file name (without its `cur/` or `new/`).
    subscript(base: String) -> String? {
        get {
            guard let index = find(base.utf8)?.record else { return nil }
            let record = records[index]
            return bytes.withUnsafeBufferPointer { buffer in
                let from = Int(record.start) + (record.wholeName ? Int(record.baseLength) : 0)
                return String(decoding: UnsafeBufferPointer(rebasing: buffer[from..<record.end]), as: UTF8.self)
            }
        }
        set {
            if let newValue { insert(base: base, fileName: newValue) } else { remove(base) }
        }
    }

    /// `fileName` is this base name's file, without building either string.
    func holds(base: String, fileName: String) -> Bool {
        holds(base: base.utf8, fileName: fileName)
    }

    /// `holds(base:fileName:)` for a name whose base name ends at `baseEnd`.
    func holds(fileName: String, baseEnd: String.Index) -> Bool {
        holds(base: fileName.utf8[..<baseEnd], fileName: fileName)
    }

    private func holds(base: some Collection<UInt8>, fileName: String) -> Bool {
        guard let index = find(base)?.record else { return false }
        let record = records[index]
        let name = fileName.utf8
        return bytes.withUnsafeBufferPointer { buffer in
            let start = Int(record.start), baseLength = Int(record.baseLength)
            if record.wholeName { return buffer[(start + baseLength)..<record.end].elementsEqual(name) }
            return name.count == baseLength + record.restCount && buffer[start..<record.end].elementsEqual(name)
        }
    }

    /// The base names held here that `other` does not hold: what vanished
    /// since `other`'s picture was this one.
    func baseNames(missingFrom other: FolderFiles) -> [String] {
        var missing: [String] = []
        bytes.withUnsafeBufferPointer { buffer in
            for record in records where !record.isDead {
                let base = UnsafeBufferPointer(rebasing: buffer[Int(record.start)..<(Int(record.start) + Int(record.baseLength))])
                if other.find(base) == nil { missing.append(String(decoding: base, as: UTF8.self)) }
            }
        }
        return missing
    }

    /// The live records' indices ordered by base name bytes, the sync
    /// state's key order: 4 bytes a file, where a sorted list of names
    /// would cost a string each. Indices are insertion order while nothing
    /// was removed or replaced.
    func recordsInKeyOrder() -> [Int32] {
        var order: [Int32] = []
        order.reserveCapacity(count)
        for index in records.indices where !records[index].isDead { order.append(Int32(index)) }
        bytes.withUnsafeBufferPointer { buffer in
            records.withUnsafeBufferPointer { records in
                func base(_ index: Int32) -> UnsafeBufferPointer<UInt8> {
                    let record = records[Int(index)]
                    return UnsafeBufferPointer(rebasing: buffer[Int(record.start)..<(Int(record.start) + Int(record.baseLength))])
                }
                order.sort { base($0).lexicographicallyPrecedes(base($1)) }
            }
        }
        return order
    }

    /// How the base name of record `index` sorts against `name`, by bytes.
    func compareBase(of index: Int32, with name: String) -> Int {
        let record = records[Int(index)]
        return bytes.withUnsafeBufferPointer { buffer in
            let base = UnsafeBufferPointer(rebasing: buffer[Int(record.start)..<(Int(record.start) + Int(record.baseLength))])
            if base.elementsEqual(name.utf8) { return 0 }
            return base.lexicographicallyPrecedes(name.utf8) ? -1 : 1
        }
    }

    /// The base name and the whole file name of record `index`.
    func names(of index: Int32) -> (base: String, fileName: String) {
        let record = records[Int(index)]
        return bytes.withUnsafeBufferPointer { buffer in
            let start = Int(record.start), baseEnd = start + Int(record.baseLength)
            let base = String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<baseEnd]), as: UTF8.self)
            let rest = String(decoding: UnsafeBufferPointer(rebasing: buffer[baseEnd..<record.end]), as: UTF8.self)
            return (base, record.wholeName ? rest : base + rest)
        }
    }

    /// Every base name held (for tests and small folders).
    var baseNames: [String] { baseNames(missingFrom: FolderFiles()) }

    // MARK: - Table

    private static func tableSize(for count: Int) -> Int {
        var size = 16
        while size < count * 2 { size <<= 1 }
        return size
    }

    private static func hash(_ base: some Collection<UInt8>) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in base { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int(truncatingIfNeeded: hash ^ (hash >> 29))
    }

    /// The record holding this base name and its table slot.
    private func find(_ base: some Collection<UInt8>) -> (record: Int, slot: Int)? {
        guard count > 0 else { return nil }
        let mask = table.count - 1
        var slot = Self.hash(base) & mask
        let length = base.count
        return bytes.withUnsafeBufferPointer { buffer in
            while table[slot] != 0 {
                let index = Int(table[slot] - 1)
                let record = records[index]
                if Int(record.baseLength) == length,
                   buffer[Int(record.start)..<(Int(record.start) + length)].elementsEqual(base) {
                    return (index, slot)
                }
                slot = (slot + 1) & mask
            }
            return nil
        }
    }

    /// Records `fileName` under the base name ending at `baseEnd`, unless
    /// that base name is held already; false then.
    @discardableResult
    mutating func insertIfAbsent(fileName: String, baseEnd: String.Index) -> Bool {
        let base = fileName.utf8[..<baseEnd]
        guard find(base) == nil else { return false }
        if (count + 1) * 2 > table.count { rebuild(tableSize: table.count * 2) }
        place(append(base: base, rest: fileName.utf8[baseEnd...], wholeName: false))
        count += 1
        return true
    }

    private mutating func insert(base: String, fileName: String) {
        let prefixed = fileName.utf8.starts(with: base.utf8)
        let rest = prefixed ? fileName.utf8.dropFirst(base.utf8.count) : fileName.utf8[...]
        let existing = find(base.utf8)
        if let (old, _) = existing {
            retire(old)
        } else if (count + 1) * 2 > table.count {
            rebuild(tableSize: table.count * 2)
        }
        let index = append(base: base.utf8, rest: rest, wholeName: !prefixed)
        if let (_, slot) = existing {
            table[slot] = UInt32(index + 1)
        } else {
            place(index)
            count += 1
        }
        if deadBytes > 4096 && deadBytes * 2 > bytes.count { rebuild(tableSize: table.count) }
    }

    /// Appends a record and its bytes, not yet in the table; returns its index.
    private mutating func append(base: some Collection<UInt8>, rest: some Collection<UInt8>, wholeName: Bool) -> Int {
        let baseLength = base.count, restLength = rest.count
        let nameLength = wholeName ? restLength : baseLength + restLength
        precondition(baseLength < 0x7fff && nameLength < 0x7fff, "file names are at most 255 bytes")
        records.append(Record(start: UInt32(bytes.count), baseLength: UInt16(baseLength),
                              restLength: UInt16(restLength) | (wholeName ? 0x8000 : 0)))
        bytes.append(contentsOf: base)
        bytes.append(contentsOf: rest)
        return records.count - 1
    }

    private mutating func remove(_ base: String) {
        guard let (index, slot) = find(base.utf8) else { return }
        retire(index)
        count -= 1
        // Backward-shift deletion: later entries of the same run move up, so
        // probing never needs tombstones.
        let mask = table.count - 1
        var hole = slot, next = (slot + 1) & mask
        table[hole] = 0
        while table[next] != 0 {
            let moved = Int(table[next] - 1)
            let home = Self.hash(baseBytes(of: moved)) & mask
            // Move it into the hole unless its home lies after the hole in
            // this run (between the hole and it, cyclically).
            let stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !stays {
                table[hole] = table[next]
                table[next] = 0
                hole = next
            }
            next = (next + 1) & mask
        }
        if deadBytes > 4096 && deadBytes * 2 > bytes.count { rebuild(tableSize: table.count) }
    }

    private func baseBytes(of index: Int) -> ArraySlice<UInt8> {
        let record = records[index]
        return bytes[Int(record.start)..<(Int(record.start) + Int(record.baseLength))]
    }

    private mutating func retire(_ index: Int) {
        deadBytes += records[index].end - Int(records[index].start)
        records[index].baseLength = .max
    }

    private mutating func place(_ index: Int) {
        let mask = table.count - 1
        var slot = Self.hash(baseBytes(of: index)) & mask
        while table[slot] != 0 { slot = (slot + 1) & mask }
        table[slot] = UInt32(index + 1)
    }

    /// Drops dead records and their bytes, and re-hashes into a table of `size`.
    private mutating func rebuild(tableSize size: Int) {
        var newBytes: [UInt8] = []
        newBytes.reserveCapacity(bytes.count - deadBytes)
        var newRecords: [Record] = []
        newRecords.reserveCapacity(count)
        for var record in records where !record.isDead {
            let range = Int(record.start)..<record.end
            record.start = UInt32(newBytes.count)
            newBytes.append(contentsOf: bytes[range])
            newRecords.append(record)
        }
        bytes = newBytes
        records = newRecords
        deadBytes = 0
        table = [UInt32](repeating: 0, count: size)
        for index in records.indices { place(index) }
    }
}
