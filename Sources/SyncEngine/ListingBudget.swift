/// Keeps the memory of one run's loaded mailboxes proportional to the
/// largest mailbox instead of to the whole account.
///
/// A run loads every changed mailbox before it propagates any, because a
/// message moved between two folders is recognised only by looking at both.
/// Held all at once, a first sync of an account with 200,000 messages in
/// eight folders keeps 200,000 listing entries (about 0.1–0.3 KB each)
/// until the last folder is done. With a budget:
/// - a load starts only while the held and reserved entries plus its own
///   estimate fit the limit, or when no other load is running (a mailbox
///   larger than the whole budget is loaded alone, never refused);
/// - a loaded mailbox is kept only when it fits beside those already kept
///   (or is the first one); otherwise it is *spilled*: dropped, with the
///   few facts move detection needs, and listed again by the worker that
///   propagates it;
/// - a kept mailbox's entries count until its worker has propagated it, and
///   a spilled one is listed again only when it fits beside those (or
///   nothing else is held or running).
///
/// Spilling costs a second listing of that mailbox, which only happens when
/// the run holds more than the limit: on an ordinary run the listings are
/// deltas of a few entries and everything is kept.
actor ListingBudget {
    /// A loaded entry and then its planned copy take about 0.25 KB, so about
    /// 12 MB beside the 29 MB of the binary's and libraries' own pages. A
    /// first sync of 200,000 messages in eight folders peaked at 66.5 MB
    /// without a budget, 60–63 MB with 100,000 and 58–63 MB with 50,000
    /// (before the link flags of `Package.swift` took 5–8 MB off every run),
    /// for up to 20 % more time: fewer folders download at once. 50,000
    /// because the peak's spikes come from folders reconciled at once.
    static let defaultLimit = 50_000

    let limit: Int
    private var held: [Int: Int] = [:]
    private var heldTotal = 0
    private var reserved = 0
    private var running = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []
    /// The most entries held and reserved at once, for tests.
    private(set) var peak = 0

    init(limit: Int) { self.limit = max(1, limit) }

    /// Waits until a load of about `estimate` entries fits, then reserves it.
    ///
    /// `untilReleased`: also wait for kept mailboxes to be released, not
    /// only for running loads. Right when propagating, where every kept
    /// mailbox is being propagated and will be released; wrong while
    /// loading, where nothing is released and a load beyond the budget
    /// must go ahead alone (and then spill).
    func admit(_ estimate: Int, untilReleased: Bool = false) async {
        while (running > 0 || (untilReleased && heldTotal > 0)) && heldTotal + reserved + estimate > limit {
            await withCheckedContinuation { waiting.append($0) }
        }
        reserved += estimate
        running += 1
        peak = max(peak, heldTotal + reserved)
    }

    /// A load reserved with `estimate` ended holding `entries`: true when
    /// mailbox `index` may keep them, false when it must spill.
    func loaded(_ index: Int, estimate: Int, entries: Int) -> Bool {
        reserved -= estimate
        running -= 1
        let keep = heldTotal == 0 || heldTotal + entries <= limit
        if keep {
            held[index, default: 0] += entries
            heldTotal += entries
            peak = max(peak, heldTotal + reserved)
        }
        wake()
        return keep
    }

    /// Work reserved with `estimate` (a reload and its propagation) ended.
    func finished(estimate: Int) {
        reserved -= estimate
        running -= 1
        wake()
    }

    /// Mailbox `index` no longer holds its loaded entries.
    func release(_ index: Int) {
        if let entries = held.removeValue(forKey: index) {
            heldTotal -= entries
            wake()
        }
    }

    func isHeld(_ index: Int) -> Bool { held[index] != nil }

    private func wake() {
        let woken = waiting
        waiting = []
        for continuation in woken { continuation.resume() }
    }
}
