import SyncState

/// Recognises messages the user moved between two synced mailboxes on one
/// side, so the other side moves its copy instead of deleting it and copying
/// the message again.
///
/// Rules (copied into the README):
/// - On a side whose keys survive moves (a Maildir's base name), a paired
///   message whose key disappeared from mailbox A and appeared, unpaired,
///   in mailbox B was moved from A to B. The far side gets a UID MOVE.
/// - On a side whose keys change with a move (IMAP UIDs), a paired message
///   that vanished from A and an unpaired new message in B with the same
///   Message-ID and size are taken for a move. The near side renames its
///   file into B, keeping the base name.
/// - Only when the other side still has its copy in A, neither side of A or
///   B had a UIDVALIDITY change, and the other side may be written (not in
///   `pull`/`push` against it). Each vanished and each new message is used
///   at most once.
/// If the other side cannot MOVE, it copies within itself and expunges.
struct MoveDetector {
    struct Mailbox {
        var index: Int
        var loaded: LoadedMailbox
    }

    struct Move: Sendable {
        /// The side where the user moved the message.
        var movedOn: Side
        var from: Int
        var to: Int
        /// The pair in the source mailbox.
        var pair: StatePair
        /// The moved message's key in the destination, on `movedOn`.
        var newKey: MessageKey
        /// The copy on the other side, still in the source mailbox.
        var otherMessage: MessageInfo

        func report(_ workers: [MailboxWork]) -> MoveReport {
            let from = workers[self.from].record, to = workers[self.to].record
            return MoveReport(movedOn: movedOn, from: movedOn == .far ? from.farName : from.nearName,
                              to: movedOn == .far ? to.farName : to.nearName, key: newKey)
        }
    }

    var capabilities: Sides<StoreCapabilities>
    var writable: Sides<Bool>

    private struct Identity: Hashable {
        var messageId: String
        var size: Int64
    }

    func detect(_ mailboxes: [Mailbox]) -> [Move] {
        let eligible = mailboxes.filter { !$0.loaded.invalidated.far && !$0.loaded.invalidated.near }
        guard eligible.count > 1 else { return [] }
        let views = eligible.map { mailbox in
            Reconciler.currentViews(of: ReconcileInput(
                account: "", mailbox: mailbox.loaded.record.farName, pairs: mailbox.loaded.pairs, listings: mailbox.loaded.listings))
        }
        var moves: [Move] = []
        for side in Side.allCases where writable[side.opposite] {
            let other = side.opposite
            // New, unpaired messages on `side`, by key and by identity.
            var byKey: [MessageKey: [(Int, MessageInfo)]] = [:]
            var byIdentity: [Identity: [(Int, MessageInfo)]] = [:]
            for (position, mailbox) in eligible.enumerated() {
                let known = Set(mailbox.loaded.pairs.compactMap { $0.keys[side] })
                for message in views[position][side].values.sorted(by: { $0.key < $1.key }) where !known.contains(message.key) {
                    byKey[message.key, default: []].append((mailbox.index, message))
                    if let id = message.messageId {
                        byIdentity[Identity(messageId: id, size: message.size), default: []].append((mailbox.index, message))
                    }
                }
            }
            var used: Set<String> = []
            for (position, mailbox) in eligible.enumerated() {
                for pair in mailbox.loaded.pairs {
                    guard let key = pair.keys[side], let otherKey = pair.keys[other],
                          views[position][side][key] == nil,
                          let otherMessage = views[position][other][otherKey] else { continue }
                    let candidates: [(Int, MessageInfo)]
                    if capabilities[side].keysSurviveMove {
                        candidates = byKey[key] ?? []
                    } else if let id = pair.messageId ?? otherMessage.messageId {
                        candidates = byIdentity[Identity(messageId: id, size: pair.size)] ?? []
                    } else {
                        candidates = []
                    }
                    guard let (destination, message) = candidates.first(where: {
                        $0.0 != mailbox.index && !used.contains("\($0.0)/\($0.1.key)")
                    }) else { continue }
                    used.insert("\(destination)/\(message.key)")
                    moves.append(Move(movedOn: side, from: mailbox.index, to: destination, pair: pair,
                                      newKey: message.key, otherMessage: otherMessage))
                }
            }
        }
        return moves
    }
}
