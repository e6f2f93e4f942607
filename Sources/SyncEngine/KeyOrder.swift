extension Array where Element == MessageInfo {
    /// The positions of these messages in key order (`MessageKey.<`: UIDs
    /// ascending, names by their UTF-8 bytes).
    ///
    /// Sorted as 24-byte entries keyed by a UID or a name's first 16 bytes,
    /// comparing whole names only where those are equal: Maildir names
    /// differ early (seconds, then microseconds). Sorting the listing itself
    /// moved 96-byte entries, retaining their names on every comparison, and
    /// took 110–150 ms and a 6 MB buffer for a 60,000-message folder; this
    /// takes about 20 ms and 2 MB.
    public func positionsInKeyOrder() -> [Int32] {
        var entries: [KeyOrderEntry] = []
        entries.reserveCapacity(count)
        for (position, message) in enumerated() {
            let (high, low) = Self.sortPrefix(message.key)
            entries.append(KeyOrderEntry(high: high, low: low, position: Int32(position)))
        }
        withUnsafeBufferPointer { messages in
            entries.sort { a, b in
                if a.high != b.high { return a.high < b.high }
                if a.low != b.low { return a.low < b.low }
                return messages[Int(a.position)].key < messages[Int(b.position)].key
            }
        }
        return entries.map(\.position)
    }

    /// A key's place as two big-endian numbers that order as the key does
    /// wherever they differ. A name's first 16 bytes, zero-padded (a byte of
    /// a name is never 0, so a shorter name sorts first as in byte order);
    /// a name's first byte makes `high` at least 2^56, above every UID, as
    /// `.uid` sorts before `.name`.
    private static func sortPrefix(_ key: MessageKey) -> (UInt64, UInt64) {
        switch key {
        case .uid(let uid):
            return (UInt64(uid), 0)
        case .name(let name):
            var high: UInt64 = 0, low: UInt64 = 0
            for (index, byte) in name.utf8.prefix(16).enumerated() {
                if index < 8 {
                    high |= UInt64(byte) << (56 - 8 * UInt64(index))
                } else {
                    low |= UInt64(byte) << (56 - 8 * UInt64(index - 8))
                }
            }
            return (high, low)
        }
    }
}

/// One message's place in `positionsInKeyOrder`'s sort.
private struct KeyOrderEntry {
    var high: UInt64
    var low: UInt64
    var position: Int32
}
