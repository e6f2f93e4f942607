import NIOCore

// Mailbox-level data: LIST/LSUB (RFC 3501, 5258, 6154), STATUS (RFC 3501, 7162),
// NAMESPACE (RFC 2342).

extension Cursor {
    /// mailbox-list   = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox
    ///                  [SP mbox-list-extended]
    /// mbox-list-extended = "(" [mbox-list-extended-item *(SP mbox-list-extended-item)] ")"
    /// mbox-list-extended-item = mbox-list-extended-item-tag SP tagged-ext-val
    mutating func parseMailboxList() throws(IMAPParseError) -> MailboxListEntry {
        var attributes = Set<MailboxAttribute>()
        try parseList("mailbox attribute list") { (c: inout Cursor) throws(IMAPParseError) in
            let r = try c.readLiberalAtom("mailbox attribute")
            attributes.insert(MailboxAttribute(c.string(r)))
        }
        try expectSpace("expected SP after mailbox attributes")
        let delimiter = try parseDelimiter()
        try expectSpace("expected SP after hierarchy delimiter")
        let name = try parseMailbox()
        var extended: [String: String] = [:]
        if peek() == ASCII.space, peek(1) == ASCII.openParen {
            skipSpaces()
            try expect(ASCII.openParen, "expected '(' starting LIST extended data")
            try enterList()
            skipSpaces()
            var count = 0
            while peek() != ASCII.closeParen {
                guard !isAtEnd, peek() != ASCII.cr else { throw error("unterminated LIST extended data") }
                count += 1
                try checkListLength(count, "LIST extended data")
                let tag = try readAString("LIST extended item tag")
                try expectSpace("expected SP after LIST extended item tag")
                var value = ""
                try readGenericValue(into: &value)
                extended[String(buffer: tag).uppercased()] = value
                skipSpaces()
            }
            advance()
            leaveList()
        }
        return MailboxListEntry(attributes: attributes, delimiter: delimiter, name: name, extendedData: extended)
    }

    /// DQUOTE QUOTED-CHAR DQUOTE / nil
    mutating func parseDelimiter() throws(IMAPParseError) -> Character? {
        if tryKeyword("NIL") { return nil }
        let bytes = try readQuoted()
        guard bytes.readableBytes == 1, let b = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self), b < 0x80 else {
            throw error("hierarchy delimiter must be a single ASCII character or NIL")
        }
        return Character(Unicode.Scalar(b))
    }

    /// mailbox = "INBOX" / astring — kept as wire bytes (see `MailboxName`).
    mutating func parseMailbox() throws(IMAPParseError) -> MailboxName {
        let bytes = try readAString("mailbox name")
        return MailboxName(wireBytes: Array(buffer: bytes))
    }

    /// mailbox-data   =/ "STATUS" SP mailbox SP "(" [status-att-list] ")"
    /// status-att-list = status-att-val *(SP status-att-val)
    /// status-att-val = ("MESSAGES" / "RECENT" / "UIDNEXT" / "UIDVALIDITY" / "UNSEEN" / "DELETED") SP number /
    ///                  ("SIZE" SP number64) / ("HIGHESTMODSEQ" SP mod-sequence-value)
    /// Unknown items (MAILBOXID, X-GUID…) are skipped.
    mutating func parseStatusResponse() throws(IMAPParseError) -> (MailboxName, MailboxStatus) {
        let name = try parseMailbox()
        try expectSpace("expected SP after STATUS mailbox")
        var status = MailboxStatus()
        try parseList("STATUS attribute list") { (c: inout Cursor) throws(IMAPParseError) in
            let r = try c.readAtom("STATUS attribute")
            let key = c.upperString(r)
            try c.expectSpace("expected SP after STATUS attribute \(key)")
            switch key {
            case "MESSAGES": status.messages = try c.readNumber32("STATUS MESSAGES")
            case "RECENT": status.recent = try c.readNumber32("STATUS RECENT")
            case "UIDNEXT": status.uidNext = try c.readNumber32("STATUS UIDNEXT")
            case "UIDVALIDITY": status.uidValidity = try c.readNumber32("STATUS UIDVALIDITY")
            case "UNSEEN": status.unseen = try c.readNumber32("STATUS UNSEEN")
            case "DELETED": status.deleted = try c.readNumber32("STATUS DELETED")
            case "SIZE": status.size = try c.readNumber64("STATUS SIZE")
            case "HIGHESTMODSEQ": status.highestModSeq = try c.readNumber64("STATUS HIGHESTMODSEQ")
            default:
                var ignored = ""
                try c.readGenericValue(into: &ignored)
            }
        }
        return (name, status)
    }

    /// namespace-response = "NAMESPACE" SP namespace SP namespace SP namespace
    /// namespace          = nil / "(" 1*namespace-descr ")"
    /// namespace-descr    = "(" string SP (DQUOTE QUOTED-CHAR DQUOTE / nil) [namespace-response-extensions] ")"
    mutating func parseNamespaceResponse() throws(IMAPParseError) -> NamespaceResponse {
        let personal = try parseNamespace()
        try expectSpace("expected SP after personal namespace")
        let other = try parseNamespace()
        try expectSpace("expected SP after other users' namespace")
        let shared = try parseNamespace()
        return NamespaceResponse(personal: personal, otherUsers: other, shared: shared)
    }

    mutating func parseNamespace() throws(IMAPParseError) -> [NamespaceDescription] {
        if tryKeyword("NIL") { return [] }
        var result: [NamespaceDescription] = []
        try expect(ASCII.openParen, "expected '(' or NIL in NAMESPACE")
        try enterList()
        skipSpaces()
        while peek() == ASCII.openParen {
            try checkListLength(result.count + 1, "NAMESPACE list")
            advance()
            try enterList()
            let prefix = String(buffer: try readString("namespace prefix"))
            try expectSpace("expected SP after namespace prefix")
            let delimiter = try parseDelimiter()
            // namespace-response-extension = SP string SP "(" string *(SP string) ")"
            while peek() == ASCII.space {
                skipSpaces()
                if peek() == ASCII.closeParen { break }
                var ignored = ""
                try readGenericValue(into: &ignored)
            }
            try expect(ASCII.closeParen, "expected ')' ending namespace description")
            leaveList()
            result.append(NamespaceDescription(prefix: prefix, delimiter: delimiter))
            skipSpaces()
        }
        try expect(ASCII.closeParen, "expected ')' ending namespace list")
        leaveList()
        return result
    }
}
