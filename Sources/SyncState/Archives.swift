import Foundation
import GRDB

/// One archive written by `ferrymail backup`. The chain of an account is the
/// latest full archive and the incrementals after it, linked by
/// `previousArchiveId` (the manifests carry the same links, so an archive
/// chain is readable without this table; the table only saves the user from
/// naming the earlier files).
public struct ArchiveRecord: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord, Identifiable {
    public static let databaseTableName = "archive"
    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let accountId = Column(CodingKeys.accountId)
        public static let archiveId = Column(CodingKeys.archiveId)
        public static let createdAt = Column(CodingKeys.createdAt)
    }

    public var id: Int64?
    public var accountId: Int64
    /// The id written in the archive's own header and manifest.
    public var archiveId: String
    public var path: String
    /// nil for a full backup.
    public var previousArchiveId: String?
    public var createdAt: Date
    public var messages: Int
    public var bytes: Int64

    public init(id: Int64? = nil, accountId: Int64, archiveId: String, path: String, previousArchiveId: String?,
                createdAt: Date = Date(), messages: Int, bytes: Int64) {
        self.id = id
        self.accountId = accountId
        self.archiveId = archiveId
        self.path = path
        self.previousArchiveId = previousArchiveId
        self.createdAt = createdAt
        self.messages = messages
        self.bytes = bytes
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

extension StateStore {
    /// Records a finished archive (called only after it was renamed into place).
    public func recordArchive(_ record: ArchiveRecord) throws(StateError) {
        var record = record
        try write { db in try record.insert(db) }
    }

    /// The chain an incremental backup extends: the newest archive and every
    /// archive it builds on, oldest first, back to the last full backup. Empty
    /// when the account has no archive yet. Archives whose file is gone end the
    /// chain there (an incremental on a missing base would not restore).
    public func archiveChain(account accountId: Int64) throws(StateError) -> [ArchiveRecord] {
        let all = try read { db in
            try ArchiveRecord.filter(ArchiveRecord.Columns.accountId == accountId)
                .order(ArchiveRecord.Columns.id.desc).fetchAll(db)
        }
        guard let newest = all.first else { return [] }
        let byId = Dictionary(all.map { ($0.archiveId, $0) }, uniquingKeysWith: { first, _ in first })
        var chain = [newest]
        var cursor = newest
        while let previous = cursor.previousArchiveId {
            guard let record = byId[previous] else { break }
            chain.append(record)
            cursor = record
        }
        return chain.reversed()
    }
}
