import SyncState

/// What the sync state remembers about one message pair, with the state's
/// columns already mapped to `MessageKey`s.
public struct StatePair: Sendable, Hashable {
    public var id: Int64
    /// nil on a side whose key is not (or no longer) known: after a far
    /// UIDVALIDITY reset the far UIDs are cleared until re-paired.
    public var keys: Sides<MessageKey?>
    /// The flags both sides agreed on at the last sync.
    public var flags: MessageFlags
    public var size: Int64
    public var internalDate: Int64?
    public var messageId: String?

    public init(id: Int64, keys: Sides<MessageKey?>, flags: MessageFlags, size: Int64, internalDate: Int64? = nil, messageId: String? = nil) {
        self.id = id
        self.keys = keys
        self.flags = flags
        self.size = size
        self.internalDate = internalDate
        self.messageId = messageId
    }
}

/// What to do on a side when the other side no longer has a message.
public enum DeletionRule: Sendable, Hashable {
    /// Expunge it here too (default).
    case propagate
    /// Keep it here; the pair stays in the state, so the message is neither
    /// deleted nor copied back (`keep-local` for the near side).
    case keep
    /// Move it to this side's Trash mailbox instead of expunging it.
    case moveToTrash(mailbox: String)
}

/// The mass-deletion guard's thresholds.
public struct MassDeletionGuard: Sendable, Hashable {
    /// The largest share of a side's messages one run may delete.
    public var share: Double
    /// Mailboxes with this many messages or fewer are never guarded: emptying
    /// a small folder is ordinary.
    public var minimumMessages: Int
    /// `--allow-mass-delete`: the user confirmed.
    public var allow: Bool

    public init(share: Double = 0.5, minimumMessages: Int = 20, allow: Bool = false) {
        self.share = share
        self.minimumMessages = minimumMessages
        self.allow = allow
    }
}

/// Everything the reconciler needs about one mailbox pair. Plain values: the
/// reconciler does no I/O.
public struct ReconcileInput: Sendable {
    public var account: String
    /// The mailbox's name for messages and logs (the far name).
    public var mailbox: String
    public var pairs: [StatePair]
    /// Pairs the state holds but `pairs` leaves out because both listings
    /// are deltas that do not mention them: present and unchanged on both
    /// sides. They count for the mass-deletion guard.
    public var unloadedPairs: Int
    public var listings: Sides<MessageListing>
    /// Sides whose UIDVALIDITY changed in this run: their stored keys mean
    /// nothing and their messages are re-paired by Message-ID, size and date.
    public var invalidated: Sides<Bool>
    /// What each side does with messages the other side deleted.
    public var deletion: Sides<DeletionRule>
    /// Sides the run may change (`pull` writes near only, `push` far only).
    public var writable: Sides<Bool>
    /// Sides that can store keywords.
    public var keywords: Sides<Bool>
    public var massDeletion: MassDeletionGuard
    /// Pairs and unpaired keys handled by an account-level move this run
    /// (only used when moves are not executed first, i.e. in a dry run).
    public var ignoredPairs: Set<Int64>
    public var ignoredKeys: Sides<Set<MessageKey>>
    /// Unpaired messages a side holds that are planned separately (the
    /// engine copies a large one-sided batch a slice at a time); they count
    /// only for the mass-deletion guard, as that side's messages.
    public var setAside: Sides<Int>

    public init(
        account: String, mailbox: String, pairs: [StatePair], unloadedPairs: Int = 0, listings: Sides<MessageListing>,
        invalidated: Sides<Bool> = Sides(far: false, near: false),
        deletion: Sides<DeletionRule> = Sides(far: .propagate, near: .propagate),
        writable: Sides<Bool> = Sides(far: true, near: true),
        keywords: Sides<Bool> = Sides(far: true, near: true),
        massDeletion: MassDeletionGuard = MassDeletionGuard(),
        ignoredPairs: Set<Int64> = [], ignoredKeys: Sides<Set<MessageKey>> = Sides(far: [], near: []),
        setAside: Sides<Int> = Sides(far: 0, near: 0)
    ) {
        self.account = account
        self.mailbox = mailbox
        self.pairs = pairs
        self.unloadedPairs = unloadedPairs
        self.listings = listings
        self.invalidated = invalidated
        self.deletion = deletion
        self.writable = writable
        self.keywords = keywords
        self.massDeletion = massDeletion
        self.ignoredPairs = ignoredPairs
        self.ignoredKeys = ignoredKeys
        self.setAside = setAside
    }
}

/// A new message to copy to the opposite side, with the flags it is created with.
public struct PlannedCopy: Sendable, Hashable {
    public var source: MessageInfo
    public var flags: MessageFlags
}

/// Two unpaired messages, one on each side, recognised as the same message
/// (first sync of a mailbox that exists on both sides).
public struct PlannedPairing: Sendable, Hashable {
    public var messages: Sides<MessageInfo>
    /// What both sides agree on now; recorded first so an interruption before
    /// the flag updates redoes the merge from here.
    public var baseFlags: MessageFlags
    /// The merged flags, recorded once both sides carry them.
    public var agreedFlags: MessageFlags
}

/// A stored pair re-attached to a message found again on `side` after its
/// key was lost (UIDVALIDITY change).
public struct PlannedRepair: Sendable, Hashable {
    public var pair: StatePair
    public var side: Side
    public var key: MessageKey
}

/// A message to remove from one side.
public struct PlannedRemoval: Sendable, Hashable {
    public var pairId: Int64
    public var key: MessageKey
}

/// A message whose flags both sides changed differently since the last sync.
public struct FlagConflict: Sendable, Hashable {
    public var keys: Sides<MessageKey>
    public var base: MessageFlags?
    public var flags: Sides<MessageFlags>
    public var merged: MessageFlags
}

/// The reconciler's result for one mailbox pair: every change the run will
/// make, and nothing else. A value, so tests compare plans and a dry run
/// prints one.
public struct Plan: Sendable, Hashable {
    /// New messages, indexed by the side they are copied *to*.
    public var copies = Sides<[PlannedCopy]>(far: [], near: [])
    public var pairings: [PlannedPairing] = []
    public var repairs: [PlannedRepair] = []
    /// Flag updates per side, grouped by identical change.
    public var flagChanges = Sides<[FlagChange]>(far: [], near: [])
    /// New agreed flags of existing (and re-paired) pairs.
    public var agreedFlags: [Int64: MessageFlags] = [:]
    /// Messages to expunge, per side.
    public var removals = Sides<[PlannedRemoval]>(far: [], near: [])
    /// Messages to move to the side's Trash mailbox instead of expunging.
    public var trash = Sides<[PlannedRemoval]>(far: [], near: [])
    /// Pairs whose messages are gone from every side they were on.
    public var forgotten: [Int64] = []
    public var conflicts: [FlagConflict] = []

    public init() {}

    /// True when the run would change nothing on either side or in the state.
    public var isEmpty: Bool {
        copies.far.isEmpty && copies.near.isEmpty && pairings.isEmpty && repairs.isEmpty
            && flagChanges.far.isEmpty && flagChanges.near.isEmpty && agreedFlags.isEmpty
            && removals.far.isEmpty && removals.near.isEmpty && trash.far.isEmpty && trash.near.isEmpty
            && forgotten.isEmpty
    }

    /// Number of messages whose flags change on `side`.
    public func flagUpdateCount(on side: Side) -> Int { flagChanges[side].reduce(0) { $0 + $1.keys.count } }
}

/// The pure heart of the engine: state + both sides' change sets → plan.
///
/// Rules, in the order they are applied (copied into the README):
/// 1. **Current view.** A full listing is the side's content. A delta
///    (QRESYNC/CONDSTORE) is applied to the stored pairs: vanished keys are
///    gone, changed messages carry new flags, the rest keep the agreed flags.
/// 2. **Paired, present on both sides:** flags merged (see `FlagMerge`).
/// 3. **Paired, gone from one side:** the other side applies its deletion
///    rule: expunge (default), keep (keep-local), or move to Trash. A pair
///    gone from both sides is forgotten.
/// 4. **Re-pairing after a UIDVALIDITY change** on one side: stored pairs are
///    matched to that side's messages by Message-ID + size + internal date;
///    matched pairs keep their agreed flags and nothing is copied or
///    deleted. A pair with no match is forgotten and its surviving message
///    copied again, since it really is missing there. (A pair that lost its
///    far key in an earlier, interrupted run and finds no match is left
///    alone: its message is kept where it is and not copied again.)
/// 5. **Unpaired on both sides with equal Message-ID + size + date**
///    (first sync of a mailbox present on both sides): paired, not
///    duplicated; flags become the union.
/// 6. **Still unpaired:** copied to the other side, with its flags.
/// 7. **Mass-deletion guard:** if the plan removes (expunge or Trash) more
///    than `share` (50%) of one side's messages in a mailbox holding more
///    than `minimumMessages` (20), the plan is refused unless
///    `allowMassDelete`.
/// 8. **Direction** (`pull`/`push`): nothing is planned on a read-only side;
///    the agreed flags take only the changes that were propagated, so the
///    rest stay visible as changes for a later two-way run.
public enum Reconciler {
    /// The messages each side holds now, by key.
    public static func currentViews(of input: ReconcileInput) -> Sides<MailboxView> {
        Sides { side in currentView(side: side, input: input) }
    }

    static func currentView(side: Side, input: ReconcileInput) -> MailboxView {
        switch input.listings[side] {
        case .full(let messages):
            return MailboxView(messages)
        case .delta(let changed, let vanished):
            // A delta is relative to what the state knew; an invalidated side
            // has no usable base (the engine asks for a full listing then).
            return MailboxView(pairs: input.invalidated[side] ? [] : input.pairs, side: side, vanished: vanished, changed: changed)
        }
    }

    /// Builds the plan, or throws `SyncError.massDeletion`.
    public static func reconcile(_ input: ReconcileInput) throws(SyncError) -> Plan {
        let views = currentViews(of: input)
        var plan = Plan()
        var flagUpdates = Sides<[MessageKey: (add: MessageFlags, remove: MessageFlags)]>(far: [:], near: [:])

        // What the state does not account for is new; an invalidated side's
        // stored keys account for nothing.
        let unpaired = Sides<[MessageInfo]> { side in
            var messages = views[side].unpaired(by: input.invalidated[side] ? [] : input.pairs, on: side)
            if !input.ignoredKeys[side].isEmpty { messages.removeAll { input.ignoredKeys[side].contains($0.key) } }
            // Listings usually come in key order (UIDs ascending): a sorted
            // copy of a first download's listing would cost megabytes.
            if !zip(messages, messages.dropFirst()).allSatisfy({ $0.key < $1.key }) { messages.sort { $0.key < $1.key } }
            return messages
        }

        /// Merges one message's flags and queues the updates each side needs.
        func mergeFlags(pairId: Int64?, base: MessageFlags?, messages: Sides<MessageInfo>) -> (state: MessageFlags, agreed: MessageFlags) {
            let actual = messages.map(\.flags)
            // A side without keywords shows none; count the other side's (or
            // the base's) as its own so they are neither added nor removed.
            var effective = actual
            for side in Side.allCases where !input.keywords[side] {
                let kept = base.map(FlagMerge.keywords) ?? FlagMerge.keywords(actual[side.opposite])
                effective[side] = FlagMerge.union(FlagMerge.systemFlags(actual[side]), kept)
            }
            let resolvedBase = base ?? FlagMerge.intersection(effective.far, effective.near)
            let merged = FlagMerge.merge(base: resolvedBase, far: effective.far, near: effective.near)
            // Agreed flags take only the changes that were propagated.
            let agreed = FlagMerge.merge(
                base: resolvedBase,
                far: input.writable.near ? effective.far : resolvedBase,
                near: input.writable.far ? effective.near : resolvedBase)
            if effective.far != effective.near && effective.far != resolvedBase && effective.near != resolvedBase {
                plan.conflicts.append(FlagConflict(keys: messages.map(\.key), base: base, flags: actual, merged: merged))
            }
            for side in Side.allCases where input.writable[side] {
                let desired = input.keywords[side] ? merged : FlagMerge.systemFlags(merged)
                let add = FlagMerge.subtracting(desired, actual[side])
                let remove = FlagMerge.subtracting(actual[side], desired)
                if !add.isEmpty || !remove.isEmpty {
                    flagUpdates[side][messages[side].key] = (add, remove)
                }
            }
            return (resolvedBase, agreed)
        }

        func planDeletion(on side: Side, pairId: Int64, key: MessageKey) {
            guard input.writable[side] else { return }
            switch input.deletion[side] {
            case .propagate: plan.removals[side].append(PlannedRemoval(pairId: pairId, key: key))
            case .keep: break
            case .moveToTrash: plan.trash[side].append(PlannedRemoval(pairId: pairId, key: key))
            }
        }

        var needingKey: [(pair: StatePair, side: Side)] = []
        for pair in input.pairs where !input.ignoredPairs.contains(pair.id) {
            let keys = Sides { side in input.invalidated[side] ? nil : pair.keys[side] }
            let present = Sides { side in keys[side].flatMap { views[side][$0] } }
            if keys.far == nil || keys.near == nil {
                let missing: Side = keys.far == nil ? .far : .near
                if present[missing.opposite] == nil {
                    plan.forgotten.append(pair.id)
                } else {
                    needingKey.append((pair, missing))
                }
                continue
            }
            switch (present.far, present.near) {
            case let (far?, near?):
                let result = mergeFlags(pairId: pair.id, base: pair.flags, messages: Sides(far: far, near: near))
                if result.agreed != pair.flags { plan.agreedFlags[pair.id] = result.agreed }
            case let (far?, nil):
                planDeletion(on: .far, pairId: pair.id, key: far.key)
            case let (nil, near?):
                planDeletion(on: .near, pairId: pair.id, key: near.key)
            case (nil, nil):
                plan.forgotten.append(pair.id)
            }
        }

        // Re-pair by identity: Message-ID + size + internal date.
        var index = Sides { side in IdentityIndex(unpaired[side]) }
        for (pair, side) in needingKey {
            let other = side.opposite
            let otherMessage = views[other][pair.keys[other]!]!
            let identity = MessageInfo(key: otherMessage.key, size: pair.size, internalDate: pair.internalDate,
                                       messageId: pair.messageId ?? otherMessage.messageId)
            if let found = index[side].take(matching: identity) {
                plan.repairs.append(PlannedRepair(pair: pair, side: side, key: found.key))
                var messages = Sides(far: found, near: found)
                messages[other] = otherMessage
                let result = mergeFlags(pairId: pair.id, base: pair.flags, messages: messages)
                if result.agreed != pair.flags { plan.agreedFlags[pair.id] = result.agreed }
            } else if input.invalidated[side] {
                // The message really is missing on the reset side: forget the
                // stale pair and copy the survivor again.
                plan.forgotten.append(pair.id)
                index[other].insert(otherMessage)
            }
        }

        // First sync of a mailbox present on both sides: pair equal messages.
        for far in index.near.isEmpty ? [] : index.far.remaining() {
            guard let near = index.near.take(matching: far) else { continue }
            _ = index.far.take(key: far.key)
            let messages = Sides(far: far, near: near)
            let result = mergeFlags(pairId: nil, base: nil, messages: messages)
            plan.pairings.append(PlannedPairing(messages: messages, baseFlags: result.state, agreedFlags: result.agreed))
        }

        for side in Side.allCases where input.writable[side.opposite] {
            plan.copies[side.opposite] = index[side].remaining().map {
                PlannedCopy(source: $0, flags: $0.flags)
            }
        }

        plan.flagChanges = flagUpdates.map { updates in
            var groups: [FlagGroupKey: [MessageKey]] = [:]
            for (key, change) in updates {
                groups[FlagGroupKey(add: change.add, remove: change.remove), default: []].append(key)
            }
            return groups
                .map { FlagChange(keys: $1.sorted(), add: $0.add, remove: $0.remove) }
                .sorted { ($0.add.text, $0.remove.text) < ($1.add.text, $1.remove.text) }
        }
        plan.forgotten.sort()

        // The mass-deletion guard: a wiped or unmounted side must not be
        // mirrored as "the user deleted everything".
        for side in Side.allCases {
            let deletions = plan.removals[side].count + plan.trash[side].count
            let messages = views[side].count + input.unloadedPairs + input.setAside[side]
            if !input.massDeletion.allow, messages > input.massDeletion.minimumMessages,
               Double(deletions) > input.massDeletion.share * Double(messages) {
                throw .massDeletion(account: input.account, mailbox: input.mailbox, side: side,
                                    deletions: deletions, messages: messages, share: input.massDeletion.share)
            }
        }
        return plan
    }
}

private struct FlagGroupKey: Hashable {
    var add: MessageFlags
    var remove: MessageFlags
}

/// The messages one side holds now, by key. A full listing's array is used
/// as it is, with positions by key beside it, rather than copied into a
/// dictionary of messages; a delta is read through to the state's pairs
/// instead of copying them: a large mailbox's view costs its positions only.
public struct MailboxView: Sendable {
    /// A full listing, or a delta's changed messages.
    private var storage: [MessageInfo]
    private var positions: [MessageKey: Int]
    /// A delta's base: the state's pairs, by their key on this side (the
    /// last pair holding a key wins), less the keys that vanished.
    private var pairs: [StatePair] = []
    private var pairPositions: [MessageKey: Int] = [:]
    private var vanished: Set<MessageKey> = []
    public private(set) var count: Int

    /// `messages` with their flags normalized (`FlagMerge.normalized`); a
    /// key listed twice keeps its last entry.
    init(_ messages: [MessageInfo]) {
        storage = messages
        positions = Dictionary(minimumCapacity: messages.count)
        for (position, message) in messages.enumerated() {
            positions[message.key] = position
            let flags = FlagMerge.normalized(message.flags)
            if flags != message.flags { storage[position].flags = flags }
        }
        count = positions.count
    }

    /// What a delta says the side holds: the pairs' messages, without the
    /// vanished keys, with the changed messages (flags normalized, the
    /// state's Message-ID kept where the listing had none) over them.
    init(pairs: [StatePair], side: Side, vanished: [MessageKey], changed: [MessageInfo]) {
        self.pairs = pairs
        self.vanished = Set(vanished)
        for (index, pair) in pairs.enumerated() {
            if let key = pair.keys[side] { pairPositions[key] = index }
        }
        storage = []
        positions = [:]
        count = 0
        for message in changed {
            var message = message
            message.flags = FlagMerge.normalized(message.flags)
            if message.messageId == nil { message.messageId = self[message.key]?.messageId }
            if let position = positions[message.key] {
                storage[position] = message
            } else {
                positions[message.key] = storage.count
                storage.append(message)
            }
        }
        count = positions.count + pairPositions.keys.reduce(0) { $0 + (isBase($1) ? 1 : 0) }
    }

    /// A pair's key that shows through: not vanished, not changed.
    private func isBase(_ key: MessageKey) -> Bool {
        positions[key] == nil && !vanished.contains(key)
    }

    private func message(of pair: StatePair, key: MessageKey) -> MessageInfo {
        MessageInfo(key: key, flags: pair.flags, size: pair.size, internalDate: pair.internalDate, messageId: pair.messageId)
    }

    public subscript(key: MessageKey) -> MessageInfo? {
        if let position = positions[key] { return storage[position] }
        guard !vanished.contains(key), let index = pairPositions[key] else { return nil }
        return message(of: pairs[index], key: key)
    }

    /// The messages held whose key no pair holds on `side`, in no
    /// particular order. Found by marking what the pairs hold rather than by
    /// a set of their keys, which for a large mailbox costs megabytes.
    func unpaired(by pairs: [StatePair], on side: Side) -> [MessageInfo] {
        var held = [Bool](repeating: false, count: storage.count)
        var heldCount = 0
        for pair in pairs {
            if let key = pair.keys[side], let position = positions[key], !held[position] {
                held[position] = true
                heldCount += 1
            }
        }
        var result: [MessageInfo]
        if heldCount == 0 && storage.count == positions.count {
            // Nothing paired (a first download): the listing itself.
            result = storage
        } else {
            result = []
            for position in positions.values where !held[position] { result.append(storage[position]) }
        }
        // A delta's base messages are those of the pairs it was built on,
        // usually the very pairs asked about; any other is unpaired too.
        if !pairPositions.isEmpty {
            var baseHeld = [Bool](repeating: false, count: self.pairs.count)
            for pair in pairs {
                if let key = pair.keys[side], let index = pairPositions[key] { baseHeld[index] = true }
            }
            for (key, index) in pairPositions where !baseHeld[index] && isBase(key) {
                result.append(message(of: self.pairs[index], key: key))
            }
        }
        return result
    }

    /// The messages held that satisfy `isIncluded`, in no particular order.
    public func messages(where isIncluded: (MessageInfo) -> Bool) -> [MessageInfo] {
        var result: [MessageInfo]
        if storage.count == positions.count {
            // All of them (a first download): the listing itself, not a copy.
            result = storage.allSatisfy(isIncluded) ? storage : storage.filter(isIncluded)
        } else {
            result = positions.values.lazy.map { storage[$0] }.filter(isIncluded)
        }
        for (key, index) in pairPositions where isBase(key) {
            let message = message(of: pairs[index], key: key)
            if isIncluded(message) { result.append(message) }
        }
        return result
    }
}

/// Unpaired messages of one side, looked up by identity.
///
/// Identity is Message-ID + size, and the internal date when both messages
/// have one. A message without a Message-ID is never matched: without it two
/// different messages of equal size could be merged, losing one.
///
/// Most indexes are never searched (a first download has nothing unpaired on
/// the other side), so the lookup tables are built at the first search, and
/// the messages stay in the array they came in.
struct IdentityIndex {
    private struct Identity: Hashable {
        var messageId: String
        var size: Int64
    }

    private var list: [MessageInfo]
    private var taken: [Bool]
    private var left: Int
    /// Whether `list` is in key order (no `insert` since `init`).
    private var inKeyOrder = true
    private var byIdentity: [Identity: [Int]]?
    private var byKey: [MessageKey: Int]?

    /// `list` holds each key once; it is usually sorted by key already.
    init(_ list: [MessageInfo]) {
        self.list = list
        taken = Array(repeating: false, count: list.count)
        left = list.count
        inKeyOrder = zip(list, list.dropFirst()).allSatisfy { $0.key < $1.key }
    }

    var isEmpty: Bool { left == 0 }

    mutating func insert(_ message: MessageInfo) {
        let position = list.count
        list.append(message)
        taken.append(false)
        left += 1
        inKeyOrder = false
        if let id = message.messageId, byIdentity != nil {
            byIdentity![Identity(messageId: id, size: message.size), default: []].append(position)
        }
        byKey?[message.key] = position
    }

    /// Removes and returns the first message, in key order, with the same
    /// identity.
    mutating func take(matching probe: MessageInfo) -> MessageInfo? {
        guard let id = probe.messageId else { return nil }
        if byIdentity == nil {
            var table: [Identity: [Int]] = [:]
            for (position, message) in list.enumerated() where !taken[position] {
                if let id = message.messageId { table[Identity(messageId: id, size: message.size), default: []].append(position) }
            }
            byIdentity = table
        }
        guard let positions = byIdentity![Identity(messageId: id, size: probe.size)] else { return nil }
        let fitting = positions.filter { position in
            guard !taken[position] else { return false }
            if let a = list[position].internalDate, let b = probe.internalDate, a != b { return false }
            return true
        }
        guard let first = fitting.min(by: { list[$0].key < list[$1].key }) else { return nil }
        return take(at: first)
    }

    @discardableResult
    mutating func take(key: MessageKey) -> MessageInfo? {
        if byKey == nil {
            var table: [MessageKey: Int] = [:]
            for position in list.indices where !taken[position] { table[list[position].key] = position }
            byKey = table
        }
        guard let position = byKey![key], !taken[position] else { return nil }
        return take(at: position)
    }

    private mutating func take(at position: Int) -> MessageInfo {
        taken[position] = true
        left -= 1
        return list[position]
    }

    /// What is left, in key order.
    func remaining() -> [MessageInfo] {
        if left == list.count && inKeyOrder { return list }
        let rest = list.indices.filter { !taken[$0] }.map { list[$0] }
        return inKeyOrder ? rest : rest.sorted { $0.key < $1.key }
    }
}
