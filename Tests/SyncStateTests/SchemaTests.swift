import Foundation
import GRDB
import Testing
import SyncState

@Suite("Schema migrations")
struct SchemaTests {
    @Test("every named migration applies to an empty database")
    func allMigrationsApply() throws {
        let queue = try DatabaseQueue()
        let migrator = StateSchema.migrator
        #expect(migrator.migrations.first == "v1-initial")
        try migrator.migrate(queue)
        try queue.read { db in
            #expect(try migrator.hasCompletedMigrations(db))
            #expect(try migrator.appliedIdentifiers(db) == Set(StateSchema.migrationNames))
            for table in ["account", "mailboxPair", "messagePair", "runJournal", "daemonStatus", "archive"] {
                #expect(try db.tableExists(table), "missing table \(table)")
            }
            let indexes = try db.indexes(on: "messagePair").map(\.name)
            #expect(indexes.contains("messagePair_repair"))
        }
    }

    @Test("rows written under v1 survive migrating to the latest schema")
    func upgradeKeepsData() throws {
        let queue = try DatabaseQueue()
        let migrator = StateSchema.migrator
        try migrator.migrate(queue, upTo: "v1-initial")
        try queue.write { db in
            try db.execute(sql: "INSERT INTO account (name, created) VALUES ('work', '2024-01-01 00:00:00.000')")
        }
        try migrator.migrate(queue)
        let (completed, names) = try queue.read { db in
            (try migrator.hasCompletedMigrations(db), try AccountRecord.fetchAll(db).map(\.name))
        }
        #expect(completed)
        #expect(names == ["work"])
    }

    @Test("a row that knows neither side is refused by the schema")
    func rowNeedsOneSide() throws {
        let queue = try DatabaseQueue()
        try StateSchema.migrator.migrate(queue)
        try queue.write { db in
            var account = AccountRecord(name: "a")
            try account.insert(db)
            var mailbox = MailboxPairRecord(accountId: account.id!, farName: "INBOX", nearName: "INBOX", nearUidValidity: 7)
            try mailbox.insert(db)
            var orphan = MessagePairRecord(mailboxPairId: mailbox.id!, farUid: nil, nearName: nil, size: 1)
            let error = #expect(throws: DatabaseError.self) { try orphan.insert(db) }
            #expect(error?.resultCode == .SQLITE_CONSTRAINT)
        }
    }

    @Test("a state written by a newer ferrymail is refused, naming the unknown migration")
    func schemaTooNew() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/state.sqlite"
        try StateStore.open(at: path).close()
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99-future')")
        }
        try queue.close()

        let error = #expect(throws: StateError.self) { try StateStore.open(at: path) }
        #expect(error == .schemaTooNew(path: path, unknownMigrations: ["v99-future"]))
        #expect(error?.description.contains("newer ferrymail") == true)
        #expect(throws: StateError.self) { try StateStore.openForReading(at: path) }
    }
}
