import IMAPCodec
import NIOCore

func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

/// Feeds `text` in one piece and drains every event.
func parseAll(_ text: String, greeting: Bool = false, limits: ParserLimits = .default) throws -> [ResponseEvent] {
    try parseChunks([Array(text.utf8)], greeting: greeting, limits: limits)
}

func parseChunks(_ chunks: [[UInt8]], greeting: Bool = false, limits: ParserLimits = .default) throws -> [ResponseEvent] {
    var parser = ResponseParser(limits: limits, expectGreeting: greeting)
    var events: [ResponseEvent] = []
    for chunk in chunks {
        parser.append(buffer(chunk))
        while let event = try parser.next() { events.append(event) }
    }
    return events
}

/// The same input fed one byte at a time.
func parseByteByByte(_ text: String, greeting: Bool = false, limits: ParserLimits = .default) throws -> [ResponseEvent] {
    try parseChunks(Array(text.utf8).map { [$0] }, greeting: greeting, limits: limits)
}

/// Joins consecutive `.bodyBytes` so event lists from different chunkings compare equal.
func mergingBodyBytes(_ events: [ResponseEvent]) -> [ResponseEvent] {
    var out: [ResponseEvent] = []
    for event in events {
        if case .fetch(.bodyBytes(let next)) = event, case .fetch(.bodyBytes(var previous))? = out.last {
            previous.writeImmutableBuffer(next)
            out[out.count - 1] = .fetch(.bodyBytes(previous))
        } else {
            out.append(event)
        }
    }
    return out
}

func untagged(_ text: String) throws -> UntaggedResponse? {
    guard case .untagged(let u)? = try parseAll(text).first else { return nil }
    return u
}

func name(_ text: String) -> MailboxName { MailboxName(wireBytes: Array(text.utf8)) }

/// Parses expecting a failure and returns it.
func parseError(_ text: String, greeting: Bool = false, limits: ParserLimits = .default) -> IMAPParseError? {
    parseError(bytes: Array(text.utf8), greeting: greeting, limits: limits)
}

func parseError(bytes: [UInt8], greeting: Bool = false, limits: ParserLimits = .default) -> IMAPParseError? {
    var parser = ResponseParser(limits: limits, expectGreeting: greeting)
    parser.append(buffer(bytes))
    do {
        while try parser.next() != nil {}
        return nil
    } catch {
        return error
    }
}
