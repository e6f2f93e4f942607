/// A folder's files, by a keyed hash of their base names: what the Maildir
/// store keeps of a folder to find a message's file with one `stat`, and to
/// prove that a run's own changes were the only ones.
///
/// Names are not kept. The store keeps one of these for every folder it
/// scanned or delivered to, for as long as it runs, so its size is per
/// message: a table of the names themselves cost about 60 bytes a file, and
/// one folder of 400,000 messages passed the 64 MB budget on it alone. Here a
/// file costs one slot: 8 bytes of hash and 2 of suffix, the part of its name
/// after the base name (`:2,FS`), interned, since a folder has few distinct
/// ones. At most 80 % of the slots are used: 12.5–19 bytes a file.
///
/// A hash is not a name. Two base names may share one: Swift's `Hasher`,
/// keyed at random per process, makes that about 2⁻⁶⁴ for a pair and keeps
/// hostile file names from aiming at it. A second file of one base name looks
/// the same. Either way the slot is marked ambiguous: it gives no file name
/// (the caller reads the directory) and the table proves nothing any more
/// (`isExact`). A file name it gives is always the asked base name and a
/// suffix, so a wrong one only costs a `stat` that fails.
struct FolderFiles: Sendable {
    /// A base name's hash; never 0, which marks an empty slot.
    typealias Key = UInt64

    /// Open addressing with linear probing, slot from the hash's high bits.
    private var keys: [Key]
    /// Per slot: the suffix's index in `suffixes`, or `unknownSuffix`; with
    /// `ambiguousBit` when more than one file had this key.
    private var refs: [UInt16]
    private(set) var count = 0
    /// Slots ever marked ambiguous or given a suffix that could not be
    /// interned: while any, the table cannot prove a directory's contents.
    private var doubts = 0
    private var suffixes: [String] = []
    private var suffixIndex: [String: UInt16] = [:]
    /// The hash bits kept: all of them, except in tests that make base
    /// names share keys on purpose.
    private let keyMask: UInt64

    private static let unknownSuffix: UInt16 = 0x7fff
    private static let ambiguousBit: UInt16 = 0x8000
    private static let maximumLoad = 0.8

    init(minimumCapacity: Int = 0, keyBits: Int = 64) {
        keyMask = keyBits >= 64 ? .max : (1 << UInt64(max(1, keyBits))) - 1
        let capacity = max(16, Int((Double(minimumCapacity) / Self.maximumLoad).rounded(.up)) + 1)
        keys = [Key](repeating: 0, count: capacity)
        refs = [UInt16](repeating: 0, count: capacity)
    }

    /// Slots, for a caller's per-slot marks (`slot(ofBase:)`).
    var capacity: Int { keys.count }

    /// Whether one more file fits without growing the table, which holds
    /// the old and the new table at once.
    var hasRoom: Bool { Double(count + 1) <= Double(keys.count) * Self.maximumLoad }

    /// Whether every file held has a slot of its own and a known suffix: only
    /// then does "every file of the directory is held, and as many" prove
    /// that the directory holds exactly these files.
    var isExact: Bool { doubts == 0 }

    /// The key a base name is held under, for matching names against
    /// `keys(missingFrom:)` (of tables with the same `keyBits`).
    func key(of base: String) -> Key { key(base.utf8) }

    private func key(_ base: some Collection<UInt8>) -> Key {
        var hasher = Hasher()
        let done: Void? = base.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil { Array(base).withUnsafeBytes { hasher.combine(bytes: $0) } }
        let key = UInt64(UInt(bitPattern: hasher.finalize())) & keyMask
        return key == 0 ? 1 : key
    }

    /// Whether both are copies of one value not changed since (their
    /// buffers are shared), so the memory is counted once.
    func sharesStorage(with other: FolderFiles) -> Bool {
        keys.withUnsafeBufferPointer { mine in
            other.keys.withUnsafeBufferPointer { theirs in mine.baseAddress == theirs.baseAddress }
        }
    }

    func contains(_ base: String) -> Bool { slot(of: key(of: base)) != nil }

    /// The whole file name (without its `cur/` or `new/`) of this base name's
    /// file; nil when not held, or when the slot cannot tell it.
    /// Setting records this store's own change: a delivery, a rename, or
    /// (nil) a removal.
    subscript(base: String) -> String? {
        get {
            guard let slot = slot(of: key(of: base)), let suffix = suffix(at: slot) else { return nil }
            return base + suffixes[suffix]
        }
        set {
            if let newValue { record(base: base, fileName: newValue) } else { remove(base) }
        }
    }

    /// `fileName` is this base name's file.
    func holds(base: String, fileName: String) -> Bool {
        guard fileName.utf8.starts(with: base.utf8) else { return false }
        return holds(key: key(of: base), rest: fileName.utf8.dropFirst(base.utf8.count))
    }

    /// `holds(base:fileName:)` for a name whose base name ends at `baseEnd`.
    func holds(fileName: String, baseEnd: String.Index) -> Bool {
        holds(key: key(fileName.utf8[..<baseEnd]), rest: fileName.utf8[baseEnd...])
    }

    private func holds(key: Key, rest: some Collection<UInt8>) -> Bool {
        guard let slot = slot(of: key), let suffix = suffix(at: slot) else { return false }
        return suffixes[suffix].utf8.elementsEqual(rest)
    }

    /// The slot of this base name, for marks a caller keeps by slot while
    /// the table is not changed.
    func slot(ofBase base: String) -> Int? { slot(of: key(of: base)) }

    /// `slot(ofBase:)` for a name whose base name ends at `baseEnd`.
    func slot(fileName: String, baseEnd: String.Index) -> Int? { slot(of: key(fileName.utf8[..<baseEnd])) }

    /// The index of the suffix held at `slot`, the same for every file with
    /// that suffix; nil when the slot is ambiguous or its suffix unknown.
    func suffix(at slot: Int) -> Int? {
        let ref = refs[slot]
        guard ref & Self.ambiguousBit == 0, ref != Self.unknownSuffix else { return nil }
        return Int(ref)
    }

    /// The keys held here that `other` does not hold: what vanished since
    /// `other`'s picture was this one.
    func keys(missingFrom other: FolderFiles) -> Set<Key> {
        var missing: Set<Key> = []
        for key in keys where key != 0 && other.slot(of: key) == nil { missing.insert(key) }
        return missing
    }

    /// Records the file read from the directory under the base name ending
    /// at `baseEnd`. False when its key was held already: a second file of
    /// that base name or, about never, another base name with the same hash.
    /// The slot is then ambiguous, and the caller tells which it was.
    @discardableResult
    mutating func insertIfAbsent(fileName: String, baseEnd: String.Index) -> Bool {
        insertedSlot(fileName: fileName, baseEnd: baseEnd) != nil
    }

    /// `insertIfAbsent(fileName:baseEnd:)`, giving the new slot, or nil.
    mutating func insertedSlot(fileName: String, baseEnd: String.Index) -> Int? {
        let key = key(fileName.utf8[..<baseEnd])
        if let slot = slot(of: key) {
            markAmbiguous(slot)
            return nil
        }
        return insert(key, ref: intern(fileName.utf8[baseEnd...]))
    }

    // MARK: - Table

    private func home(_ key: Key) -> Int { Int(key.multipliedFullWidth(by: UInt64(keys.count)).high) }

    private func slot(of key: Key) -> Int? {
        var slot = home(key)
        while keys[slot] != 0 {
            if keys[slot] == key { return slot }
            slot += 1
            if slot == keys.count { slot = 0 }
        }
        return nil
    }

    private mutating func intern(_ rest: some Collection<UInt8>) -> UInt16 {
        let text = String(decoding: rest, as: UTF8.self)
        if let index = suffixIndex[text] { return index }
        guard suffixes.count < Int(Self.unknownSuffix) else { return Self.unknownSuffix }
        let index = UInt16(suffixes.count)
        suffixes.append(text)
        suffixIndex[text] = index
        return index
    }

    private mutating func markAmbiguous(_ slot: Int) {
        if refs[slot] & Self.ambiguousBit == 0 && refs[slot] != Self.unknownSuffix { doubts += 1 }
        refs[slot] |= Self.ambiguousBit
    }

    @discardableResult
    private mutating func insert(_ key: Key, ref: UInt16) -> Int {
        if !hasRoom { grow() }
        var slot = home(key)
        while keys[slot] != 0 {
            slot += 1
            if slot == keys.count { slot = 0 }
        }
        keys[slot] = key
        refs[slot] = ref
        count += 1
        if ref == Self.unknownSuffix { doubts += 1 }
        return slot
    }

    private mutating func record(base: String, fileName: String) {
        let ref = fileName.utf8.starts(with: base.utf8) ? intern(fileName.utf8.dropFirst(base.utf8.count)) : Self.unknownSuffix
        let key = key(of: base)
        guard let slot = slot(of: key) else {
            insert(key, ref: ref)
            return
        }
        // Which of an ambiguous slot's files changed cannot be told.
        guard refs[slot] & Self.ambiguousBit == 0 else { return }
        if ref == Self.unknownSuffix && refs[slot] != Self.unknownSuffix { doubts += 1 }
        refs[slot] = ref
    }

    private mutating func remove(_ base: String) {
        guard var hole = slot(of: key(of: base)) else { return }
        // The other file of an ambiguous slot may still be there.
        guard refs[hole] & Self.ambiguousBit == 0 else { return }
        count -= 1
        // Backward-shift deletion: later entries of the same run move up, so
        // probing never needs tombstones.
        keys[hole] = 0
        var next = hole + 1 == keys.count ? 0 : hole + 1
        while keys[next] != 0 {
            let home = home(keys[next])
            // Moved into the hole unless its home lies after the hole in this
            // run (between the hole and it, cyclically).
            let stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !stays {
                keys[hole] = keys[next]
                refs[hole] = refs[next]
                keys[next] = 0
                hole = next
            }
            next = next + 1 == keys.count ? 0 : next + 1
        }
    }

    /// Half as many slots again: the old and new tables together are 2.5
    /// times one, where doubling would make them 3 times.
    private mutating func grow() {
        let oldKeys = keys, oldRefs = refs
        keys = [Key](repeating: 0, count: oldKeys.count + oldKeys.count / 2)
        refs = [UInt16](repeating: 0, count: keys.count)
        for index in oldKeys.indices where oldKeys[index] != 0 {
            var slot = home(oldKeys[index])
            while keys[slot] != 0 {
                slot += 1
                if slot == keys.count { slot = 0 }
            }
            keys[slot] = oldKeys[index]
            refs[slot] = oldRefs[index]
        }
    }
}

/// What proves that a folder holds exactly the files it held at a read of
/// it plus this store's own changes since: their number and the sum of a
/// keyed hash of each file name. 16 bytes, whatever the folder's size, so a
/// first download of any size into a folder proves its end state without a
/// table of its files.
///
/// A change by another program changes the sum, unless the hashes of the
/// names it removed and added sum to the same, about 2⁻⁶⁴ with the process's
/// random key. A change of this store's that it records with a file name
/// other than the one it changed (another program renamed the file first)
/// leaves the sum wrong, so the proof fails, as it should: the folder is then
/// read again.
struct FolderProof: Sendable, Equatable {
    private(set) var count = 0
    private var sum: UInt64 = 0

    init() {}

    mutating func add(_ fileName: String) {
        count += 1
        sum &+= Self.hash(fileName)
    }

    mutating func remove(_ fileName: String) {
        count -= 1
        sum &-= Self.hash(fileName)
    }

    mutating func rename(_ old: String, to new: String) {
        sum = sum &- Self.hash(old) &+ Self.hash(new)
    }

    private static func hash(_ fileName: String) -> UInt64 {
        var hasher = Hasher()
        // Apart from `FolderFiles`' keys of base names.
        hasher.combine(UInt8(ascii: "/"))
        var name = fileName
        name.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        return UInt64(UInt(bitPattern: hasher.finalize()))
    }
}
