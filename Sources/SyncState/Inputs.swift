import Foundation

// Small value types the engine hands to `StateStore`. They exist so batch
// calls can take plain arrays and so a copy's direction is a type, not a
// convention about which optional is set.

/// A side of the sync.
public enum Side: String, Sendable, Hashable, CaseIterable {
    /// The IMAP server.
    case far
    /// The local Maildir.
    case near
}

/// A message present on both sides, paired without copying.
public struct NewPair: Sendable, Hashable {
    public var farUid: UInt32
    public var nearName: String
    public var flags: MessageFlags
    public var size: Int64
    public var internalDate: Int64?
    public var messageId: String?
    public var contentHash: Data?

    public init(farUid: UInt32, nearName: String, flags: MessageFlags = .none, size: Int64,
                internalDate: Int64? = nil, messageId: String? = nil, contentHash: Data? = nil) {
        self.farUid = farUid
        self.nearName = nearName
        self.flags = flags
        self.size = size
        self.internalDate = internalDate
        self.messageId = messageId
        self.contentHash = contentHash
    }
}

/// A copy about to be made, named by the side it is copied from.
public struct PendingCopy: Sendable, Hashable {
    public enum Source: Sendable, Hashable {
        /// Copying far → near.
        case far(uid: UInt32)
        /// Copying near → far.
        case near(name: String)
    }

    public var source: Source
    /// Flags the copy is created with; they become the agreed flags.
    public var flags: MessageFlags
    public var size: Int64
    public var internalDate: Int64?
    public var messageId: String?
    public var contentHash: Data?

    public init(source: Source, flags: MessageFlags = .none, size: Int64, internalDate: Int64? = nil,
                messageId: String? = nil, contentHash: Data? = nil) {
        self.source = source
        self.flags = flags
        self.size = size
        self.internalDate = internalDate
        self.messageId = messageId
        self.contentHash = contentHash
    }
}

/// Confirmation that a journaled copy landed, with its identity on the
/// destination side.
public struct CopyCompletion: Sendable, Hashable {
    public enum Destination: Sendable, Hashable, CustomStringConvertible {
        /// The UID the server assigned (APPENDUID or found by transfer id).
        case far(uid: UInt32)
        /// The Maildir base name the file was delivered under.
        case near(name: String)

        public var description: String {
            switch self {
            case .far(let uid): "far UID \(uid)"
            case .near(let name): "near name \(name)"
            }
        }
    }

    public var transferId: String
    public var destination: Destination

    public init(transferId: String, destination: Destination) {
        self.transferId = transferId
        self.destination = destination
    }
}

/// What `resetFarUidValidity` did.
public struct UidValidityReset: Sendable, Hashable {
    /// Pairs that lost their far UID and await re-pairing.
    public var clearedPairs: Int
    /// Transfer ids of unfinished far→near copies that were dropped; files
    /// carrying them in the Maildir are leftovers to delete.
    public var abandonedTransfers: [String]
}

/// One account's entry in `ferrymail status`.
public struct AccountStatus: Sendable, Hashable {
    public var account: AccountRecord
    public var daemon: DaemonStatusRecord?
    public var lastRun: RunRecord?
}
