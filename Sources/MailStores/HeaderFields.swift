/// Reading one header field from a message's header section, shared by both
/// stores so a Message-ID read from IMAP and from a Maildir file compare equal.
enum HeaderFields {
    /// The unfolded value of the first `name:` field in `header` (which may
    /// be the whole message: reading stops at the blank line). Whitespace
    /// runs from folding collapse to one space; an empty value is nil.
    static func value(of name: String, in header: some Collection<UInt8>) -> String? {
        let wanted = Array(name.lowercased().utf8) + [UInt8(ascii: ":")]
        var lines: [[UInt8]] = []
        var line: [UInt8] = []
        for byte in header {
            if byte == UInt8(ascii: "\n") {
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                if line.isEmpty { break }
                lines.append(line)
                line = []
            } else {
                line.append(byte)
            }
        }
        if !line.isEmpty { lines.append(line) }
        var index = 0
        while index < lines.count {
            let current = lines[index]
            index += 1
            guard current.count >= wanted.count,
                  zip(current, wanted).allSatisfy({ asciiLower($0.0) == $0.1 }) else { continue }
            var value = Array(current.dropFirst(wanted.count))
            while index < lines.count, let first = lines[index].first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") {
                value += [UInt8(ascii: " ")] + lines[index]
                index += 1
            }
            let text = String(decoding: value, as: UTF8.self)
                .split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            return text.isEmpty ? nil : text
        }
        return nil
    }

    private static func asciiLower(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
    }
}
