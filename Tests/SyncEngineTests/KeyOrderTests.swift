import SyncEngine
import Testing

@Suite("Key order")
struct KeyOrderTests {
    /// The order the state's index gives: UIDs ascending, names by bytes.
    static func byteOrder(_ keys: [MessageKey]) -> [MessageKey] {
        keys.sorted { a, b in
            switch (a, b) {
            case let (.uid(x), .uid(y)): x < y
            case let (.name(x), .name(y)): Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8))
            case (.uid, .name): true
            case (.name, .uid): false
            }
        }
    }

    static func positions(_ keys: [MessageKey]) -> [MessageKey] {
        let messages = keys.map { MessageInfo(key: $0, size: 1) }
        return messages.positionsInKeyOrder().map { messages[Int($0)].key }
    }

    @Test func namesSharingTheirFirstSixteenBytesAreOrderedByTheRest() {
        var generator = SystemRandomNumberGenerator()
        var names: Set<String> = []
        while names.count < 2000 {
            // Maildir names of one second: the first 16 bytes often agree.
            let micro = Int.random(in: 0..<40, using: &generator)
            names.insert("1732712345.M\(micro)P\(Int.random(in: 0..<100_000, using: &generator)).host")
        }
        let keys = names.map(MessageKey.name)
        let (ordered, expected) = (Self.positions(keys), Self.byteOrder(keys))
        let difference = ordered.indices.first { ordered[$0] != expected[$0] }
        #expect(ordered.count == expected.count && difference == nil,
                "first out of place at \(difference ?? -1): \(difference.map { "\(ordered[$0]) for \(expected[$0])" } ?? "")")
    }

    @Test func shortNamesComeBeforeTheirExtensions() {
        let keys = ["aba", "a", "ab", "b", "abcdefgh", "abcdefg", "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopq",
                    "abcdefghijklmno", "Z", "_", "~"].map(MessageKey.name)
        let expected = ["Z", "_", "a", "ab", "aba", "abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklmno",
                        "abcdefghijklmnop", "abcdefghijklmnopq", "b", "~"].map(MessageKey.name)
        #expect(Self.positions(keys) == expected)
    }

    @Test func nonASCIINamesFollowTheirBytesNotUnicodeEquivalence() {
        // "é" precomposed (C3 A9) and decomposed (65 CC 81) are one String
        // to Swift's `==` but two files; their bytes order them.
        let keys = ["é", "e\u{301}", "z", "ÿ", "e", "日本", "€"].map(MessageKey.name)
        #expect(Self.positions(keys) == Self.byteOrder(keys))
        #expect(Self.positions(keys).first == .name("e"))
    }

    @Test func uidsAscendBeforeAnyName() {
        let keys: [MessageKey] = [.uid(UInt32.max), .name("a"), .uid(7), .uid(1), .name("\u{1}"), .uid(300)]
        #expect(Self.positions(keys) == [.uid(1), .uid(7), .uid(300), .uid(UInt32.max), .name("\u{1}"), .name("a")])
    }
}
