import Foundation
import Testing
import SyncState

@Suite("State file on disk")
struct FileStoreTests {
    @Test("the state directory is created 0700 and every state file is 0600")
    func permissionBits() throws {
        let dir = try TemporaryDirectory()
        let stateDir = dir.path + "/xdg/ferrymail"
        let path = stateDir + "/state.sqlite"
        let store = try StateStore.open(at: path)
        let account = try store.account(named: "a")
        _ = try store.upsertMailboxPair(account: account.id!, farName: "INBOX", nearName: "INBOX")

        #expect(try permissions(dir.path + "/xdg") == 0o700)
        #expect(try permissions(stateDir) == 0o700)
        for file in [path, path + "-wal", path + "-shm", path + ".lock"] {
            #expect(FileManager.default.fileExists(atPath: file), "\(file) missing")
            #expect(try permissions(file) == 0o600, "\(file)")
        }
        try store.close()
    }

    @Test("a pre-existing world-readable state file is tightened to 0600")
    func tightensExistingFile() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/state.sqlite"
        #expect(FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644]))
        let store = try StateStore.open(at: path)
        #expect(try permissions(path) == 0o600)
        try store.close()
    }

    @Test("a second store on the same state fails fast, naming this process")
    func lockWithinProcess() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/state.sqlite"
        let first = try StateStore.open(at: path)
        let error = #expect(throws: StateError.self) { try StateStore.open(at: path) }
        #expect(error == .locked(path: path, holderPID: getpid()))
        #expect(error?.description == "state database \(path) is in use by another ferrymail process (pid \(getpid())); stop it or use a different state file")

        try first.close()
        try StateStore.open(at: path).close()
    }

    @Test("dropping the last reference to a store releases the lock")
    func lockReleasedOnDeinit() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/state.sqlite"
        do {
            let store = try StateStore.open(at: path)
            _ = try store.account(named: "a")
        }
        let again = try StateStore.open(at: path)
        #expect(try again.accounts().map(\.name) == ["a"])
    }

    @Test("another process holding the lock is named by its pid")
    func lockHeldByChildProcess() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/state.sqlite"
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        child.arguments = ["-c", """
            import fcntl, os, sys, time
            fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.write(fd, b"%d\\n" % os.getpid())
            print("locked", flush=True)
            time.sleep(30)
            """, path + ".lock"]
        let output = Pipe()
        child.standardOutput = output
        try child.run()
        defer {
            // SIGKILL: the child inherits the test runner's signal mask, in
            // which SIGTERM may be blocked.
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()
        }
        let ready = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        try #require(ready.contains("locked"))

        let error = #expect(throws: StateError.self) { try StateStore.open(at: path) }
        #expect(error == .locked(path: path, holderPID: child.processIdentifier))
        #expect(error?.description.contains("pid \(child.processIdentifier)") == true)
    }

    @Test("pending copies and pairs survive closing and reopening")
    func durableAcrossReopen() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/state.sqlite"
        let transferId: String
        let mailboxId: Int64
        do {
            let store = try StateStore.open(at: path)
            let account = try store.account(named: "a")
            mailboxId = try store.upsertMailboxPair(account: account.id!, farName: "INBOX", nearName: "INBOX").id!
            try store.recordPairs([pair(1)], in: mailboxId)
            transferId = try store.recordPending(copies: [PendingCopy(source: .far(uid: 2), size: 9)], in: mailboxId)[0]
            try store.close()
        }
        do {
            let store = try StateStore.open(at: path)
            #expect(try store.pendingCopies(in: mailboxId).map(\.transferId) == [transferId])
            try store.completeCopy(transferId: transferId, nearName: "delivered")
            try store.commitWatermarks(mailbox: mailboxId, farUidNext: 3, farHighestModSeq: nil, nearScanToken: nil)
            try store.close()
        }
        let store = try StateStore.open(at: path)
        #expect(try store.pairs(in: mailboxId).map(\.nearName) == ["msg1", "delivered"])
        #expect(try store.mailboxPair(id: mailboxId).farUidNext == 3)
        try store.close()
    }

    @Test("closing after a large run folds the write-ahead log into the database, so the next start reads no log")
    func closeTruncatesLargeLog() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/state.sqlite"
        let mailboxId: Int64
        do {
            let store = try StateStore.open(at: path)
            let account = try store.account(named: "a")
            mailboxId = try store.upsertMailboxPair(account: account.id!, farName: "INBOX", nearName: "INBOX").id!
            try store.recordPairs((1...20_000).map { pair($0) }, in: mailboxId)
            let logSize = try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int ?? 0
            #expect(logSize > StateStore.largeLogBytes, "the run should have left a large log (\(logSize) bytes)")
            try store.close()
        }
        let logSize = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
        #expect(logSize == 0)
        let store = try StateStore.openForReading(at: path)
        #expect(try store.pairCount(in: mailboxId) == 20_000)
        try store.close()
    }

    @Test("status can read the state while the daemon holds the lock, but cannot write")
    func readOnlyWhileLocked() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/state.sqlite"
        let daemon = try StateStore.open(at: path)
        let account = try daemon.account(named: "a")
        try daemon.setDaemonStatus(account: account.id!, state: .idle, succeeded: true)

        let status = try StateStore.openForReading(at: path)
        #expect(try status.daemonStatuses().first?.daemon?.state == .idle)
        #expect(throws: StateError.self) { try status.account(named: "b") }
        try status.close()
        try daemon.close()
    }

    @Test("a file that is not a database is reported with its path")
    func corrupted() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/state.sqlite"
        try Data(String(repeating: "this is not sqlite ", count: 300).utf8).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: StateError.self) { try StateStore.open(at: path) }
        guard case .corrupted(let reported, _) = error else {
            Issue.record("expected .corrupted, got \(String(describing: error))")
            return
        }
        #expect(reported == path)
        #expect(error?.description.contains(path) == true)
        // The failed open must not keep the lock.
        let lockError = #expect(throws: StateError.self) { try StateStore.open(at: path) }
        if case .locked = lockError { Issue.record("a failed open kept the lock") }
    }

    @Test("openForReading of a missing state says so")
    func missingStateForReading() throws {
        let dir = try TemporaryDirectory()
        let error = #expect(throws: StateError.self) { try StateStore.openForReading(at: dir.path + "/none.sqlite") }
        #expect(error == .io(path: dir.path + "/none.sqlite", operation: "opening state database", errno: ENOENT))
    }

    @Test("the benchmark stores every pair it claims to")
    func benchmarkSmoke() throws {
        let dir = try TemporaryDirectory()
        let result = try StateBenchmark.insertPairs(count: 2_500, batchSize: 1_000, in: dir.path)
        #expect(result.count == 2_500)
        #expect(result.rate > 0)
        let store = try StateStore.open(at: dir.path + "/state.sqlite")
        let mailbox = try #require(try store.mailboxPairs(account: try store.account(named: "bench").id!).first)
        #expect(try store.pairs(in: mailbox.id!).count == 2_500)
        try store.close()
    }
}
