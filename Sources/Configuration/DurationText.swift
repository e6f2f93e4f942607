/// The duration notation used in the configuration: one or more
/// `<integer><unit>` components, largest unit first, e.g. `30s`, `5m`, `1h30m`,
/// `1d12h`, `250ms`. Units: `d`, `h`, `m`, `s`, `ms`.
///
/// Only whole numbers are accepted (`1h30m`, not `1.5h`) so every value has
/// exactly one obvious meaning, and a unit is mandatory because a bare `300`
/// could equally mean seconds or minutes.
public enum DurationText {
    /// The units in the order they must appear, with their length in milliseconds.
    static let units: [(symbol: String, milliseconds: Int64)] = [
        ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1),
    ]

    /// Parses `text`, or returns `nil` when it is not in the notation above
    /// (including zero-length text, repeated or out-of-order units, overflow).
    public static func parse(_ text: String) -> Duration? {
        let scalars = Array(text.unicodeScalars)
        var index = 0
        var totalMilliseconds: Int64 = 0
        var lastUnitRank = -1
        var sawComponent = false

        while index < scalars.count {
            if scalars[index] == " " {
                index += 1
                continue
            }
            var number: Int64 = 0
            var digits = 0
            while index < scalars.count, (48...57).contains(scalars[index].value) {
                let digit = Int64(scalars[index].value - 48)
                let (shifted, overflow1) = number.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = shifted.addingReportingOverflow(digit)
                if overflow1 || overflow2 { return nil }
                number = sum
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
            var symbol = ""
            while index < scalars.count, ("a"..."z").contains(scalars[index]) {
                symbol.unicodeScalars.append(scalars[index])
                index += 1
            }
            guard let rank = units.firstIndex(where: { $0.symbol == symbol }), rank > lastUnitRank else {
                return nil
            }
            let (scaled, overflow1) = number.multipliedReportingOverflow(by: units[rank].milliseconds)
            let (sum, overflow2) = totalMilliseconds.addingReportingOverflow(scaled)
            if overflow1 || overflow2 { return nil }
            totalMilliseconds = sum
            lastUnitRank = rank
            sawComponent = true
        }
        guard sawComponent else { return nil }
        return .milliseconds(totalMilliseconds)
    }

    /// Formats `duration` in the same notation (`1h30m`, `0s`), rounding below a
    /// millisecond, so descriptions show values the way the user wrote them.
    public static func format(_ duration: Duration) -> String {
        let components = duration.components
        var remaining = components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000
        if remaining == 0 { return "0s" }
        var text = ""
        if remaining < 0 {
            text = "-"
            remaining = remaining == .min ? .max : -remaining
        }
        for unit in units where remaining >= unit.milliseconds {
            text += "\(remaining / unit.milliseconds)\(unit.symbol)"
            remaining %= unit.milliseconds
        }
        return text
    }
}
