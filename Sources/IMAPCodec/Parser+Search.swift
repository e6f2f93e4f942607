import NIOCore

// Sets of messages in responses: sequence sets (RFC 3501 §9), SEARCH,
// ESEARCH (RFC 4731) and VANISHED (RFC 7162 §3.2.10).

extension Cursor {
    /// sequence-set = (seq-number / seq-range) ["," sequence-set]
    /// seq-range    = seq-number ":" seq-number
    /// seq-number   = nz-number / "*"
    /// Ranges may be written high-to-low (`5:3`); they are normalised.
    mutating func parseSequenceSet(_ what: String) throws(IMAPParseError) -> UIDSet {
        var ranges: [ClosedRange<UInt32>] = []
        repeat {
            try checkListLength(ranges.count + 1, "\(what) sequence set")
            let low = try parseSeqNumber(what)
            var high = low
            if skipOptional(ASCII.colon) { high = try parseSeqNumber(what) }
            ranges.append(Swift.min(low, high)...Swift.max(low, high))
        } while skipOptional(ASCII.comma)
        return UIDSet(ranges: ranges)
    }

    mutating func parseSeqNumber(_ what: String) throws(IMAPParseError) -> UInt32 {
        if skipOptional(ASCII.star) { return UInt32.max }
        return try readNumber32(what)
    }

    /// mailbox-data =/ "SEARCH" *(SP nz-number) [SP "(" "MODSEQ" SP mod-sequence-value ")"]
    /// (trailing spaces, as sent by several servers, are accepted)
    mutating func parseSearchResponse() throws(IMAPParseError) -> UntaggedResponse {
        var numbers: [UInt32] = []
        var modSeq: UInt64?
        while peek() == ASCII.space {
            skipSpaces()
            guard let b = peek() else { break }
            if ASCII.isDigit(b) {
                numbers.append(try readNumber32("SEARCH result"))
                try checkListLength(numbers.count, "SEARCH result")
            } else if b == ASCII.openParen {
                advance()
                skipSpaces()
                guard tryKeyword("MODSEQ") else { throw error("expected MODSEQ in SEARCH result") }
                try expectSpace("expected SP after MODSEQ")
                modSeq = try readNumber64("SEARCH MODSEQ")
                skipSpaces()
                try expect(ASCII.closeParen, "expected ')' after SEARCH MODSEQ")
            } else {
                break
            }
        }
        return .search(numbers, modSeq: modSeq)
    }

    /// esearch-response  = "ESEARCH" [search-correlator] [SP "UID"] *(SP search-return-data)
    /// search-correlator = SP "(" "TAG" SP tag-string ")"
    /// search-return-data = "MIN" SP nz-number / "MAX" SP nz-number / "ALL" SP sequence-set /
    ///                      "COUNT" SP number / "MODSEQ" SP mod-sequence-value / search-modifier-name SP search-return-value
    mutating func parseESearchResponse() throws(IMAPParseError) -> ESearchResponse {
        var result = ESearchResponse()
        if peek() == ASCII.space, peek(1) == ASCII.openParen {
            skipSpaces()
            advance()
            try enterList()
            skipSpaces()
            guard tryKeyword("TAG") else { throw error("expected TAG in ESEARCH correlator") }
            try expectSpace("expected SP after TAG")
            result.correlator = String(buffer: try readAString("ESEARCH correlator"))
            skipSpaces()
            try expect(ASCII.closeParen, "expected ')' after ESEARCH correlator")
            leaveList()
        }
        var items = 0
        while peek() == ASCII.space {
            skipSpaces()
            guard let b = peek(), b != ASCII.cr else { break }
            items += 1
            try checkListLength(items, "ESEARCH data")
            let r = try readAtom("ESEARCH return data")
            let name = upperString(r)
            if name == "UID" { result.uid = true; continue }
            try expectSpace("expected SP after ESEARCH \(name)")
            switch name {
            case "MIN": result.min = try readNumber32("ESEARCH MIN")
            case "MAX": result.max = try readNumber32("ESEARCH MAX")
            case "COUNT": result.count = try readNumber32("ESEARCH COUNT")
            case "ALL": result.all = try parseSequenceSet("ESEARCH ALL")
            case "MODSEQ": result.modSeq = try readNumber64("ESEARCH MODSEQ")
            default:
                var ignored = ""
                try readGenericValue(into: &ignored)
            }
        }
        return result
    }

    /// expunged-resp = "VANISHED" [SP "(EARLIER)"] SP known-uids
    mutating func parseVanished() throws(IMAPParseError) -> UntaggedResponse {
        var earlier = false
        if skipOptional(ASCII.openParen) {
            skipSpaces()
            guard tryKeyword("EARLIER") else { throw error("expected (EARLIER) after VANISHED") }
            skipSpaces()
            try expect(ASCII.closeParen, "expected ')' after VANISHED (EARLIER")
            try expectSpace("expected SP after VANISHED (EARLIER)")
            earlier = true
        }
        return .vanished(try parseSequenceSet("VANISHED"), earlier: earlier)
    }
}
