import Foundation

/// Deterministic synthetic RFC 5322 messages for tests and benchmarks.
///
/// The same `(index, size, folder)` always yields the same bytes, on every machine and run (no
/// randomized hashing, no clock), so expectations can be recomputed instead of stored. Shape:
/// - CRLF line endings, lines ≤ 78 octets, headers From/To/Subject/Date/Message-ID/MIME-Version
///   plus `X-Ferrymail-Corpus: <folder>/<index>` to identify a message after a round trip;
/// - every third message (index % 3 == 1) has a non-ASCII subject as an RFC 2047 encoded word
///   (decoded form: `subject(index:folder:)`);
/// - every fifth message (index % 5 == 2) is multipart/mixed with a small base64 attachment;
/// - the text body is padded with pseudo-random words to roughly `size` octets in total
///   (never less than the headers need, so very small sizes give ~400–900 octet messages).
public enum Corpus {
    /// One message. `size` is the approximate total size in octets.
    public static func message(index: Int, size: Int = 2_048, folder: String = "INBOX") -> [UInt8] {
        var generator = Generator(seed: UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15 ^ fnv1a(folder))
        let hasAttachment = index % 5 == 2
        let boundary = "=_ferrymail_corpus_\(index)"

        var text = ""
        text += "From: \(sender(index)) <\(senderAddress(index))>\r\n"
        text += "To: Ferrymail Test <test@ferrymail.test>\r\n"
        text += "Subject: \(encodedSubject(index: index, folder: folder))\r\n"
        text += "Date: \(rfc5322Date(secondsSinceEpoch: baseEpoch + Int64(index) * 3_607))\r\n"
        text += "Message-ID: \(messageID(index: index, folder: folder))\r\n"
        text += "X-Ferrymail-Corpus: \(folder)/\(index)\r\n"
        text += "MIME-Version: 1.0\r\n"
        if hasAttachment {
            text += "Content-Type: multipart/mixed; boundary=\"\(boundary)\"\r\n\r\n"
            text += "This is a multi-part message in MIME format.\r\n"
            text += "--\(boundary)\r\n"
            text += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        } else {
            text += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        }
        text += "Corpus message \(index) in \(folder).\r\n"

        var trailer = ""
        if hasAttachment {
            let attachment = (0..<240).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            trailer += "\r\n--\(boundary)\r\n"
            trailer += "Content-Type: application/octet-stream; name=\"data-\(index).bin\"\r\n"
            trailer += "Content-Disposition: attachment; filename=\"data-\(index).bin\"\r\n"
            trailer += "Content-Transfer-Encoding: base64\r\n\r\n"
            trailer += Data(attachment).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
            trailer += "\r\n--\(boundary)--\r\n"
        }

        var bytes = Array(text.utf8)
        let target = size - trailer.utf8.count
        var line = ""
        while bytes.count + line.utf8.count + 2 < target {
            let word = words[Int(generator.next() % UInt64(words.count))]
            if line.utf8.count + word.utf8.count + 1 > 72 {
                bytes += Array(line.utf8) + [13, 10]
                line = ""
            } else {
                line += line.isEmpty ? word : " " + word
            }
        }
        if !line.isEmpty { bytes += Array(line.utf8) + [13, 10] }
        bytes += Array(trailer.utf8)
        return bytes
    }

    /// `count` consecutive messages starting at `startIndex`.
    public static func messages(count: Int, size: Int = 2_048, folder: String = "INBOX", startIndex: Int = 0) -> [[UInt8]] {
        (startIndex..<startIndex + count).map { message(index: $0, size: size, folder: folder) }
    }

    /// The Message-ID header value of message `index` (angle brackets included).
    public static func messageID(index: Int, folder: String = "INBOX") -> String {
        "<corpus.\(index).\(String(fnv1a(folder), radix: 16))@ferrymail.test>"
    }

    /// The decoded subject of message `index`.
    public static func subject(index: Int, folder: String = "INBOX") -> String {
        if index % 3 == 1 {
            return "\(nonASCIISubjects[index % nonASCIISubjects.count]) #\(index)"
        }
        return "Corpus message #\(index) in \(folder)"
    }

    /// Whether message `index` carries a base64 attachment (multipart/mixed).
    public static func hasAttachment(index: Int) -> Bool { index % 5 == 2 }

    // MARK: - Internals

    private static let baseEpoch: Int64 = 1_704_067_200 // 2024-01-01T00:00:00Z

    private static let nonASCIISubjects = ["Grüße aus Köln", "会議のお知らせ", "Привет из Москвы", "Café crème ☕"]

    private static let words = [
        "lorem", "ipsum", "dolor", "sit", "amet", "mailbox", "maildir", "sync", "imap", "dovecot",
        "ferry", "harbour", "message", "folder", "quick", "brown", "fox", "jumps", "over", "lazy",
        "dog", "über", "naïve", "façade", "straße", "data", "packet", "stream", "index", "flag",
    ]

    private static func sender(_ index: Int) -> String {
        ["Alice Example", "Bob Sender", "Carol Lists", "Dave Robot"][index % 4]
    }

    private static func senderAddress(_ index: Int) -> String {
        ["alice", "bob", "carol", "dave"][index % 4] + "@example.test"
    }

    private static func encodedSubject(index: Int, folder: String) -> String {
        let subject = subject(index: index, folder: folder)
        guard subject.unicodeScalars.contains(where: { $0.value > 0x7e }) else { return subject }
        return "=?UTF-8?B?\(Data(subject.utf8).base64EncodedString())?="
    }

    /// "Mon, 01 Jan 2024 00:00:00 +0000" without DateFormatter (slow and locale-dependent).
    static func rfc5322Date(secondsSinceEpoch: Int64) -> String {
        let days = secondsSinceEpoch / 86_400
        let secondsOfDay = secondsSinceEpoch % 86_400
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][Int(((days % 7) + 7) % 7)]
        let monthName = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][Int(month - 1)]
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekday), \(two(day)) \(monthName) \(year) \(two(secondsOfDay / 3_600)):\(two(secondsOfDay / 60 % 60)):\(two(secondsOfDay % 60)) +0000"
    }

    /// FNV-1a: a stable hash (Swift's `Hasher` is seeded per process).
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// SplitMix64: tiny, fast, deterministic.
    struct Generator {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}
