import SyncState

/// A value for each side, like mbsync's `far/near` arrays: the engine is
/// written once, for "this side" and "the other side", never for IMAP and
/// Maildir.
public struct Sides<Value> {
    public var far: Value
    public var near: Value

    public init(far: Value, near: Value) {
        self.far = far
        self.near = near
    }

    public init(_ make: (Side) throws -> Value) rethrows {
        far = try make(.far)
        near = try make(.near)
    }

    /// Mutates in place (`_modify`): with a plain setter, `sides[side].insert(x)`
    /// copied the whole collection on every call, which made reconciling a
    /// 12,000-message mailbox take seconds.
    public subscript(side: Side) -> Value {
        get { side == .far ? far : near }
        _modify {
            if side == .far { yield &far } else { yield &near }
        }
    }

    public func map<T>(_ transform: (Value) throws -> T) rethrows -> Sides<T> {
        Sides<T>(far: try transform(far), near: try transform(near))
    }

    /// The same values with far and near exchanged.
    public var swapped: Sides<Value> { Sides(far: near, near: far) }
}

extension Sides: Sendable where Value: Sendable {}
extension Sides: Equatable where Value: Equatable {}
extension Sides: Hashable where Value: Hashable {}

extension Side {
    /// The other side.
    public var opposite: Side { self == .far ? .near : .far }
}
