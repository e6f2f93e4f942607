// Mailbox name encodings: RFC 3501 §5.1.3 modified UTF-7 and, after
// ENABLE UTF8=ACCEPT, plain UTF-8 (RFC 6855).

public enum ModifiedUTF7 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,".utf8)
    private static let decodeTable: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = Int8(i) }
        return t
    }()

    /// Printable US-ASCII stands for itself (`&` as `&-`); every other run of
    /// characters becomes `&` + base64 of its UTF-16 + `-`.
    public static func encode(_ string: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count)
        var run: [UInt16] = []
        func flush() {
            guard !run.isEmpty else { return }
            out.append(0x26)
            var bits: UInt32 = 0
            var bitCount = 0
            for unit in run {
                bits = (bits << 16) | UInt32(unit)
                bitCount += 16
                while bitCount >= 6 {
                    bitCount -= 6
                    out.append(alphabet[Int((bits >> UInt32(bitCount)) & 0x3F)])
                }
                bits &= (1 << UInt32(bitCount)) - 1
            }
            if bitCount > 0 { out.append(alphabet[Int((bits << UInt32(6 - bitCount)) & 0x3F)]) }
            out.append(0x2D)
            run.removeAll(keepingCapacity: true)
        }
        for scalar in string.unicodeScalars {
            if scalar.value >= 0x20 && scalar.value <= 0x7E {
                flush()
                out.append(UInt8(scalar.value))
                if scalar == "&" { out.append(0x2D) }
            } else {
                run.append(contentsOf: UTF16.encode(scalar)!)
            }
        }
        flush()
        return out
    }

    /// Strict decoding: rejects 8-bit or control bytes, invalid base64,
    /// unterminated shifts, and encodings `encode` would never produce
    /// (non-zero padding bits, base64-encoded printable ASCII, adjacent shifts),
    /// so each name has exactly one wire form.
    public static func decode(_ bytes: [UInt8]) throws(MailboxNameError) -> String {
        var scalars = String.UnicodeScalarView()
        var i = 0
        var previousWasShift = false
        func fail(_ message: String) -> MailboxNameError { MailboxNameError(message, name: bytes) }
        while i < bytes.count {
            let b = bytes[i]
            guard b >= 0x20 && b <= 0x7E else {
                throw fail("byte 0x\(String(b, radix: 16)) at offset \(i) is not printable US-ASCII; modified UTF-7 names are 7-bit")
            }
            guard b == 0x26 else {
                scalars.append(Unicode.Scalar(b))
                previousWasShift = false
                i += 1
                continue
            }
            guard let end = bytes[(i + 1)...].firstIndex(of: 0x2D) else {
                throw fail("unterminated shift sequence at offset \(i): '&' without closing '-'")
            }
            if end == i + 1 {
                scalars.append("&")
                previousWasShift = false
                i = end + 1
                continue
            }
            if previousWasShift { throw fail("adjacent shift sequences at offset \(i) must be merged into one") }
            var bits: UInt32 = 0
            var bitCount = 0
            var units: [UInt16] = []
            for j in (i + 1)..<end {
                let v = decodeTable[Int(bytes[j])]
                guard v >= 0 else { throw fail("invalid modified base64 character '\(Unicode.Scalar(bytes[j]))' at offset \(j)") }
                bits = (bits << 6) | UInt32(v)
                bitCount += 6
                if bitCount >= 16 {
                    bitCount -= 16
                    units.append(UInt16(truncatingIfNeeded: bits >> UInt32(bitCount)))
                    bits &= (1 << UInt32(bitCount)) - 1
                }
            }
            guard bitCount < 6, bits == 0, !units.isEmpty else {
                throw fail("non-canonical base64 padding in shift sequence at offset \(i)")
            }
            var iterator = units.makeIterator()
            var decoder = UTF16()
            loop: while true {
                switch decoder.decode(&iterator) {
                case .scalarValue(let scalar):
                    if scalar.value >= 0x20 && scalar.value <= 0x7E {
                        throw fail("printable ASCII '\(scalar)' must not be base64-encoded (offset \(i))")
                    }
                    scalars.append(scalar)
                case .emptyInput: break loop
                case .error: throw fail("shift sequence at offset \(i) is not valid UTF-16 (unpaired surrogate)")
                }
            }
            previousWasShift = true
            i = end + 1
        }
        return String(scalars)
    }
}

extension MailboxName {
    /// Encodes a Unicode name for the wire: modified UTF-7 by default, UTF-8 after ENABLE UTF8=ACCEPT.
    public init(_ name: String, encoding: MailboxNameEncoding) {
        switch encoding {
        case .modifiedUTF7: self.init(wireBytes: ModifiedUTF7.encode(name))
        case .utf8: self.init(wireBytes: Array(name.utf8))
        }
    }

    /// The Unicode name for display and for mapping to a Maildir folder.
    /// Throws rather than guessing, so two different wire names never map to the same folder.
    public func displayName(encoding: MailboxNameEncoding) throws(MailboxNameError) -> String {
        switch encoding {
        case .modifiedUTF7:
            return try ModifiedUTF7.decode(wireBytes)
        case .utf8:
            guard let s = String(validating: wireBytes, as: UTF8.self) else {
                throw MailboxNameError("not valid UTF-8", name: wireBytes)
            }
            return s
        }
    }
}
