import SyncState

/// The one place where store keys meet the sync state's columns: the far
/// side's keys go to `farUid` (so the far store must hand out UIDs), the near
/// side's to `nearName` (a name, or a UID written in decimal when the near
/// store is UID-keyed, e.g. IMAP ⇄ IMAP).
struct StateColumns: Sendable {
    let account: String
    let mailbox: String
    let kinds: Sides<MessageKeyKind>

    func key(on side: Side, of record: MessageRecordKeys) -> MessageKey? {
        switch side {
        case .far:
            return record.farUid.map(MessageKey.uid)
        case .near:
            guard let name = record.nearName else { return nil }
            if kinds.near == .uid { return UInt32(name).map(MessageKey.uid) }
            return .name(name)
        }
    }

    func farUid(_ key: MessageKey) throws(SyncError) -> UInt32 {
        guard case .uid(let uid) = key else {
            throw .keyKindMismatch(account: account, mailbox: mailbox, side: .far, key: key)
        }
        return uid
    }

    func nearName(_ key: MessageKey) -> String {
        switch key {
        case .name(let name): name
        case .uid(let uid): String(uid)
        }
    }

    func source(on side: Side, _ key: MessageKey) throws(SyncError) -> PendingCopy.Source {
        side == .far ? .far(uid: try farUid(key)) : .near(name: nearName(key))
    }

    func destination(on side: Side, _ key: MessageKey) throws(SyncError) -> CopyCompletion.Destination {
        side == .far ? .far(uid: try farUid(key)) : .near(name: nearName(key))
    }

    func statePair(_ record: MessagePairRecord) -> StatePair {
        let keys = MessageRecordKeys(farUid: record.farUid, nearName: record.nearName)
        return StatePair(id: record.id!, keys: Sides { key(on: $0, of: keys) }, flags: record.flags, size: record.size,
                         internalDate: record.internalDate, messageId: record.messageId)
    }
}

struct MessageRecordKeys {
    var farUid: UInt32?
    var nearName: String?
}

/// The near side's watermark, kept in the state's `nearScanToken` column.
///
/// The state has typed columns for the far watermark only; the near side
/// (a Maildir scan token, or a full IMAP watermark when near is IMAP) and its
/// UIDVALIDITY are written as `key=value` fields, the scan token last since it
/// is opaque and may contain anything.
enum NearWatermarkText {
    static func encode(_ mark: SyncWatermark) -> String? {
        var fields: [String] = []
        if let v = mark.uidValidity { fields.append("uv=\(v)") }
        if let n = mark.uidNext { fields.append("un=\(n)") }
        if let m = mark.highestModSeq { fields.append("ms=\(m)") }
        if let t = mark.scanToken { fields.append("st=\(t)") }
        return fields.isEmpty ? nil : fields.joined(separator: ";")
    }

    static func decode(_ text: String?) -> SyncWatermark {
        var mark = SyncWatermark()
        guard let text else { return mark }
        var rest = Substring(text)
        while !rest.isEmpty {
            if rest.hasPrefix("st=") {
                mark.scanToken = String(rest.dropFirst(3))
                break
            }
            let field = rest.prefix { $0 != ";" }
            rest = rest.dropFirst(field.count).drop { $0 == ";" }
            let parts = field.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            switch parts[0] {
            case "uv": mark.uidValidity = UInt32(parts[1])
            case "un": mark.uidNext = UInt32(parts[1])
            case "ms": mark.highestModSeq = Int64(parts[1])
            default: break
            }
        }
        return mark
    }
}
