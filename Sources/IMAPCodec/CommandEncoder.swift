import NIOCore

/// Turns a `Command` into wire chunks for one server, choosing literal forms
/// from its capabilities (LITERAL+, LITERAL-, or synchronizing literals).
public struct CommandEncoder: Sendable {
    public var capabilities: Set<Capability>
    public var mailboxNameEncoding: MailboxNameEncoding

    public init(capabilities: Set<Capability>, mailboxNameEncoding: MailboxNameEncoding = .modifiedUTF7) {
        self.capabilities = capabilities
        self.mailboxNameEncoding = mailboxNameEncoding
    }

    var literalMode: LiteralMode {
        if capabilities.contains(.literalPlus) { return .plus }
        if capabilities.contains(.literalMinus) { return .minus }
        return .synchronizing
    }

    public func encode(_ command: Command, tag: Tag) throws(IMAPEncodeError) -> EncodedCommand {
        var w = CommandWriter(literalMode: literalMode, utf8Quoted: mailboxNameEncoding == .utf8)
        if case .done = command {
            w.raw("DONE")
            w.endLine()
            return w.finish()
        }
        try validateTag(tag)
        w.raw(tag)
        w.space()
        try encodeBody(command, into: &w)
        w.endLine()
        return w.finish()
    }

    /// A line answering an AUTHENTICATE continuation (already base64, or `*`
    /// to cancel). Logged as `[credentials]`.
    public func encodeAuthenticationResponse(_ base64: String) throws(IMAPEncodeError) -> EncodedCommand {
        var w = CommandWriter(literalMode: literalMode, utf8Quoted: false)
        let bytes = Array(base64.utf8)
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw IMAPEncodeError("AUTHENTICATE response must be base64 text without spaces or line breaks")
        }
        w.rawBytes(bytes, log: "[credentials]")
        w.endLine()
        return w.finish()
    }

    // tag = 1*<any ASTRING-CHAR except "+">
    private func validateTag(_ tag: Tag) throws(IMAPEncodeError) {
        let bytes = Array(tag.utf8)
        guard !bytes.isEmpty, bytes.allSatisfy({ ASCII.isAStringChar($0) && $0 != ASCII.plus }) else {
            throw IMAPEncodeError("tag \"\(tag)\" must be non-empty ASTRING-CHARs without '+'")
        }
    }

    private func encodeBody(_ command: Command, into w: inout CommandWriter) throws(IMAPEncodeError) {
        switch command {
        case .capability: w.raw("CAPABILITY")
        case .noop: w.raw("NOOP")
        case .logout: w.raw("LOGOUT")
        case .startTLS: w.raw("STARTTLS")
        case .namespace: w.raw("NAMESPACE")
        case .close: w.raw("CLOSE")
        case .unselect: w.raw("UNSELECT")
        case .expunge: w.raw("EXPUNGE")
        case .idle: w.raw("IDLE")
        case .compress: w.raw("COMPRESS DEFLATE")
        case .done: w.raw("DONE")

        // login = "LOGIN" SP userid SP password
        case .login(let username, let password):
            w.raw("LOGIN ")
            try w.astring(Array(username.utf8), "LOGIN user name")
            w.space()
            try w.astring(Array(password.utf8), "LOGIN password", redaction: .password)

        // authenticate = "AUTHENTICATE" SP auth-type [SP (base64 / "=")]   (RFC 4959)
        case .authenticate(let mechanism, let initialResponse):
            try requireAtom(mechanism, "AUTHENTICATE mechanism")
            w.raw("AUTHENTICATE \(mechanism)")
            if let initialResponse {
                guard capabilities.contains(.saslIR) else {
                    throw IMAPEncodeError("the server does not advertise SASL-IR; send AUTHENTICATE without an initial response and answer the '+' continuation with encodeAuthenticationResponse")
                }
                let bytes = Array(initialResponse.utf8)
                guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                    throw IMAPEncodeError("AUTHENTICATE initial response must be base64 text")
                }
                w.raw(" ")
                w.rawBytes(bytes.isEmpty ? [0x3D] : bytes, log: "[credentials]")
            }

        // enable = "ENABLE" 1*(SP capability)
        case .enable(let caps):
            guard !caps.isEmpty else { throw IMAPEncodeError("ENABLE needs at least one capability") }
            w.raw("ENABLE")
            for cap in caps {
                try requireAtom(cap.name, "ENABLE capability")
                w.raw(" \(cap.name)")
            }

        // id = "ID" SP id-params-list ; id-params-list = "(" *(string SP nstring) ")" / nil
        case .id(let parameters):
            w.raw("ID ")
            guard let parameters, !parameters.isEmpty else { w.raw("NIL"); return }
            w.raw("(")
            for (i, (key, value)) in parameters.enumerated() {
                if i > 0 { w.space() }
                try w.string(Array(key.utf8), "ID field name")
                w.space()
                try w.string(Array(value.utf8), "ID field value")
            }
            w.raw(")")

        // list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
        case .list(let reference, let pattern, let options):
            w.raw("LIST ")
            var selection: [String] = []
            if options.selectSubscribed { selection.append("SUBSCRIBED") }
            if options.selectSpecialUse { selection.append("SPECIAL-USE") }
            if !selection.isEmpty { w.raw("(\(selection.joined(separator: " "))) ") }
            try w.string(reference.wireBytes, "LIST reference")
            w.space()
            try listPattern(pattern, into: &w)
            var returns: [String] = []
            if options.returnSubscribed { returns.append("SUBSCRIBED") }
            if options.returnChildren { returns.append("CHILDREN") }
            if options.returnSpecialUse { returns.append("SPECIAL-USE") }
            if !options.returnStatus.isEmpty {
                returns.append("STATUS (\(options.returnStatus.map(\.rawValue).joined(separator: " ")))")
            }
            if !returns.isEmpty { w.raw(" RETURN (\(returns.joined(separator: " ")))") }

        case .lsub(let reference, let pattern):
            w.raw("LSUB ")
            try w.string(reference.wireBytes, "LSUB reference")
            w.space()
            try listPattern(pattern, into: &w)

        // status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"
        case .status(let mailbox, let attributes):
            guard !attributes.isEmpty else { throw IMAPEncodeError("STATUS needs at least one attribute") }
            w.raw("STATUS ")
            try self.mailbox(mailbox, into: &w)
            w.raw(" (\(attributes.map(\.rawValue).joined(separator: " ")))")

        // select = "SELECT" SP mailbox [select-params]   (RFC 4466, 7162)
        case .select(let mailbox, let parameters):
            w.raw("SELECT ")
            try self.mailbox(mailbox, into: &w)
            try selectParameters(parameters, into: &w)
        case .examine(let mailbox, let parameters):
            w.raw("EXAMINE ")
            try self.mailbox(mailbox, into: &w)
            try selectParameters(parameters, into: &w)

        // create = "CREATE" SP mailbox [create-params] ; "USE" SP "(" use-attr *(SP use-attr) ")"  (RFC 6154)
        case .create(let mailbox, let specialUse):
            w.raw("CREATE ")
            try self.mailbox(mailbox, into: &w)
            if !specialUse.isEmpty {
                for attribute in specialUse {
                    try requireFlagSyntax(attribute.rawValue, "CREATE USE attribute")
                }
                w.raw(" (USE (\(specialUse.map(\.rawValue).joined(separator: " "))))")
            }
        case .delete(let mailbox):
            w.raw("DELETE ")
            try self.mailbox(mailbox, into: &w)
        case .rename(let from, let to):
            w.raw("RENAME ")
            try self.mailbox(from, into: &w)
            w.space()
            try self.mailbox(to, into: &w)
        case .subscribe(let mailbox):
            w.raw("SUBSCRIBE ")
            try self.mailbox(mailbox, into: &w)
        case .unsubscribe(let mailbox):
            w.raw("UNSUBSCRIBE ")
            try self.mailbox(mailbox, into: &w)

        case .uidExpunge(let set):
            w.raw("UID EXPUNGE \(try sequenceSet(set))")

        // fetch = "FETCH" SP sequence-set SP ("(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]
        // fetch-modifier = "CHANGEDSINCE" SP mod-sequence-value / "VANISHED"   (RFC 7162)
        case .uidFetch(let set, let items, let changedSince, let vanished):
            guard !items.isEmpty else { throw IMAPEncodeError("UID FETCH needs at least one item") }
            w.raw("UID FETCH \(try sequenceSet(set)) (")
            for (i, item) in items.enumerated() {
                if i > 0 { w.space() }
                w.raw(try fetchItem(item))
            }
            w.raw(")")
            if let changedSince {
                w.raw(" (CHANGEDSINCE \(changedSince)\(vanished ? " VANISHED" : ""))")
            } else if vanished {
                throw IMAPEncodeError("UID FETCH ... VANISHED requires CHANGEDSINCE (RFC 7162 §3.2.6)")
            }

        // search = "SEARCH" [search-return-opts] SP search-program
        case .uidSearch(let key, let returnOptions):
            w.raw("UID SEARCH ")
            if let returnOptions {
                w.raw("RETURN (\(returnOptions.map(\.rawValue).joined(separator: " "))) ")
            }
            if mailboxNameEncoding != .utf8, key.containsNonASCII {
                w.raw("CHARSET UTF-8 ")
            }
            try searchKey(key, topLevel: true, into: &w)

        // store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags
        case .uidStore(let set, let operation, let flags, let silent, let unchangedSince):
            w.raw("UID STORE \(try sequenceSet(set)) ")
            if let unchangedSince { w.raw("(UNCHANGEDSINCE \(unchangedSince)) ") }
            switch operation {
            case .add: w.raw("+FLAGS")
            case .remove: w.raw("-FLAGS")
            case .replace: w.raw("FLAGS")
            }
            if silent { w.raw(".SILENT") }
            w.raw(" \(try flagList(flags))")

        case .uidCopy(let set, let mailbox):
            w.raw("UID COPY \(try sequenceSet(set)) ")
            try self.mailbox(mailbox, into: &w)
        case .uidMove(let set, let mailbox):
            w.raw("UID MOVE \(try sequenceSet(set)) ")
            try self.mailbox(mailbox, into: &w)

        // append = "APPEND" SP mailbox 1*append-message          (RFC 3502 MULTIAPPEND)
        // append-message = [SP flag-list] [SP date-time] SP literal
        case .append(let mailbox, let messages):
            guard !messages.isEmpty else { throw IMAPEncodeError("APPEND needs at least one message") }
            if messages.count > 1, !capabilities.contains(.multiAppend) {
                throw IMAPEncodeError("APPEND of \(messages.count) messages needs MULTIAPPEND, which the server does not advertise; send one APPEND per message")
            }
            w.raw("APPEND ")
            try self.mailbox(mailbox, into: &w)
            for (index, message) in messages.enumerated() {
                if !message.flags.isEmpty { w.raw(" \(try flagList(message.flags))") }
                if let date = message.internalDate { w.raw(" \"\(date.imapDateTime)\"") }
                w.space()
                w.appendBody(index: index, size: message.size)
            }

        // notify = "NOTIFY" SP (notify-set / notify-none)   (RFC 5465)
        // notify-set = "SET" [status-indicator] SP event-groups
        case .notify(let status, let groups):
            guard !groups.isEmpty else { w.raw("NOTIFY NONE"); return }
            w.raw(status ? "NOTIFY SET STATUS" : "NOTIFY SET")
            for group in groups {
                w.raw(" (")
                try notifyFilter(group.filter, into: &w)
                w.space()
                if group.events.isEmpty {
                    w.raw("NONE")
                } else {
                    w.raw("(")
                    for (i, event) in group.events.enumerated() {
                        if i > 0 { w.space() }
                        w.raw(event.rawValue)
                        if event == .messageNew, !group.messageNewFetch.isEmpty {
                            w.raw(" (\(try group.messageNewFetch.map { (item) throws(IMAPEncodeError) in try fetchItem(item) }.joined(separator: " ")))")
                        }
                    }
                    w.raw(")")
                }
                w.raw(")")
            }
        }
    }

    // MARK: - Pieces

    /// mailbox = "INBOX" / astring, from the wire bytes chosen by `MailboxName`.
    private func mailbox(_ name: MailboxName, into w: inout CommandWriter) throws(IMAPEncodeError) {
        guard !name.wireBytes.isEmpty else { throw IMAPEncodeError("mailbox name is empty") }
        try w.astring(name.wireBytes, "mailbox name")
    }

    /// list-mailbox = 1*list-char / string — always quoted so `*` and `%` read clearly.
    private func listPattern(_ pattern: MailboxName, into w: inout CommandWriter) throws(IMAPEncodeError) {
        try w.string(pattern.wireBytes, "LIST pattern")
    }

    private func selectParameters(_ p: SelectParameters, into w: inout CommandWriter) throws(IMAPEncodeError) {
        if let q = p.qresync {
            // QRESYNC implies CONDSTORE (RFC 7162 §3.2.5), so it is sent alone.
            w.raw(" (QRESYNC (\(q.uidValidity) \(q.modSeq)")
            if let known = q.knownUIDs { w.raw(" \(try sequenceSet(known))") }
            w.raw("))")
        } else if p.condStore {
            w.raw(" (CONDSTORE)")
        }
    }

    private func sequenceSet(_ set: UIDSet) throws(IMAPEncodeError) -> String {
        guard !set.isEmpty else { throw IMAPEncodeError("an empty UID set cannot be sent; skip the command instead") }
        guard set.min != 0 else { throw IMAPEncodeError("UID 0 is not valid in a sequence set (nz-number)") }
        return set.description
    }

    /// fetch-att, always with PEEK for bodies unless asked otherwise, so sync never sets \Seen.
    private func fetchItem(_ item: FetchItem) throws(IMAPEncodeError) -> String {
        switch item {
        case .uid: return "UID"
        case .flags: return "FLAGS"
        case .internalDate: return "INTERNALDATE"
        case .rfc822Size: return "RFC822.SIZE"
        case .modSeq: return "MODSEQ"
        case .body(let specifier, let peek, let partial):
            try requireSectionSpec(specifier)
            var s = (peek ? "BODY.PEEK[" : "BODY[") + specifier + "]"
            if let partial {
                let (count, overflow) = (partial.upperBound - partial.lowerBound).addingReportingOverflow(1)
                guard !overflow else { throw IMAPEncodeError("partial fetch range is too large") }
                s += "<\(partial.lowerBound).\(count)>"
            }
            return s
        case .headerFields(let fields, let peek):
            guard !fields.isEmpty else { throw IMAPEncodeError("HEADER.FIELDS needs at least one field name") }
            for field in fields { try requireAtom(field, "header field name") }
            return (peek ? "BODY.PEEK[" : "BODY[") + "HEADER.FIELDS (\(fields.joined(separator: " ")))]"
        case .binary(let specifier, let peek):
            try requireSectionSpec(specifier)
            return (peek ? "BINARY.PEEK[" : "BINARY[") + specifier + "]"
        }
    }

    private func flagList(_ flags: [Flag]) throws(IMAPEncodeError) -> String {
        for flag in flags {
            guard flag != .recent, flag != .wildcard else {
                throw IMAPEncodeError("\(flag) is set by the server and cannot be stored or appended")
            }
            try requireFlagSyntax(flag.rawValue, "flag")
        }
        return "(\(flags.map(\.rawValue).joined(separator: " ")))"
    }

    private func notifyFilter(_ filter: NotifyMailboxFilter, into w: inout CommandWriter) throws(IMAPEncodeError) {
        switch filter {
        case .selected: w.raw("SELECTED")
        case .selectedDelayed: w.raw("SELECTED-DELAYED")
        case .inboxes: w.raw("INBOXES")
        case .personal: w.raw("PERSONAL")
        case .subscribed: w.raw("SUBSCRIBED")
        case .subtree(let names), .mailboxes(let names):
            guard !names.isEmpty else { throw IMAPEncodeError("NOTIFY SUBTREE/MAILBOXES needs at least one mailbox") }
            if case .subtree = filter { w.raw("SUBTREE (") } else { w.raw("MAILBOXES (") }
            for (i, name) in names.enumerated() {
                if i > 0 { w.space() }
                try mailbox(name, into: &w)
            }
            w.raw(")")
        }
    }

    // search-key, RFC 3501 §6.4.4 / RFC 7162 §3.1.5
    private func searchKey(_ key: SearchKey, topLevel: Bool, into w: inout CommandWriter) throws(IMAPEncodeError) {
        switch key {
        case .all: w.raw("ALL")
        case .uid(let set): w.raw("UID \(try sequenceSet(set))")
        case .modSeq(let value): w.raw("MODSEQ \(value)")
        case .header(let field, let value):
            try requireAtom(field, "HEADER field name")
            w.raw("HEADER \(field) ")
            try w.astring(Array(value.utf8), "HEADER search value")
        case .larger(let n): w.raw("LARGER \(n)")
        case .smaller(let n): w.raw("SMALLER \(n)")
        case .since(let y, let m, let d): w.raw("SINCE \(try searchDate(y, m, d))")
        case .before(let y, let m, let d): w.raw("BEFORE \(try searchDate(y, m, d))")
        case .deleted: w.raw("DELETED")
        case .undeleted: w.raw("UNDELETED")
        case .seen: w.raw("SEEN")
        case .unseen: w.raw("UNSEEN")
        case .and(let keys):
            guard !keys.isEmpty else { w.raw("ALL"); return }
            if keys.count == 1 { try searchKey(keys[0], topLevel: topLevel, into: &w); return }
            if !topLevel { w.raw("(") }
            for (i, k) in keys.enumerated() {
                if i > 0 { w.space() }
                try searchKey(k, topLevel: false, into: &w)
            }
            if !topLevel { w.raw(")") }
        case .or(let a, let b):
            w.raw("OR ")
            try searchKey(a, topLevel: false, into: &w)
            w.space()
            try searchKey(b, topLevel: false, into: &w)
        case .not(let k):
            w.raw("NOT ")
            try searchKey(k, topLevel: false, into: &w)
        }
    }

    // date = date-day "-" date-month "-" date-year
    private func searchDate(_ year: Int, _ month: Int, _ day: Int) throws(IMAPEncodeError) -> String {
        guard (1...12).contains(month), (1...9999).contains(year),
              day >= 1, day <= InternalDate.daysInMonth(year: year, month: month) else {
            throw IMAPEncodeError("search date \(year)-\(month)-\(day) is not a valid calendar date")
        }
        let y = String(year)
        return "\(day)-\(InternalDate.monthNames[month - 1])-\(String(repeating: "0", count: 4 - y.count))\(y)"
    }

    // MARK: - Validation

    private func requireAtom(_ text: String, _ what: String) throws(IMAPEncodeError) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.allSatisfy(ASCII.isAtomChar) else {
            throw IMAPEncodeError("\(what) \"\(IMAPParseError.redact(bytes))\" is not a valid IMAP atom (no spaces, CR/LF, NUL, 8-bit or ( ) { % * \" \\ ])")
        }
    }

    /// flag = "\" atom / atom
    private func requireFlagSyntax(_ raw: String, _ what: String) throws(IMAPEncodeError) {
        try requireAtom(raw.hasPrefix("\\") ? String(raw.dropFirst()) : raw, what)
    }

    private func requireSectionSpec(_ spec: String) throws(IMAPEncodeError) {
        guard spec.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != ASCII.closeBracket && $0 != ASCII.openBrace }) else {
            throw IMAPEncodeError("section specifier \"\(IMAPParseError.redact(Array(spec.utf8)))\" must be printable ASCII without ']' or '{'")
        }
    }
}

extension SearchKey {
    var containsNonASCII: Bool {
        switch self {
        case .header(let field, let value): return !field.utf8.allSatisfy { $0 < 0x80 } || !value.utf8.allSatisfy { $0 < 0x80 }
        case .and(let keys): return keys.contains { $0.containsNonASCII }
        case .or(let a, let b): return a.containsNonASCII || b.containsNonASCII
        case .not(let k): return k.containsNonASCII
        default: return false
        }
    }
}
