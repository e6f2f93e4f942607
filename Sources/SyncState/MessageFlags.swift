import Foundation
import GRDB

/// The flags and keywords of a message at the last sync, in one canonical
/// form.
///
/// The engine decides what changed by comparing the far side, the near side
/// and this remembered set (three-way merge), so two spellings of the same set
/// must compare equal: names are de-duplicated and sorted by byte order, and
/// stored as one space-separated text column (`"$Forwarded \Flagged \Seen"`)
/// that stays readable in `sqlite3`. Case is kept as given: mapping IMAP's
/// case-insensitive system flags to one spelling is the engine's decision.
public struct MessageFlags: Hashable, Sendable, Codable, DatabaseValueConvertible, CustomStringConvertible {
    /// Sorted, unique flag and keyword names.
    public let names: [String]

    public init(_ names: some Sequence<String>) {
        let names = Array(names)
        // Flags read back from the state or a store are usually canonical
        // already; checking is much cheaper than trimming, hashing and sorting
        // (tens of thousands of messages per mailbox).
        if Self.isCanonical(names) {
            self.names = Self.shared(names)
            return
        }
        let cleaned = names.compactMap { name -> String? in
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            return trimmed.isEmpty ? nil : trimmed
        }
        self.names = Self.shared(Array(Set(cleaned)).sorted { $0.utf8Precedes($1) })
    }

    /// The sets most messages carry, allocated once: each message's own copy
    /// of `["\\Seen"]` costs a heap block, 64 bytes a message in every
    /// listing, view and plan of a large mailbox.
    private static let common: [[String]] = [
        ["\\Seen"], ["\\Flagged", "\\Seen"], ["\\Answered", "\\Seen"], ["\\Answered", "\\Flagged", "\\Seen"],
        ["\\Flagged"], ["\\Answered"], ["\\Deleted", "\\Seen"], ["\\Draft"], ["\\Draft", "\\Seen"],
    ]

    private static func shared(_ names: [String]) -> [String] {
        guard names.count == 1 || names.count == 2 || names.count == 3 else { return names }
        return common.first { $0 == names } ?? names
    }

    /// Sorted by bytes, unique, and no name empty or starting or ending with
    /// a space, a tab or a non-ASCII byte (which might be white space).
    private static func isCanonical(_ names: [String]) -> Bool {
        var previous: String?
        for name in names {
            guard let first = name.utf8.first, let last = name.utf8.last,
                  first > 0x20, first < 0x80, last > 0x20, last < 0x80 else { return false }
            if let previous, !previous.utf8Precedes(name) { return false }
            previous = name
        }
        return true
    }

    public static let none = MessageFlags([String]())

    /// Parses the stored text form.
    public init(text: String) {
        self.init(text.split(separator: " ").map(String.init))
    }

    public var text: String { names.joined(separator: " ") }
    public var description: String { text }
    public var isEmpty: Bool { names.isEmpty }

    public func contains(_ name: String) -> Bool { names.contains(name) }

    public var databaseValue: DatabaseValue { text.databaseValue }

    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> MessageFlags? {
        String.fromDatabaseValue(dbValue).map { MessageFlags(text: $0) }
    }

    public init(from decoder: any Decoder) throws {
        self.init(text: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}

extension MessageFlags: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: String...) {
        self.init(elements)
    }
}
