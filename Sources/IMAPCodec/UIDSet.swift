/// A set of UIDs (or sequence numbers) kept as sorted, disjoint, non-adjacent
/// ranges, so `1:100000` costs one range however many messages it names.
/// `*` is represented as `UInt32.max` (RFC 3501 §9 `seq-number`).
public struct UIDSet: Sendable, Hashable, CustomStringConvertible, Sequence {
    /// Sorted, non-overlapping, non-adjacent.
    public private(set) var ranges: [ClosedRange<UInt32>]

    public init() { ranges = [] }

    public init(_ range: ClosedRange<UInt32>) { ranges = [range] }

    public init(_ uids: some Sequence<UInt32>) {
        ranges = []
        let sorted = uids.sorted()
        var current: ClosedRange<UInt32>?
        for uid in sorted {
            if let c = current {
                if uid <= c.upperBound { continue }
                if uid == c.upperBound &+ 1 { current = c.lowerBound...uid; continue }
                ranges.append(c)
            }
            current = uid...uid
        }
        if let c = current { ranges.append(c) }
    }

    /// Builds a set from ranges in any order, overlapping or adjacent, in
    /// O(n log n) — the parser uses this for server-sent sets of any size.
    public init(ranges unsorted: [ClosedRange<UInt32>]) {
        ranges = []
        ranges.reserveCapacity(unsorted.count)
        for r in unsorted.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = ranges.last, r.lowerBound <= last.upperBound || r.lowerBound == last.upperBound &+ 1 {
                ranges[ranges.count - 1] = last.lowerBound...Swift.max(last.upperBound, r.upperBound)
            } else {
                ranges.append(r)
            }
        }
    }

    /// `1:*`
    public static let all = UIDSet(1...UInt32.max)

    public var isEmpty: Bool { ranges.isEmpty }

    /// Number of members (`*` counts as UInt32.max, so avoid on open ranges).
    public var count: Int { ranges.reduce(0) { $0 + Int($1.upperBound - $1.lowerBound) + 1 } }

    public var min: UInt32? { ranges.first?.lowerBound }
    public var max: UInt32? { ranges.last?.upperBound }

    public func contains(_ uid: UInt32) -> Bool {
        var lo = 0, hi = ranges.count - 1
        while lo <= hi {
            let mid = (lo + hi) / 2
            let r = ranges[mid]
            if uid < r.lowerBound { hi = mid - 1 } else if uid > r.upperBound { lo = mid + 1 } else { return true }
        }
        return false
    }

    public mutating func insert(_ range: ClosedRange<UInt32>) {
        var result: [ClosedRange<UInt32>] = []
        result.reserveCapacity(ranges.count + 1)
        var merged = range
        var placed = false
        for r in ranges {
            if r.upperBound < merged.lowerBound && r.upperBound &+ 1 != merged.lowerBound {
                result.append(r)
            } else if r.lowerBound > merged.upperBound && merged.upperBound &+ 1 != r.lowerBound {
                if !placed { result.append(merged); placed = true }
                result.append(r)
            } else {
                merged = Swift.min(r.lowerBound, merged.lowerBound)...Swift.max(r.upperBound, merged.upperBound)
            }
        }
        if !placed { result.append(merged) }
        ranges = result
    }

    public mutating func insert(_ uid: UInt32) { insert(uid...uid) }

    public func union(_ other: UIDSet) -> UIDSet {
        var copy = self
        for r in other.ranges { copy.insert(r) }
        return copy
    }

    /// `1:3,5,7:*` — the compressed wire form.
    public var description: String {
        ranges.map { r in
            let lo = r.lowerBound == UInt32.max ? "*" : String(r.lowerBound)
            if r.lowerBound == r.upperBound { return lo }
            let hi = r.upperBound == UInt32.max ? "*" : String(r.upperBound)
            return "\(lo):\(hi)"
        }.joined(separator: ",")
    }

    /// Splits into sets of at most `maxRanges` ranges, so a long command line
    /// stays under server limits (Dovecot accepts 64 KB lines, others less).
    public func chunked(maxRanges: Int) -> [UIDSet] {
        stride(from: 0, to: ranges.count, by: maxRanges).map { start in
            var s = UIDSet()
            s.ranges = Array(ranges[start..<Swift.min(start + maxRanges, ranges.count)])
            return s
        }
    }

    public func makeIterator() -> AnyIterator<UInt32> {
        var rangeIndex = 0
        var next: UInt32? = ranges.first?.lowerBound
        let ranges = self.ranges
        return AnyIterator {
            guard let value = next else { return nil }
            if value < ranges[rangeIndex].upperBound {
                next = value + 1
            } else {
                rangeIndex += 1
                next = rangeIndex < ranges.count ? ranges[rangeIndex].lowerBound : nil
            }
            return value
        }
    }
}
