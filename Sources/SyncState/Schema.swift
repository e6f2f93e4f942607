import GRDB

/// The schema, as an ordered list of named migrations.
///
/// Migrations are append-only: a released migration is never edited, a change
/// is a new migration ("v2-...") so existing state files upgrade in place.
/// `eraseDatabaseOnSchemaChange` stays off — wiping the state would make the
/// next run treat every message as new and duplicate whole mailboxes.
public enum StateSchema {
    /// Names of all migrations this build knows, in order.
    public static var migrationNames: [String] { migrator.migrations }

    public static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-initial") { db in
            try db.create(table: AccountRecord.databaseTableName) { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("name", .text).notNull().unique()
                t.column("created", .datetime).notNull()
            }

            try db.create(table: MailboxPairRecord.databaseTableName) { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("accountId", .integer).notNull()
                    .references(AccountRecord.databaseTableName, onDelete: .cascade)
                t.column("farName", .text).notNull()
                t.column("nearName", .text).notNull()
                t.column("farUidValidity", .integer)
                t.column("farUidNext", .integer)
                t.column("farHighestModSeq", .integer)
                t.column("nearUidValidity", .integer).notNull()
                t.column("nearScanToken", .text)
                t.column("specialUse", .text)
                t.column("status", .text).notNull().defaults(to: MailboxPairStatus.active.rawValue)
                    .check(sql: "status IN ('active', 'deleted')")
                t.column("lastSyncAt", .datetime)
                t.uniqueKey(["accountId", "farName"])
                t.uniqueKey(["accountId", "nearName"])
            }

            try db.create(table: MessagePairRecord.databaseTableName) { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("mailboxPairId", .integer).notNull()
                    .references(MailboxPairRecord.databaseTableName, onDelete: .cascade)
                t.column("farUid", .integer)
                t.column("nearName", .text)
                t.column("flags", .text).notNull().defaults(to: "")
                t.column("size", .integer).notNull()
                t.column("internalDate", .integer)
                t.column("messageId", .text)
                t.column("contentHash", .blob)
                t.column("status", .text).notNull()
                    .check(sql: "status IN ('paired', 'pendingToFar', 'pendingToNear', 'pendingExpungeFar', 'pendingExpungeNear')")
                t.column("transferId", .text).unique()
                t.column("updatedAt", .datetime).notNull()
                // The two rules that make double pairing impossible. SQLite
                // treats NULLs as distinct, so rows still waiting for one side
                // do not collide with each other.
                t.uniqueKey(["mailboxPairId", "farUid"])
                t.uniqueKey(["mailboxPairId", "nearName"])
                // A row that knows neither side would be unmatchable forever.
                t.check(sql: "farUid IS NOT NULL OR nearName IS NOT NULL")
            }
            // Re-pairing after a UIDVALIDITY reset looks messages up by these.
            try db.create(
                index: "messagePair_repair", on: MessagePairRecord.databaseTableName,
                columns: ["mailboxPairId", "messageId", "size"])
            // Resuming a run asks for unfinished rows only; they are few, so a
            // partial index keeps that query cheap without indexing every pair.
            try db.create(
                index: "messagePair_unfinished", on: MessagePairRecord.databaseTableName,
                columns: ["mailboxPairId", "status"],
                condition: MessagePairRecord.Columns.status != MessagePairStatus.paired.rawValue)

            try db.create(table: RunRecord.databaseTableName) { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("accountId", .integer).notNull().indexed()
                    .references(AccountRecord.databaseTableName, onDelete: .cascade)
                t.column("mailboxPairId", .integer)
                    .references(MailboxPairRecord.databaseTableName, onDelete: .setNull)
                t.column("startedAt", .datetime).notNull()
                t.column("finishedAt", .datetime)
                for counter in ["fetched", "appended", "flagsChanged", "expungedFar", "expungedNear", "moved"] {
                    t.column(counter, .integer).notNull().defaults(to: 0)
                }
                t.column("lastError", .text)
            }

            try db.create(table: DaemonStatusRecord.databaseTableName) { t in
                t.primaryKey("accountId", .integer)
                    .references(AccountRecord.databaseTableName, onDelete: .cascade)
                t.column("state", .text).notNull()
                t.column("since", .datetime).notNull()
                t.column("detail", .text)
                t.column("lastSuccessAt", .datetime)
                t.column("lastError", .text)
                t.column("lastErrorAt", .datetime)
            }
        }
        // Backups made by `ferrymail backup`, so `--incremental` finds the chain
        // it extends without the user naming earlier archives.
        migrator.registerMigration("v2-archives") { db in
            try db.create(table: ArchiveRecord.databaseTableName) { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("accountId", .integer).notNull()
                    .references(AccountRecord.databaseTableName, onDelete: .cascade)
                t.column("archiveId", .text).notNull().unique()
                t.column("path", .text).notNull()
                t.column("previousArchiveId", .text)
                t.column("createdAt", .datetime).notNull()
                t.column("messages", .integer).notNull()
                t.column("bytes", .integer).notNull()
            }
        }
        return migrator
    }
}
