import Foundation
import Logging
import Synchronization
import Testing
@testable import Maildir

/// Collects warnings so tests can check that each bad path is logged once.
final class CapturedLog: Sendable {
    let lines = Mutex<[String]>([])
    var logger: Logger {
        Logger(label: "test") { _ in Handler(log: self) }
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        var metadataProvider: Logger.MetadataProvider?
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let text = "\(event.level) \(event.message)"
            log.lines.withLock { $0.append(text) }
        }
    }
}

@Suite struct DeliveryTests {
    @Test func deliveredMessageIsCompleteDatedAndPrivate() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        let date = Date(timeIntervalSince1970: 1_234_567_890)
        let body = "Subject: hello\r\n\r\nbody text\r\n"
        let entry = try deliver(folder, body, flags: MessageFlags(system: [.seen, .flagged]), date: date)

        #expect(entry.subdirectory == .cur)
        #expect(entry.size == body.utf8.count)
        #expect(entry.fileName.hasSuffix(",S=\(body.utf8.count):2,FS"))
        #expect(directoryListing(dir.sub("tmp")).isEmpty)
        #expect(directoryListing(dir.sub("cur")) == [entry.fileName])
        let attributes = try FileManager.default.attributesOfItem(atPath: dir.sub("cur/" + entry.fileName))
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect((attributes[.modificationDate] as? Date) == date)

        let opened = try folder.openMessage(baseName: entry.baseName)
        #expect(opened.size == body.utf8.count)
        #expect(opened.internalDate == date)
        #expect(String(decoding: try opened.fileHandle.readToEnd() ?? Data(), as: UTF8.self) == body)

        let scan = try folder.scan()
        #expect(scan.entries == [entry])
        #expect(scan.issues.isEmpty)
    }

    @Test func stagedDeliveriesAppearOnlyWhenPublishedCompleteAndDated() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        let date = Date(timeIntervalSince1970: 1_234_567_890)
        var entries: [MaildirEntry] = []
        for index in 0..<3 {
            let delivery = try folder.beginDelivery()
            try delivery.write(Array("Subject: \(index)\r\n\r\nbody \(index)\r\n".utf8))
            entries.append(try delivery.stage(flags: index == 0 ? .none : MessageFlags(system: [.seen]), internalDate: date, toNew: index == 0))
        }
        // Staged: complete in tmp/, invisible to any reader.
        #expect(directoryListing(dir.sub("tmp")).count == 3)
        #expect(directoryListing(dir.sub("cur")).isEmpty && directoryListing(dir.sub("new")).isEmpty)
        #expect(try folder.scan().entries.isEmpty)

        #expect(try folder.publishStaged() == 3)
        #expect(directoryListing(dir.sub("tmp")).isEmpty)
        #expect(directoryListing(dir.sub("new")) == [entries[0].fileName])
        #expect(directoryListing(dir.sub("cur")).sorted() == [entries[1].fileName, entries[2].fileName].sorted())
        #expect(try folder.scan().entries.sorted { $0.fileName < $1.fileName } == entries.sorted { $0.fileName < $1.fileName })
        for (index, entry) in entries.enumerated() {
            #expect(try readBody(folder, entry.baseName) == "Subject: \(index)\r\n\r\nbody \(index)\r\n")
            #expect(try folder.openMessage(baseName: entry.baseName).internalDate == date)
        }
        #expect(try folder.publishStaged() == 0, "a second publish has nothing left")
    }

    @Test func aGroupSyncSlowerThanTheLimitMakesTheFolderPreferOneFsyncPerFile() throws {
        for (limit, expected) in [(Duration.zero, true), (.seconds(60), false)] {
            let dir = try ScratchDirectory()
            let folder = try MaildirStore(root: dir.path, slowGroupSync: limit).folder(named: "INBOX", create: true)
            #expect(!folder.prefersFileSync)
            let delivery = try folder.beginDelivery()
            try delivery.write(Array("x".utf8))
            _ = try delivery.stage()
            #expect(try folder.publishStaged() == 1)
            #expect(folder.prefersFileSync == expected, "limit \(limit)")
        }
    }

    @Test func stagedDeliveriesNeverPublishedAreRemovedWithTheirFolder() throws {
        let dir = try ScratchDirectory()
        do {
            let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
            let delivery = try folder.beginDelivery()
            try delivery.write(Array("x".utf8))
            _ = try delivery.stage()
            #expect(directoryListing(dir.sub("tmp")).count == 1)
        }
        #expect(directoryListing(dir.sub("tmp")).isEmpty)
        #expect(directoryListing(dir.sub("cur")).isEmpty && directoryListing(dir.sub("new")).isEmpty)
    }

    @Test func unseenMailGoesToNewWithoutInfoAndFlagChangeMovesItToCur() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        let entry = try deliver(folder, "x", toNew: true)
        #expect(entry.subdirectory == .new)
        #expect(!entry.fileName.contains(":"))
        #expect(directoryListing(dir.sub("new")) == [entry.fileName])

        let flagged = try folder.setFlags(baseName: entry.baseName, flags: MessageFlags(system: [.seen]))
        #expect(flagged.baseName == entry.baseName)
        #expect(flagged.fileName == entry.baseName + ":2,S")
        #expect(directoryListing(dir.sub("new")).isEmpty)
        #expect(directoryListing(dir.sub("cur")) == [flagged.fileName])
        #expect(try readBody(folder, entry.baseName) == "x")

        // toNew with flags is delivered to cur/, as the spec gives new/ files no info.
        let seen = try deliver(folder, "y", flags: MessageFlags(system: [.seen]), toNew: true)
        #expect(seen.subdirectory == .cur)
    }

    @Test func setFlagsFollowsARenameByAMailReader() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        let entry = try deliver(folder, "body")
        // A reader (mutt) marks it seen and replied behind our back.
        let readerName = entry.baseName + ":2,RS"
        #expect(rename(dir.sub("cur/" + entry.fileName), dir.sub("cur/" + readerName)) == 0)
        let result = try folder.setFlags(baseName: entry.baseName, flags: [.flagged], keywords: ["$Junk"], hint: entry.fileName)
        #expect(result.fileName == entry.baseName + ":2,Fa")
        #expect(result.flags == MessageFlags(system: [.flagged], keywords: ["$Junk"]))
        #expect(directoryListing(dir.sub("cur")) == [result.fileName])
    }

    @Test func unknownInfoCharactersSurviveFlagChanges() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        try FileManager.default.createDirectory(atPath: dir.sub("cur"), withIntermediateDirectories: true)
        try writeFile(dir.sub("cur/100.M1P1.other:2,SXq"), "m")
        let result = try folder.setFlags(baseName: "100.M1P1.other", flags: MessageFlags(system: [.answered]))
        #expect(result.fileName == "100.M1P1.other:2,RXq")
    }

    @Test func batchedDeliveryAndAbort() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        var names: [String] = []
        for i in 0..<20 {
            let d = try folder.beginDelivery()
            try d.write(Array("message \(i)".utf8))
            names.append(try d.commit(syncDirectory: false).fileName)
        }
        try folder.syncDirectories()
        #expect(directoryListing(dir.sub("cur")) == names.sorted())

        let aborted = try folder.beginDelivery()
        try aborted.write(Array("partial".utf8))
        #expect(directoryListing(dir.sub("tmp")).count == 1)
        aborted.abort()
        #expect(directoryListing(dir.sub("tmp")).isEmpty)
        #expect(throws: MaildirError.deliveryFinished(folder: "INBOX")) { try aborted.write(Array("x".utf8)) }
        #expect(throws: MaildirError.deliveryFinished(folder: "INBOX")) { try aborted.commit() }

        do {
            let dropped = try folder.beginDelivery()
            try dropped.write(Array("never committed".utf8))
        }
        #expect(directoryListing(dir.sub("tmp")).isEmpty, "releasing an uncommitted delivery removes its file")
        #expect(directoryListing(dir.sub("cur")).count == 20)
    }

    @Test func removeAndMoveKeepBaseNameAndTranslateKeywordLetters() throws {
        let dir = try ScratchDirectory()
        let store = try MaildirStore(root: dir.path)
        let inbox = try store.folder(named: "INBOX", create: true)
        let archive = try store.folder(named: "Archive", create: true)
        // Give Archive a different letter assignment than INBOX will get.
        _ = try archive.keywordMask(for: ["Other", "$Junk"])
        let entry = try deliver(inbox, "move me", flags: MessageFlags(system: [.seen], keywords: ["$Junk"]))
        #expect(entry.fileName.hasSuffix(":2,Sa"))

        let moved = try inbox.move(baseName: entry.baseName, to: archive)
        #expect(moved.baseName == entry.baseName)
        #expect(moved.fileName.hasSuffix(":2,Sb"), "letter b is $Junk in Archive: \(moved.fileName)")
        #expect(try archive.scan().entries.map(\.flags) == [MessageFlags(system: [.seen], keywords: ["$Junk"])])
        #expect(try inbox.scan().entries.isEmpty)
        #expect(try readBody(archive, entry.baseName) == "move me")

        try archive.remove(baseName: entry.baseName)
        #expect(try archive.scan().entries.isEmpty)
        #expect(throws: MaildirError.messageNotFound(folder: "Archive", baseName: entry.baseName)) {
            try archive.remove(baseName: entry.baseName)
        }
    }

    @Test func cleansOnlyStaleTemporaryFiles() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        try writeFile(dir.sub("tmp/abandoned"), "partial")
        let inProgress = try folder.beginDelivery()
        #expect(try folder.cleanStaleTemporaryFiles() == 0)
        #expect(directoryListing(dir.sub("tmp")).count == 2)
        #expect(try folder.cleanStaleTemporaryFiles(now: Date().addingTimeInterval(35 * 3600)) == 0)
        #expect(try folder.cleanStaleTemporaryFiles(now: Date().addingTimeInterval(37 * 3600)) == 2)
        #expect(directoryListing(dir.sub("tmp")).isEmpty)
        inProgress.abort()
    }
}

@Suite struct KeywordStorageTests {
    @Test func keywordsAreStoredAsDovecotDoes() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        // A table Dovecot already wrote is respected, gaps included.
        try writeFile(dir.sub("dovecot-keywords"), "0 $Forwarded\n2 $Label1\n")
        let entry = try deliver(folder, "k", flags: MessageFlags(system: [.seen], keywords: ["$Label1", "$Junk", "$Forwarded"]))
        #expect(entry.fileName.hasSuffix(":2,Sabc"))
        #expect(try String(contentsOfFile: dir.sub("dovecot-keywords"), encoding: .utf8) == "0 $Forwarded\n1 $Junk\n2 $Label1\n")
        #expect(!FileManager.default.fileExists(atPath: dir.sub("dovecot-keywords.lock")))
        let scanned = try folder.scan().entries
        #expect(scanned.first?.flags.keywords == ["$Forwarded", "$Junk", "$Label1"])
    }

    @Test func twentySeventhKeywordIsAnErrorNamingFolderAndKeyword() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "Lists/swift", create: true)
        let keywords = (0..<26).map { "K\($0)" }
        let entry = try deliver(folder, "many", flags: MessageFlags(keywords: keywords))
        #expect(entry.fileName.hasSuffix(":2,abcdefghijklmnopqrstuvwxyz"))
        let error = #expect(throws: MaildirError.self) {
            try folder.setFlags(baseName: entry.baseName, flags: MessageFlags(keywords: keywords + ["$Overflow"]))
        }
        #expect(error == .keywordLimitReached(folder: "Lists/swift", keyword: "$Overflow"))
        #expect(error?.description.contains("Lists/swift") == true)
        #expect(error?.description.contains("$Overflow") == true)
        // Nothing changed on disk.
        #expect(try folder.scan().entries.map(\.fileName) == [entry.fileName])
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/dovecot-keywords.lock"))
    }

    @Test func invalidKeywordIsRefused() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        let d = try folder.beginDelivery()
        try d.write(Array("x".utf8))
        #expect(throws: MaildirError.self) { try d.commit(flags: MessageFlags(keywords: ["bad word"])) }
        #expect(directoryListing(dir.sub("tmp")).isEmpty)
        #expect(directoryListing(dir.sub("cur")).isEmpty)
    }

    @Test func concurrentAllocationLosesNoKeyword() async throws {
        let dir = try ScratchDirectory()
        let store = try MaildirStore(root: dir.path)
        _ = try store.folder(named: "INBOX", create: true)
        // Separate folder objects, as separate processes would have, share only the disk.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<8 {
                group.addTask {
                    let folder = try store.folder(named: "INBOX")
                    _ = try folder.keywordMask(for: ["T\(i)a", "T\(i)b", "Shared"])
                }
            }
            try await group.waitForAll()
        }
        let table = KeywordTable(parsing: try String(contentsOfFile: dir.sub("dovecot-keywords"), encoding: .utf8))
        #expect(Set(table.names.compactMap { $0 }) == Set((0..<8).flatMap { ["T\($0)a", "T\($0)b"] } + ["Shared"]))
    }
}

@Suite struct ScanTests {
    @Test func foreignFilesAreReportedOnceAndNeverTouched() throws {
        let dir = try ScratchDirectory()
        let log = CapturedLog()
        let store = try MaildirStore(root: dir.sub("root"), logger: log.logger)
        let folder = try store.folder(named: "INBOX", create: true)
        let good = try deliver(folder, "good")
        let root = dir.sub("root")
        try writeFile(root + "/cur/.hidden", "x")
        try writeFile(root + "/cur/noinfo", "x")
        try writeFile(root + "/cur/empty,S=0:2,S", "")
        try writeFile(root + "/cur/old:1,S", "x")
        try writeFile(root + "/new/123.M1P2.mda", "from procmail")
        try FileManager.default.createDirectory(atPath: root + "/cur/subdir", withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(atPath: root + "/cur/link:2,S", withDestinationPath: "/etc/passwd")
        let before = directoryListing(root + "/cur")

        let first = try folder.scan()
        #expect(Set(first.entries.map(\.baseName)) == [good.baseName, "123.M1P2.mda"])
        #expect(Set(first.issues.map { ($0.path as NSString).lastPathComponent }) == [".hidden", "noinfo", "empty,S=0:2,S", "old:1,S", "subdir", "link:2,S"])
        _ = try folder.scan()
        #expect(directoryListing(root + "/cur") == before)
        let warnings = log.lines.withLock { $0 }
        #expect(warnings.count == 6, "one warning per bad path across two scans: \(warnings)")
    }

    @Test func duplicateBaseNameIsReported() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        try writeFile(dir.sub("new/5.M1P1.h"), "a")
        try writeFile(dir.sub("cur/5.M1P1.h:2,S"), "a")
        let scan = try folder.scan()
        #expect(scan.entries.map(\.fileName) == ["5.M1P1.h"], "new/ is read first, and the first file wins")
        #expect(scan.issues.map(\.reason) == ["duplicate base name 5.M1P1.h"])

        // Streamed, the caller says which base names it holds; a refused file is reported the same way.
        var seen: Set<String> = [], accepted: [String] = []
        let streamed = try folder.scan { entry, base in
            guard seen.insert(String(base)).inserted else { return false }
            accepted.append(entry.fileName)
            return true
        }
        #expect(accepted == ["5.M1P1.h"])
        #expect(streamed.issues == scan.issues)
        #expect(streamed.token.sameState(as: scan.token))
    }

    @Test func tokenDetectsEveryKindOfChange() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        let entry = try deliver(folder, "a")
        func settle() {
            // Age the directories instead of sleeping: the token only trusts
            // stamps older than its settle interval.
            let old = timespec(tv_sec: time(nil) - 60, tv_nsec: 0)
            for sub in ["cur", "new", "dovecot-keywords"] { _ = utimensat(AT_FDCWD, dir.sub(sub), [old, old], 0) }
        }
        settle()
        var token = try folder.scan().token
        #expect(token.isSettled)
        #expect(try folder.scanIfChanged(since: token) == nil)

        let changes: [() throws -> Void] = [
            { _ = try deliver(folder, "b") },
            { _ = try folder.setFlags(baseName: entry.baseName, flags: MessageFlags(system: [.seen])) },
            { _ = try deliver(folder, "c", toNew: true) },
            { _ = try folder.keywordMask(for: ["$New"]) },
            { try folder.remove(baseName: entry.baseName) },
        ]
        for change in changes {
            try change()
            let rescan = try folder.scanIfChanged(since: token)
            #expect(rescan != nil)
            settle()
            token = try folder.scan().token
            #expect(try folder.scanIfChanged(since: token) == nil)
        }
        // An unsettled token never skips a scan.
        _ = try deliver(folder, "d")
        let fresh = try folder.scan().token
        #expect(!fresh.isSettled)
        #expect(try folder.scanIfChanged(since: fresh) != nil)
    }
}
