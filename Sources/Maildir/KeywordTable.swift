import Foundation

/// The letter→keyword table of one folder, as in Dovecot's `dovecot-keywords`
/// (`0 $Forwarded` means letter `a` is `$Forwarded`).
public struct KeywordTable: Sendable, Hashable {
    public static let capacity = 26

    /// Index 0 is letter `a`; `nil` is a free slot.
    public private(set) var names: [String?] = Array(repeating: nil, count: capacity)

    public init() {}

    /// Parses the file leniently, as Dovecot does: lines that are not
    /// `<index> <keyword>` with index 0–25 are ignored rather than fatal, and
    /// the first occurrence of a keyword wins.
    public init(parsing contents: String) {
        for line in contents.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            guard let space = line.firstIndex(of: " "),
                  let index = Int(line[..<space]), (0..<Self.capacity).contains(index) else { continue }
            let name = String(line[line.index(after: space)...])
            guard !name.isEmpty, names[index] == nil, !names.contains(name) else { continue }
            names[index] = name
        }
    }

    /// Serialization in index order, one `<index> <keyword>` per line.
    public var serialized: String {
        names.enumerated().compactMap { i, name in name.map { "\(i) \($0)\n" } }.joined()
    }

    public func index(of keyword: String) -> Int? { names.firstIndex { $0 == keyword } }

    public func keyword(at index: Int) -> String? {
        (0..<Self.capacity).contains(index) ? names[index] : nil
    }

    /// Allocates the lowest free letter; `nil` when all 26 are used.
    mutating func allocate(_ keyword: String) -> Int? {
        if let existing = index(of: keyword) { return existing }
        guard let free = names.firstIndex(where: { $0 == nil }) else { return nil }
        names[free] = keyword
        return free
    }

    /// Keywords for a letter bitmask, plus the letters that have no entry in
    /// the table (they are preserved, not dropped).
    func keywords(forMask mask: UInt32) -> (keywords: [String], unmapped: [UInt8]) {
        var keywords: [String] = []
        var unmapped: [UInt8] = []
        for bit in 0..<Self.capacity where mask & (1 << UInt32(bit)) != 0 {
            if let name = names[bit] { keywords.append(name) } else { unmapped.append(UInt8(ascii: "a") + UInt8(bit)) }
        }
        keywords.sort()
        return (keywords, unmapped)
    }
}
