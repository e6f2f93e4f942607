/// Bounds on everything a server can make the parser hold in memory. FETCH body
/// literals are streamed and therefore not limited; every other unbounded item is.
public struct ParserLimits: Sendable, Hashable {
    /// Longest response line, counting only its non-literal parts. For FETCH this
    /// applies to each line between body literals, because the parser never holds
    /// more than one of them.
    public var maxLineLength: Int
    /// Largest literal outside a FETCH body (mailbox names in LIST, ID values…);
    /// also bounds the sum of such literals within one response.
    public var maxNonBodyLiteralSize: Int
    /// Deepest parenthesised nesting (BODYSTRUCTURE, extension data).
    public var maxNestingDepth: Int
    /// Most items in one list: flags, capabilities, SEARCH results, ranges of a sequence set.
    public var maxListLength: Int
    /// Largest single `.bodyBytes` event.
    public var maxBodyChunk: Int

    public init(maxLineLength: Int = 64 * 1024, maxNonBodyLiteralSize: Int = 1024 * 1024,
                maxNestingDepth: Int = 64, maxListLength: Int = 100_000, maxBodyChunk: Int = 64 * 1024) {
        self.maxLineLength = maxLineLength
        self.maxNonBodyLiteralSize = maxNonBodyLiteralSize
        self.maxNestingDepth = maxNestingDepth
        self.maxListLength = maxListLength
        self.maxBodyChunk = Swift.max(1, maxBodyChunk)
    }

    public static let `default` = ParserLimits()
}
