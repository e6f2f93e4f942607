/// Positions of keys and table headers in TOML text.
///
/// TOMLKit 0.6.0 hands back values without toml++'s source regions, yet every
/// semantic error must point at a line. This scanner walks the (already
/// successfully parsed) text once, tracking table headers, arrays of tables,
/// inline tables, arrays, strings and comments, and records where each key
/// path first appears. Elements of arrays of tables (`[[account]]`) and of
/// inline arrays get an index component, so the second account's `host` is
/// `["account", "#1", "host"]`.
struct SourceLocator {
    struct Position: Equatable {
        var line: Int
        var column: Int
    }

    private(set) var positions: [[String]: Position] = [:]

    /// TOML bare-key characters: `A-Za-z0-9_-`.
    static func isBareKeyScalar(_ scalar: Unicode.Scalar) -> Bool {
        ("A"..."Z").contains(scalar) || ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar)
            || scalar == "_" || scalar == "-"
    }

    /// The path component for element `index` (0-based) of an array.
    static func element(_ index: Int) -> String { "\u{1}#\(index)" }

    init(text: String) {
        var scanner = Scanner(scalars: Array(text.unicodeScalars))
        scanner.run()
        positions = scanner.positions
    }

    /// Where `path` is written, or where its closest written ancestor is (a
    /// missing key is reported at its table's header; a key of an inline table
    /// the scanner could not see, at the key holding the table).
    func nearest(_ path: [String]) -> Position? {
        var path = path
        while !path.isEmpty {
            if let position = positions[path] { return position }
            path.removeLast()
        }
        return nil
    }

    func exact(_ path: [String]) -> Position? { positions[path] }

    private enum Context {
        case array(path: [String], index: Int)
        case inlineTable(path: [String])
    }

    private struct Scanner {
        let scalars: [Unicode.Scalar]
        var index = 0
        var line = 1
        var column = 1
        var positions: [[String]: Position] = [:]
        var tablePath: [String] = []
        /// Number of elements seen so far per array-of-tables path.
        var arrayTableCounts: [[String]: Int] = [:]
        var stack: [Context] = []
        var expectKey = true
        /// The path of the key whose value comes next.
        var valuePath: [String] = []

        init(scalars: [Unicode.Scalar]) { self.scalars = scalars }

        var current: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }

        func peek(_ offset: Int) -> Unicode.Scalar? {
            index + offset < scalars.count ? scalars[index + offset] : nil
        }

        mutating func advance() {
            guard let scalar = current else { return }
            index += 1
            if scalar == "\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }

        mutating func record(_ path: [String], _ position: Position) {
            if positions[path] == nil { positions[path] = position }
        }

        static func isBareKey(_ scalar: Unicode.Scalar) -> Bool { SourceLocator.isBareKeyScalar(scalar) }

        mutating func skipBlanks() {
            while let scalar = current, scalar == " " || scalar == "\t" { advance() }
        }

        mutating func run() {
            while let scalar = current {
                switch scalar {
                case "\n":
                    advance()
                    if stack.isEmpty { expectKey = true }
                case " ", "\t", "\r":
                    advance()
                case "#":
                    while let next = current, next != "\n" { advance() }
                case "[" where stack.isEmpty && expectKey:
                    readHeader()
                case _ where expectKey && (Self.isBareKey(scalar) || scalar == "\"" || scalar == "'")
                    && (stack.isEmpty || isInInlineTable):
                    readKeyValueStart()
                case "\"", "'":
                    _ = readString()
                case "[":
                    stack.append(.array(path: nestedValuePath(), index: 0))
                    advance()
                case "{":
                    stack.append(.inlineTable(path: nestedValuePath()))
                    expectKey = true
                    advance()
                case "]", "}":
                    if !stack.isEmpty { stack.removeLast() }
                    advance()
                case ",":
                    if case .array(let path, let elementIndex)? = stack.last {
                        stack[stack.count - 1] = .array(path: path, index: elementIndex + 1)
                    } else if isInInlineTable {
                        expectKey = true
                    }
                    advance()
                default:
                    advance()
                }
            }
        }

        var isInInlineTable: Bool {
            if case .inlineTable? = stack.last { return true }
            return false
        }

        /// The path of a value opened here: inside an array, the current element;
        /// otherwise the key just read.
        func nestedValuePath() -> [String] {
            if case .array(let path, let elementIndex)? = stack.last {
                return path + [SourceLocator.element(elementIndex)]
            }
            return valuePath
        }

        mutating func readHeader() {
            let position = Position(line: line, column: column)
            advance()
            let isArrayTable = current == "["
            if isArrayTable { advance() }
            let segments = readKeySegments()
            // Resolve parents that are arrays of tables to their latest element.
            var path: [String] = []
            for (offset, segment) in segments.enumerated() {
                path.append(segment)
                let isLast = offset == segments.count - 1
                if isLast && isArrayTable {
                    let count = arrayTableCounts[path, default: 0]
                    arrayTableCounts[path] = count + 1
                    record(path, position)
                    path.append(SourceLocator.element(count))
                } else if let count = arrayTableCounts[path] {
                    path.append(SourceLocator.element(count - 1))
                }
            }
            record(path, position)
            tablePath = path
            while let scalar = current, scalar != "\n", scalar != "#" { advance() }
            expectKey = true
        }

        mutating func readKeyValueStart() {
            let position = Position(line: line, column: column)
            let segments = readKeySegments()
            let base: [String]
            if case .inlineTable(let path)? = stack.last { base = path } else { base = tablePath }
            for length in 1...max(segments.count, 1) where length <= segments.count {
                record(base + segments.prefix(length), position)
            }
            valuePath = base + segments
            expectKey = false
            skipBlanks()
            if current == "=" { advance() }
        }

        mutating func readKeySegments() -> [String] {
            var segments: [String] = []
            while true {
                skipBlanks()
                guard let scalar = current else { break }
                if scalar == "\"" || scalar == "'" {
                    segments.append(readString())
                } else if Self.isBareKey(scalar) {
                    var segment = ""
                    while let next = current, Self.isBareKey(next) {
                        segment.unicodeScalars.append(next)
                        advance()
                    }
                    segments.append(segment)
                } else {
                    break
                }
                skipBlanks()
                guard current == "." else { break }
                advance()
            }
            return segments
        }

        /// Consumes a string of any of the four TOML kinds starting at the
        /// current quote and returns its (unescaped, for basic strings) content.
        mutating func readString() -> String {
            guard let quote = current else { return "" }
            let isLiteral = quote == "'"
            let isMultiline = peek(1) == quote && peek(2) == quote
            var content = ""
            if isMultiline {
                advance(); advance(); advance()
                while let scalar = current {
                    if scalar == quote && peek(1) == quote && peek(2) == quote {
                        // Up to two quotes may directly precede the closing delimiter.
                        var extra = 0
                        while peek(3 + extra) == quote && extra < 2 { extra += 1 }
                        for _ in 0..<extra {
                            content.unicodeScalars.append(quote)
                            advance()
                        }
                        advance(); advance(); advance()
                        return content
                    }
                    if !isLiteral && scalar == "\\" {
                        advance()
                        if let escaped = current { content.unicodeScalars.append(escaped) }
                        advance()
                        continue
                    }
                    content.unicodeScalars.append(scalar)
                    advance()
                }
                return content
            }
            advance()
            while let scalar = current, scalar != quote, scalar != "\n" {
                if !isLiteral && scalar == "\\" {
                    advance()
                    content.unicodeScalars.append(contentsOf: readEscape())
                    continue
                }
                content.unicodeScalars.append(scalar)
                advance()
            }
            if current == quote { advance() }
            return content
        }

        /// Decodes the escape after a backslash, so quoted keys with escapes
        /// still match the keys TOMLKit reports.
        mutating func readEscape() -> [Unicode.Scalar] {
            guard let scalar = current else { return [] }
            advance()
            switch scalar {
            case "n": return ["\n"]
            case "t": return ["\t"]
            case "r": return ["\r"]
            case "b": return ["\u{8}"]
            case "f": return ["\u{C}"]
            case "e": return ["\u{1B}"]
            case "u", "U":
                let length = scalar == "u" ? 4 : 8
                var hex = ""
                for _ in 0..<length {
                    guard let digit = current else { break }
                    hex.unicodeScalars.append(digit)
                    advance()
                }
                if let value = UInt32(hex, radix: 16), let decoded = Unicode.Scalar(value) { return [decoded] }
                return []
            default: return [scalar]
            }
        }
    }
}
