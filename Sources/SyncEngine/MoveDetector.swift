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

    /// What a mailbox spilled by the `ListingBudget` leaves for move
    /// detection: its vanished pairs, found while it was loaded. The messages
    /// that arrived in it are looked for by listing it again, and only when
    /// some pair vanished somewhere.
    struct Spilled: Sendable {
        var index: Int
        var invalidated: Bool
        var vanished: Sides<[Vanished]>
        /// A first download listed a page at a time: it holds a page, not
        /// its message count, when it is listed again.
        var paged = false
    }

    fileprivate struct Identity: Hashable, Sendable {
        var messageId: String
        var size: Int64
    }

    /// What a vanished pair is matched by: its key where keys survive moves,
    /// else Message-ID and size.
    fileprivate enum Match: Hashable, Sendable {
        case key(MessageKey)
        case identity(Identity)
    }

    /// A paired message gone from its side in `mailbox`, and what a new
    /// message elsewhere must carry to be it.
    struct Vanished: Sendable {
        var mailbox: Int
        var pair: StatePair
        var otherMessage: MessageInfo
        fileprivate var match: Match
    }

    /// Memory stays proportional to the vanished pairs, usually none: the
    /// big mailboxes' listings are only scanned, never indexed, and nothing
    /// is scanned at all when no pair vanished.
    ///
    /// `vanished` is `vanished(_:)` of these mailboxes, taken before their
    /// deferred Message-IDs were read (which changes no pair and no paired
    /// message); entries of a mailbox no longer among them are passed over.
    func detect(_ mailboxes: [Mailbox], vanished all: Sides<[Vanished]>) -> [Move] {
        let eligible = Self.eligible(mailboxes)
        guard eligible.count > 1 else { return [] }
        let present = Set(eligible.map(\.index))
        var moves: [Move] = []
        for side in Side.allCases where writable[side.opposite] {
            let vanished = all[side].filter { present.contains($0.mailbox) }
            guard !vanished.isEmpty else { continue }

            // New, unpaired messages on `side` that match a vanished pair, in
            // mailbox order, then key order.
            let wanted = Set(vanished.map(\.match))
            var arrivals: [Match: [(Int, MessageInfo)]] = [:]
            for mailbox in eligible {
                for message in Self.unpaired(in: mailbox.loaded, on: side, matching: wanted).sorted(by: { $0.key < $1.key }) {
                    for match in Self.matches(message) where wanted.contains(match) {
                        arrivals[match, default: []].append((mailbox.index, message))
                    }
                }
            }
            var used: Set<String> = []
            for entry in vanished {
                guard let (destination, message) = (arrivals[entry.match] ?? []).first(where: {
                    $0.0 != entry.mailbox && !used.contains("\($0.0)/\($0.1.key)")
                }) else { continue }
                used.insert("\(destination)/\(message.key)")
                moves.append(Move(movedOn: side, from: entry.mailbox, to: destination, pair: entry.pair,
                                  newKey: message.key, otherMessage: entry.otherMessage))
            }
        }
        return moves
    }

    /// Per side, the sizes of vanished pairs that only a Message-ID can
    /// match. Unpaired messages of other sizes can never be their moved
    /// copies, so their deferred Message-IDs need not be read.
    static func identitySizes(_ vanished: Sides<[Vanished]>) -> Sides<Set<Int64>> {
        vanished.map { entries in
            Set(entries.compactMap { entry in
                if case .identity(let identity) = entry.match { return identity.size }
                return nil
            })
        }
    }

    /// Per side, the paired messages that can have been moved away from it:
    /// none on a side whose opposite may not be written. `spilled` are the
    /// mailboxes the budget dropped after loading, with what `spill(_:)`
    /// kept of them.
    func vanished(_ mailboxes: [Mailbox], spilled: [Spilled] = []) -> Sides<[Vanished]> {
        let eligible = Self.eligible(mailboxes)
        let eligibleSpilled = spilled.filter { !$0.invalidated }
        guard eligible.count + eligibleSpilled.count > 1 else { return Sides(far: [], near: []) }
        return Sides { side in
            guard writable[side.opposite] else { return [] }
            // In mailbox order, as if every mailbox had been kept.
            var byMailbox = Dictionary(grouping: vanished(from: side, in: eligible), by: \.mailbox)
            for entry in eligibleSpilled { byMailbox[entry.index] = entry.vanished[side] }
            return byMailbox.keys.sorted().flatMap { byMailbox[$0]! }
        }
    }

    /// What move detection needs of a mailbox that is about to be dropped.
    func spill(_ mailbox: Mailbox) -> Spilled {
        let invalidated = Self.eligible([mailbox]).isEmpty
        return Spilled(index: mailbox.index, invalidated: invalidated, vanished: Sides { side in
            invalidated || !writable[side.opposite] ? [] : vanished(from: side, in: [mailbox])
        })
    }

    /// A listed-again spilled mailbox reduced to its unpaired messages that
    /// match one of `vanished`: all `detect` looks at in it, since its own
    /// vanished pairs came from `spill(_:)`.
    func arrivals(in mailbox: Mailbox, matching vanished: Sides<[Vanished]>) -> Mailbox {
        var trimmed = mailbox
        trimmed.loaded.pairs = []
        for side in Side.allCases {
            let wanted = Set(vanished[side].map(\.match))
            let candidates = wanted.isEmpty ? [] : Self.unpaired(in: mailbox.loaded, on: side, matching: wanted)
            trimmed.loaded.listings[side] = .delta(changed: candidates, vanished: [])
        }
        return trimmed
    }

    /// The messages listed on `side` that no pair holds and that carry one
    /// of `wanted`'s matches: the only ones that can be a vanished pair moved.
    private static func unpaired(in loaded: LoadedMailbox, on side: Side, matching wanted: Set<Match>) -> [MessageInfo] {
        let known = Set(loaded.pairs.compactMap { $0.keys[side] })
        return loaded.listings[side].messages.filter { message in
            !known.contains(message.key) && !wanted.isDisjoint(with: matches(message))
        }
    }

    private static func eligible(_ mailboxes: [Mailbox]) -> [Mailbox] {
        mailboxes.filter { !$0.loaded.invalidated.far && !$0.loaded.invalidated.near }
    }

    /// Paired messages gone from `side` whose copy on the other side is
    /// still there: the only messages that can have been moved.
    private func vanished(from side: Side, in eligible: [Mailbox]) -> [Vanished] {
        let other = side.opposite
        var vanished: [Vanished] = []
        for mailbox in eligible {
            let isPresent = Self.presence(in: mailbox.loaded.listings[side])
            let gone = mailbox.loaded.pairs.filter { pair in
                guard let key = pair.keys[side], pair.keys[other] != nil else { return false }
                return !isPresent(key)
            }
            guard !gone.isEmpty else { continue }
            let otherView = Reconciler.currentView(side: other, input: ReconcileInput(
                account: "", mailbox: mailbox.loaded.record.farName, pairs: mailbox.loaded.pairs, listings: mailbox.loaded.listings))
            for pair in gone {
                guard let otherMessage = otherView[pair.keys[other]!] else { continue }
                let match: Match
                if capabilities[side].keysSurviveMove {
                    match = .key(pair.keys[side]!)
                } else if let id = pair.messageId ?? otherMessage.messageId {
                    match = .identity(Identity(messageId: id, size: pair.size))
                } else {
                    continue
                }
                vanished.append(Vanished(mailbox: mailbox.index, pair: pair, otherMessage: otherMessage, match: match))
            }
        }
        return vanished
    }

    private static func presence(in listing: MessageListing) -> (MessageKey) -> Bool {
        switch listing {
        case .full(let messages):
            let present = Set(messages.map(\.key))
            return { present.contains($0) }
        case .delta(_, let vanished):
            let gone = Set(vanished)
            return { !gone.contains($0) }
        }
    }

    private static func matches(_ message: MessageInfo) -> [Match] {
        var result = [Match.key(message.key)]
        if let id = message.messageId { result.append(.identity(Identity(messageId: id, size: message.size))) }
        return result
    }
}
