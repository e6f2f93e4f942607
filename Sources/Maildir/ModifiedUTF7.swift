/// IMAP modified UTF-7 (RFC 3501 §5.1.3), used for on-disk folder names when
/// compatibility with a Dovecot that does not store UTF-8 names is wanted.
///
/// The IMAP codec module has its own implementation for the wire; this copy
/// exists so that the `Maildir` target depends on nothing but Foundation and
/// swift-log.
public enum ModifiedUTF7 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,".utf8)
    private static let reverse: [UInt8: UInt8] = {
        var table: [UInt8: UInt8] = [:]
        for (i, c) in alphabet.enumerated() { table[c] = UInt8(i) }
        return table
    }()

    public static func encode(_ string: String) -> String {
        var out: [UInt8] = []
        var pending: [UInt16] = []
        func flush() {
            guard !pending.isEmpty else { return }
            var bytes: [UInt8] = []
            for unit in pending { bytes.append(UInt8(unit >> 8)); bytes.append(UInt8(unit & 0xFF)) }
            out.append(UInt8(ascii: "&"))
            var i = 0
            while i < bytes.count {
                let b0 = bytes[i], b1 = i + 1 < bytes.count ? bytes[i + 1] : 0, b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
                out.append(alphabet[Int(b0 >> 2)])
                out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
                if i + 1 < bytes.count { out.append(alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)]) }
                if i + 2 < bytes.count { out.append(alphabet[Int(b2 & 0x3F)]) }
                i += 3
            }
            out.append(UInt8(ascii: "-"))
            pending.removeAll()
        }
        for scalar in string.unicodeScalars {
            if scalar.value >= 0x20 && scalar.value <= 0x7E {
                flush()
                if scalar == "&" {
                    out.append(UInt8(ascii: "&")); out.append(UInt8(ascii: "-"))
                } else {
                    out.append(UInt8(scalar.value))
                }
            } else {
                pending.append(contentsOf: String(scalar).utf16)
            }
        }
        flush()
        return String(decoding: out, as: UTF8.self)
    }

    /// Strict decoding: returns `nil` for anything a conforming encoder would
    /// not produce (raw non-ASCII, unterminated or padded shifts, non-zero
    /// padding bits, lone surrogates, a shift that encodes only printable ASCII).
    public static func decode(_ string: String) -> String? {
        var result = ""
        let bytes = Array(string.utf8)
        var i = 0
        while i < bytes.count {
            let byte = bytes[i]
            guard byte >= 0x20 && byte <= 0x7E else { return nil }
            if byte != UInt8(ascii: "&") {
                result.unicodeScalars.append(Unicode.Scalar(byte))
                i += 1
                continue
            }
            guard let end = bytes[(i + 1)...].firstIndex(of: UInt8(ascii: "-")) else { return nil }
            if end == i + 1 {
                result.append("&")
                i = end + 1
                continue
            }
            var bits: UInt32 = 0
            var bitCount = 0
            var units: [UInt16] = []
            var high: [UInt8] = []
            for c in bytes[(i + 1)..<end] {
                guard let v = reverse[c] else { return nil }
                bits = bits << 6 | UInt32(v)
                bitCount += 6
                if bitCount >= 8 {
                    bitCount -= 8
                    high.append(UInt8((bits >> UInt32(bitCount)) & 0xFF))
                    if high.count == 2 { units.append(UInt16(high[0]) << 8 | UInt16(high[1])); high.removeAll() }
                }
            }
            // Leftover must be fewer than 6 zero bits and no half code unit.
            guard high.isEmpty, bitCount < 6, bits & ((1 << UInt32(bitCount)) - 1) == 0 else { return nil }
            var decoded = ""
            for scalar in Unicode.UTF16.decode(units) {
                guard let scalar else { return nil }
                guard scalar.value < 0x20 || scalar.value > 0x7E else { return nil }
                decoded.unicodeScalars.append(scalar)
            }
            result += decoded
            i = end + 1
            // Two adjacent shifts are not canonical (an encoder merges them).
            if i < bytes.count, bytes[i] == UInt8(ascii: "&"), i + 1 < bytes.count, bytes[i + 1] != UInt8(ascii: "-") { return nil }
        }
        return result
    }
}

extension Unicode.UTF16 {
    /// Decodes UTF-16 code units into scalars, `nil` for an invalid sequence.
    fileprivate static func decode(_ units: [UInt16]) -> [Unicode.Scalar?] {
        var it = units.makeIterator()
        var parser = Unicode.UTF16.ForwardParser()
        var out: [Unicode.Scalar?] = []
        while true {
            switch parser.parseScalar(from: &it) {
            case .valid(let encoded): out.append(Unicode.UTF16.decode(encoded))
            case .error: out.append(nil)
            case .emptyInput: return out
            }
        }
    }
}
