// date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
// (RFC 3501 §9), used by INTERNALDATE in FETCH and by APPEND.

extension InternalDate {
    static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Builds a date from its wall-clock fields in the zone `zoneMinutes` east of UTC.
    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, zoneMinutes: Int) {
        let days = InternalDate.daysFromCivil(year: year, month: month, day: day)
        let local = days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        self.init(secondsSinceEpoch: local - Int64(zoneMinutes) * 60, zoneMinutes: zoneMinutes)
    }

    /// Parses `17-Jul-1996 02:44:25 -0700` (surrounding double quotes are
    /// accepted too; the day may be space-padded or a single digit).
    public init(imapDateTime text: String) throws(InternalDateError) {
        var bytes = Array(text.utf8)
        if bytes.count >= 2, bytes.first == 0x22, bytes.last == 0x22 { bytes = Array(bytes[1..<(bytes.count - 1)]) }
        try self.init(imapBytes: bytes)
    }

    init(imapBytes: some Collection<UInt8>) throws(InternalDateError) {
        let b = Array(imapBytes)
        var i = 0
        func fail(_ message: String) -> InternalDateError { InternalDateError(message, text: b) }
        func digits(_ count: Int, _ what: String) throws(InternalDateError) -> Int {
            guard i + count <= b.count else { throw fail("truncated \(what)") }
            var v = 0
            for _ in 0..<count {
                guard ASCII.isDigit(b[i]) else { throw fail("expected digits in \(what)") }
                v = v * 10 + Int(b[i] - ASCII.zero)
                i += 1
            }
            return v
        }
        func expect(_ byte: UInt8, _ what: String) throws(InternalDateError) {
            guard i < b.count, b[i] == byte else { throw fail("expected \(what)") }
            i += 1
        }
        // date-day-fixed = (SP DIGIT) / 2DIGIT
        if i < b.count, b[i] == ASCII.space { i += 1 }
        var day = try digits(1, "day")
        if i < b.count, ASCII.isDigit(b[i]) { day = day * 10 + (try digits(1, "day")) }
        try expect(ASCII.minus, "'-' after day")
        guard i + 3 <= b.count else { throw fail("truncated month") }
        let monthText = String(decoding: b[i..<(i + 3)], as: UTF8.self).lowercased()
        guard let monthIndex = InternalDate.monthNames.firstIndex(where: { $0.lowercased() == monthText }) else {
            throw fail("unknown month name")
        }
        i += 3
        try expect(ASCII.minus, "'-' after month")
        let year = try digits(4, "year")
        try expect(ASCII.space, "SP after year")
        let hour = try digits(2, "hour")
        try expect(ASCII.colon, "':' after hour")
        let minute = try digits(2, "minute")
        try expect(ASCII.colon, "':' after minute")
        let second = try digits(2, "second")
        try expect(ASCII.space, "SP before zone")
        guard i < b.count, b[i] == ASCII.plus || b[i] == ASCII.minus else { throw fail("expected '+' or '-' in zone") }
        let negative = b[i] == ASCII.minus
        i += 1
        let zoneHours = try digits(2, "zone")
        let zoneMins = try digits(2, "zone")
        guard i == b.count else { throw fail("unexpected text after zone") }
        let month = monthIndex + 1
        guard year >= 1, day >= 1, day <= InternalDate.daysInMonth(year: year, month: month) else { throw fail("day out of range") }
        guard hour < 24, minute < 60, second <= 60 else { throw fail("time out of range") }
        guard zoneHours < 24, zoneMins < 60 else { throw fail("zone out of range") }
        let zone = (zoneHours * 60 + zoneMins) * (negative ? -1 : 1)
        self.init(year: year, month: month, day: day, hour: hour, minute: minute, second: second, zoneMinutes: zone)
    }

    /// `17-Jul-1996 02:44:25 -0700` in the date's own zone (no quotes).
    public var imapDateTime: String {
        let local = secondsSinceEpoch + Int64(zoneMinutes) * 60
        var days = local / 86_400
        var secs = local % 86_400
        if secs < 0 { secs += 86_400; days -= 1 }
        let (y, m, d) = InternalDate.civilFromDays(days)
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: Swift.max(0, width - s.count)) + s
        }
        let zone = abs(zoneMinutes)
        return "\(pad(d, 2))-\(InternalDate.monthNames[m - 1])-\(pad(y, 4)) "
            + "\(pad(Int(secs / 3600), 2)):\(pad(Int(secs % 3600 / 60), 2)):\(pad(Int(secs % 60), 2)) "
            + "\(zoneMinutes < 0 ? "-" : "+")\(pad(zone / 60, 2))\(pad(zone % 60, 2))"
    }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ days: Int64) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (Int(yoe + era * 400 + (m <= 2 ? 1 : 0)), Int(m), Int(d))
    }
}
