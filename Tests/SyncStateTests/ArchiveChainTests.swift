import Foundation
import Testing
import SyncState

@Suite("Archive chain")
struct ArchiveChainTests {
    @Test("an incremental backup's chain runs back to the last full backup, oldest first")
    func chainRunsBackToTheLastFullBackup() throws {
        let store = try StateStore.inMemory()
        let account = try store.account(named: "work").id!
        let other = try store.account(named: "home").id!
        func record(_ id: String, previous: String?, account: Int64 = account) throws {
            try store.recordArchive(ArchiveRecord(accountId: account, archiveId: id, path: "/backups/\(id).tar.gz",
                                                  previousArchiveId: previous, messages: 1, bytes: 10))
        }
        #expect(try store.archiveChain(account: account).isEmpty)
        try record("full-1", previous: nil)
        try record("inc-1", previous: "full-1")
        try record("full-2", previous: nil)
        try record("inc-2", previous: "full-2")
        try record("inc-3", previous: "inc-2")
        try record("home-full", previous: nil, account: other)
        #expect(try store.archiveChain(account: account).map(\.archiveId) == ["full-2", "inc-2", "inc-3"])
        #expect(try store.archiveChain(account: other).map(\.archiveId) == ["home-full"])
    }

    @Test("an archive id is recorded once")
    func archiveIdIsUnique() throws {
        let store = try StateStore.inMemory()
        let account = try store.account(named: "work").id!
        let record = ArchiveRecord(accountId: account, archiveId: "a", path: "/a", previousArchiveId: nil, messages: 0, bytes: 0)
        try store.recordArchive(record)
        #expect(throws: StateError.self) { try store.recordArchive(record) }
    }
}
