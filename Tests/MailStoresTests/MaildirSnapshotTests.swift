import Foundation
@testable import MailStores
import SyncEngine
import SyncState
import TestSupport
import Testing

/// `MaildirMailStore` remembers a folder's files and its own changes to them,
/// so a run that changed a folder can prove it was the only writer, and a
/// later listing costs one `readdir`. Nothing another program did may ever
/// be hidden by that memory.
@Suite("Maildir snapshots: own changes proven, others' never hidden")
struct MaildirSnapshotTests {
    /// A store with INBOX listed once (the snapshot) and three messages
    /// appended by the store itself.
    private func storeWithOwnChanges() async throws -> (MaildirMailStore, TemporaryDirectory, [MessageKey]) {
        let (store, directory) = try await storeWithInbox(prefix: "ferrymail-snapshot")
        _ = try await store.listing("INBOX")
        var keys: [MessageKey] = []
        for index in 0..<3 {
            keys.append(try #require(try await store.append(message(index), to: "INBOX", flags: ["\\Seen"])))
        }
        try await store.flush("INBOX")
        return (store, directory, keys)
    }

    /// A store over a new temporary directory, with an empty INBOX.
    private func storeWithInbox(prefix: String) async throws -> (MaildirMailStore, TemporaryDirectory) {
        let directory = try TemporaryDirectory(prefix: prefix)
        let store = try MaildirMailStore(root: directory.path + "/Mail", account: "test", logger: quietLogger)
        try await store.createMailbox("INBOX", role: nil)
        return (store, directory)
    }

    private func cur(_ directory: TemporaryDirectory) -> String { directory.path + "/Mail/cur" }

    private func fileName(of key: MessageKey, in directory: TemporaryDirectory) throws -> String {
        guard case .name(let base) = key else { throw TestFailure("not a Maildir key: \(key)") }
        let files = try FileManager.default.contentsOfDirectory(atPath: cur(directory))
        return try #require(files.first { $0.hasPrefix(base + ":") })
    }

    @Test("a base name found twice (new/ and cur/) is listed once, as the file in new/, and the folder is read again next time")
    func aBaseNameFoundTwiceIsListedOnce() async throws {
        let (store, directory) = try await storeWithInbox(prefix: "ferrymail-twice")
        defer { directory.remove() }
        let body = Data("Subject: twice\r\n\r\nbody\r\n".utf8)
        try body.write(to: URL(fileURLWithPath: directory.path + "/Mail/new/5.M1P1.h"))
        try body.write(to: URL(fileURLWithPath: cur(directory) + "/5.M1P1.h:2,S"))
        try body.write(to: URL(fileURLWithPath: cur(directory) + "/6.M1P1.h:2,F"))
        let listed = try await store.listing("INBOX").sorted { $0.key < $1.key }
        #expect(listed.map(\.key) == [.name("5.M1P1.h"), .name("6.M1P1.h")])
        #expect(listed.map(\.flags) == [.none, ["\\Flagged"]])
        #expect(listed.allSatisfy { $0.size == Int64(body.count) && $0.internalDate != nil })
        // The folder holds a file more than the listing: it never settles, and is read again each time.
        #expect(try await store.settledStatus(of: "INBOX") == nil)
        #expect(try await store.listing("INBOX").sorted { $0.key < $1.key } == listed)
    }

    @Test("a Maildir listing's flags are already in the engine's canonical form, so views share the listing")
    func listedFlagsAreCanonical() async throws {
        let (store, directory) = try await storeWithInbox(prefix: "ferrymail-canonical")
        defer { directory.remove() }
        for flags: SyncState.MessageFlags in [.none, ["\\Seen"], ["\\Deleted", "\\Flagged"], ["$Work", "\\Answered", "\\Draft", "\\Seen"]] {
            _ = try await store.append(message(flags.names.count), to: "INBOX", flags: flags)
        }
        let listed = try await store.listing("INBOX")
        #expect(listed.count == 4)
        for message in listed { #expect(FlagMerge.normalized(message.flags) == message.flags, "\(message.flags)") }
    }

    @Test("downloads wait in tmp/ for the flush, and go straight to cur/ once a group sync was too slow")
    func slowGroupSyncSwitchesToOneFsyncPerFile() async throws {
        let directory = try TemporaryDirectory(prefix: "ferrymail-groupsync")
        defer { directory.remove() }
        let store = try MaildirMailStore(root: directory.path + "/Mail", slowGroupSync: .zero, account: "test", logger: quietLogger)
        try await store.createMailbox("INBOX", role: nil)
        func appendWithoutFlush(_ index: Int) async throws {
            let body = message(index)
            let writer = try await store.beginAppend(to: "INBOX", AppendEnvelope(
                flags: ["\\Seen"], internalDate: 1_700_000_000, size: Int64(body.count), messageId: nil, transferId: "t\(index)"))
            try await writer.write(body)
            _ = try await writer.finish()
        }
        try await appendWithoutFlush(1)
        #expect(try await store.listing("INBOX").isEmpty, "staged until the flush")
        try await store.flush("INBOX")
        #expect(try await store.listing("INBOX").count == 1)
        // That group's sync took longer than the limit (zero): one fsync per file from now on.
        try await appendWithoutFlush(2)
        #expect(try await store.listing("INBOX").count == 2, "delivered durably on its own, without waiting for a flush")
    }

    @Test("a file's name is read back whole from its base name; a name that does not start with its base name gives none")
    func folderFilesKeepWholeNames() {
        var files = FolderFiles()
        files["1795790911.M338573P16185Q1875.vm,S=60005"] = "1795790911.M338573P16185Q1875.vm,S=60005:2,FS"
        files["plain"] = "plain"
        files["odd"] = "elsewhere:2,S"
        #expect(files["1795790911.M338573P16185Q1875.vm,S=60005"] == "1795790911.M338573P16185Q1875.vm,S=60005:2,FS")
        #expect(files["plain"] == "plain")
        #expect(files["odd"] == nil, "held, but only a directory read can find it")
        #expect(files.holds(base: "1795790911.M338573P16185Q1875.vm,S=60005", fileName: "1795790911.M338573P16185Q1875.vm,S=60005:2,FS"))
        #expect(!files.holds(base: "1795790911.M338573P16185Q1875.vm,S=60005", fileName: "1795790911.M338573P16185Q1875.vm,S=60005:2,S"))
        #expect(!files.holds(base: "plain", fileName: "plain:2,"))
        #expect(!files.holds(base: "odd", fileName: "elsewhere:2,S"))
        #expect(!files.holds(base: "missing", fileName: "missing"))
        #expect(files.count == 3 && files.contains("odd"))
        #expect(!files.isExact, "a file it cannot name leaves it unable to prove a directory's contents")
        files["odd"] = nil
        #expect(files.count == 2 && !files.contains("odd") && files.contains("plain"))
    }

    @Test("the table agrees with a dictionary of names through growth, renames and removals")
    func folderFilesAgreeWithADictionary() {
        var generator = SystemRandomNumberGenerator()
        var files = FolderFiles(minimumCapacity: 10)
        var model: [String: String] = [:]
        // Few distinct names, so the same ones are renamed and removed often
        // (runs of the table shift back on removals).
        let bases = (0..<3000).map { "17957909\($0 % 7).M\($0)P16185Q\($0 % 13).vm,S=\($0 * 31)" }
        let suffixes = [":2,", ":2,S", ":2,FS", ":2,DFRST", ""]
        for step in 0..<40_000 {
            let base = bases[Int.random(in: 0..<(step < 6000 ? 300 : bases.count), using: &generator)]
            if Int.random(in: 0..<10, using: &generator) < 3 {
                files[base] = nil
                model[base] = nil
            } else {
                let name = base + suffixes[Int.random(in: 0..<suffixes.count, using: &generator)]
                files[base] = name
                model[base] = name
            }
        }
        #expect(files.count == model.count && files.isExact)
        var wrong = 0
        for base in bases {
            if files[base] != model[base] || files.contains(base) != (model[base] != nil) { wrong += 1 }
            if let name = model[base] {
                if !files.holds(base: base, fileName: name) || files.holds(base: base, fileName: name + "x") { wrong += 1 }
                if !files.holds(fileName: name, baseEnd: name.index(name.startIndex, offsetBy: base.count)) { wrong += 1 }
            }
        }
        #expect(wrong == 0)
        // Names read from a directory.
        var listed = FolderFiles()
        for (base, name) in model {
            let inserted = listed.insertIfAbsent(fileName: name, baseEnd: name.index(name.startIndex, offsetBy: base.count))
            #expect(inserted)
        }
        #expect(listed.count == model.count && listed.isExact && model.allSatisfy { listed[$0.key] == $0.value })
        var fewer = files
        let gone = Array(model.keys.prefix(25))
        for base in gone { fewer[base] = nil }
        #expect(files.keys(missingFrom: fewer) == Set(gone.map(files.key(of:))))
        #expect(files.count == model.count, "a copy's removals leave the original alone")
    }

    @Test("a base name read twice gives no file name and proves nothing; the other names still give theirs")
    func folderFilesDoubtASecondFileOfABaseName() {
        var files = FolderFiles()
        let first = "1795790911.M1P2Q3.vm,S=10:2,S", second = "1795790911.M1P2Q3.vm,S=10:2,F", other = "1795790912.M1P2Q4.vm,S=10:2,"
        let base = "1795790911.M1P2Q3.vm,S=10"
        func insert(_ name: String) -> Bool { files.insertIfAbsent(fileName: name, baseEnd: name.index(name.startIndex, offsetBy: base.count)) }
        let inserted = [insert(first), insert(other)]
        #expect(inserted == [true, true] && files.isExact && files[base] == first)
        let again = insert(second)
        #expect(!again)
        #expect(files[base] == nil && !files.holds(base: base, fileName: first) && !files.holds(base: base, fileName: second))
        #expect(!files.isExact)
        files[base] = nil
        #expect(files.contains(base), "the other file of the base name may still be there")
        #expect(files["1795790912.M1P2Q4.vm,S=10"] == other)
    }

    @Test("a proof equals one read afresh after the same changes, and not one of another set of names")
    func folderProofs() {
        var kept = FolderProof()
        for name in ["a:2,S", "b:2,", "c"] { kept.add(name) }
        kept.rename("a:2,S", to: "a:2,FS")
        kept.remove("b:2,")
        kept.add("d:2,T")
        var read = FolderProof()
        for name in ["c", "d:2,T", "a:2,FS"] { read.add(name) }
        #expect(kept == read && kept.count == 3)
        var other = FolderProof()
        for name in ["c", "d:2,T", "a:2,S"] { other.add(name) }
        #expect(kept != other, "as many files, one name another")
        other.rename("a:2,S", to: "a:2,FS")
        #expect(kept == other)
        other.add("e")
        #expect(kept != other)
    }

    @Test("a folder changed only by this store settles to a new token, and that token then lists as unchanged")
    func ownChangesSettle() async throws {
        let (store, directory, keys) = try await storeWithOwnChanges()
        defer { directory.remove() }
        try await store.setFlags([FlagChange(keys: [keys[0]], add: ["\\Flagged"], remove: [])], in: "INBOX")
        try await store.expunge([keys[1]], in: "INBOX")
        let before = try await store.select("INBOX")

        let settled = try #require(try await store.settledStatus(of: "INBOX"))
        #expect(settled.scanToken != nil)
        #expect(settled.scanToken != before.scanToken, "the token before settling was taken too soon after the changes")
        let watermark = SyncWatermark(scanToken: settled.scanToken)
        #expect(try await store.messages(in: "INBOX", changedSince: watermark) == .delta(changed: [], vanished: []))

        // A new process, with no memory, agrees from the token alone.
        let fresh = try MaildirMailStore(root: directory.path + "/Mail", account: "test", logger: quietLogger)
        #expect(try await fresh.messages(in: "INBOX", changedSince: watermark) == .delta(changed: [], vanished: []))
    }

    @Test("another program's new file, flag change or deletion makes the settle check fail")
    func othersChangesAreNeverAdopted() async throws {
        for change in ["new file", "flag change", "deletion"] {
            let (store, directory, _) = try await storeWithOwnChanges()
            defer { directory.remove() }
            let files = try FileManager.default.contentsOfDirectory(atPath: cur(directory)).sorted()
            switch change {
            case "new file":
                try Data(message(9)).write(to: URL(fileURLWithPath: directory.path + "/Mail/new/1700000000.M9P9.elsewhere"))
            case "flag change":
                try FileManager.default.moveItem(atPath: cur(directory) + "/" + files[0], toPath: cur(directory) + "/" + files[0] + "F")
            default:
                try FileManager.default.removeItem(atPath: cur(directory) + "/" + files[0])
            }
            #expect(try await store.settledStatus(of: "INBOX") == nil, "\(change)")
        }
    }

    @Test("a flag change by another program under this store's own flag change is not folded into the snapshot")
    func foldedFlagChangeIsNotHidden() async throws {
        let (store, directory, keys) = try await storeWithOwnChanges()
        defer { directory.remove() }
        let file = try fileName(of: keys[0], in: directory)
        // Another program flags the message; then this store changes it too.
        try FileManager.default.moveItem(atPath: cur(directory) + "/" + file, toPath: cur(directory) + "/" + file.replacingOccurrences(of: ":2,S", with: ":2,FS"))
        try await store.setFlags([FlagChange(keys: [keys[0]], add: ["\\Answered"], remove: [])], in: "INBOX")
        #expect(try await store.settledStatus(of: "INBOX") == nil)
    }

    @Test("beyond its limit of kept file names the store forgets the least recently used folder: it still works, and is listed in full")
    func leastRecentlyUsedFolderIsForgottenBeyondTheLimit() async throws {
        for limit in [150_000, 5] {
            let directory = try TemporaryDirectory(prefix: "ferrymail-retained")
            defer { directory.remove() }
            let store = try MaildirMailStore(root: directory.path + "/Mail", retainedFileNames: limit, account: "test", logger: quietLogger)
            try await store.createMailbox("INBOX", role: nil)
            try await store.createMailbox("Other", role: nil)
            _ = try await store.listing("INBOX")
            var keys: [MessageKey] = []
            for index in 0..<4 { keys.append(try #require(try await store.append(message(index), to: "INBOX", flags: ["\\Seen"]))) }
            try await store.flush("INBOX")
            let settled = try #require(try await store.settledStatus(of: "INBOX"))
            // INBOX's names and its snapshot are one buffer, counted once: 4.
            _ = try await store.listing("Other")
            #expect(try await store.settledStatus(of: "INBOX") != nil, "INBOX is still remembered")
            // Another folder of four: with a limit of 5, INBOX's names go.
            for index in 0..<4 { _ = try await store.append(message(10 + index, "Other"), to: "Other", flags: []) }
            try await store.flush("Other")

            try Data(message(7)).write(to: URL(fileURLWithPath: directory.path + "/Mail/new/1700000001.M7P7.elsewhere"))
            let listing = try await store.messages(in: "INBOX", changedSince: SyncWatermark(scanToken: settled.scanToken))
            if limit == 5 {
                guard case .full(let messages) = listing else { Issue.record("expected a full listing, got \(listing)"); continue }
                #expect(messages.count == 5)
            } else {
                guard case .delta(let changed, let vanished) = listing else { Issue.record("expected a delta, got \(listing)"); continue }
                #expect(changed.map(\.key) == [.name("1700000001.M7P7.elsewhere")] && vanished.isEmpty)
            }
            // Forgotten or not, the folder's messages are found by base name.
            try await store.setFlags([FlagChange(keys: [keys[2]], add: ["\\Flagged"], remove: [])], in: "INBOX")
            #expect(try await store.listing("INBOX").first { $0.key == keys[2] }?.flags == ["\\Flagged", "\\Seen"])
        }
    }

    @Test("after settling, a listing reports exactly what another program changed, from one readdir")
    func listingFromTheSnapshotIsADelta() async throws {
        let (store, directory, keys) = try await storeWithOwnChanges()
        defer { directory.remove() }
        let settled = try #require(try await store.settledStatus(of: "INBOX"))
        let flagged = try fileName(of: keys[0], in: directory)
        try FileManager.default.moveItem(atPath: cur(directory) + "/" + flagged, toPath: cur(directory) + "/" + flagged + "T")
        try FileManager.default.removeItem(atPath: cur(directory) + "/" + fileName(of: keys[1], in: directory))
        try Data(message(7)).write(to: URL(fileURLWithPath: directory.path + "/Mail/new/1700000001.M7P7.elsewhere"))

        // The table holds hashes, not names: the recorded keys name what vanished.
        let watermark = SyncWatermark(scanToken: settled.scanToken)
        let recorded = RecordedMessages(count: keys.count) { body in
            for key in keys.sorted() where !body(key, ["\\Seen"]) { break }
        }
        guard case .delta(let changed, let vanished) = try await store.messages(in: "INBOX", changedSince: watermark, comparedWith: recorded) else {
            Issue.record("expected a delta listing")
            return
        }
        #expect(vanished == [keys[1]])
        #expect(Set(changed.map(\.key)) == [keys[0], .name("1700000001.M7P7.elsewhere")])
        #expect(changed.first { $0.key == keys[0] }?.flags == ["\\Deleted", "\\Seen"])
        #expect(changed.first { $0.key != keys[0] }?.size == Int64(message(7).count))

        // Without them, a file gone since the snapshot cannot be named: the
        // listing is full.
        let fresh = try MaildirMailStore(root: directory.path + "/Mail", account: "test", logger: quietLogger)
        let expected = try await fresh.listing("INBOX")
        let settledAgain = try #require(try await store.settledStatus(of: "INBOX"))
        try FileManager.default.removeItem(atPath: directory.path + "/Mail/new/1700000001.M7P7.elsewhere")
        guard case .full(let messages) = try await store.messages(in: "INBOX", changedSince: SyncWatermark(scanToken: settledAgain.scanToken)) else {
            Issue.record("expected a full listing")
            return
        }
        #expect(Set(messages.map(\.key)) == Set(expected.map(\.key)).subtracting([.name("1700000001.M7P7.elsewhere")]))
    }

    /// A flag change reads the folder's table; a delivery only its proof.
    @Test("a store that found a folder unchanged without reading it still settles its own changes, and never another's",
          arguments: ["flag change", "delivery"])
    func unchangedListingThenOwnChangesSettle(change: String) async throws {
        for otherProgramWrites in [false, true] {
            let (store, directory, keys) = try await storeWithOwnChanges()
            defer { directory.remove() }
            let watermark = SyncWatermark(scanToken: try #require(try await store.settledStatus(of: "INBOX")).scanToken)

            // The next run, in a new process: the folder is unchanged, so it is not read.
            let next = try MaildirMailStore(root: directory.path + "/Mail", account: "test", logger: quietLogger)
            #expect(try await next.messages(in: "INBOX", changedSince: watermark) == .delta(changed: [], vanished: []))
            if otherProgramWrites {
                try Data(message(8)).write(to: URL(fileURLWithPath: directory.path + "/Mail/new/1700000002.M8P8.elsewhere"))
            }
            if change == "delivery" {
                _ = try await next.append(message(9), to: "INBOX", flags: [])
                try await next.flush("INBOX")
            } else {
                try await next.setFlags([FlagChange(keys: [keys[2]], add: ["\\Flagged"], remove: [])], in: "INBOX")
            }
            let settled = try await next.settledStatus(of: "INBOX")
            #expect((settled == nil) == otherProgramWrites, "\(change); another program wrote: \(otherProgramWrites)")
        }
    }

    @Test("a message another program renamed before this store moves it leaves neither folder proven")
    func anotherProgramsRenameMovedAlongIsNotProvenAway() async throws {
        let (store, directory, keys) = try await storeWithOwnChanges()
        defer { directory.remove() }
        try await store.createMailbox("Archive", role: nil)
        _ = try await store.listing("Archive")
        #expect(try await store.settledStatus(of: "INBOX") != nil)
        #expect(try await store.settledStatus(of: "Archive") != nil)
        let name = try fileName(of: keys[0], in: directory)
        try FileManager.default.moveItem(atPath: cur(directory) + "/" + name, toPath: cur(directory) + "/" + name + "T")
        let moved = try await store.move([keys[0]], from: "INBOX", to: "Archive")
        #expect(moved[keys[0]] == keys[0])
        #expect(try await store.settledStatus(of: "INBOX") == nil)
        #expect(try await store.settledStatus(of: "Archive") == nil, "the moved file's \\Deleted is another program's, unknown to the state")
    }

    @Test("deliveries past the table's size let the table go: the folder still settles, its messages are still found, and another program's change still fails the proof")
    func aLargeDownloadKeepsNoTable() async throws {
        let directory = try TemporaryDirectory(prefix: "ferrymail-no-table")
        defer { directory.remove() }
        let store = try MaildirMailStore(root: directory.path + "/Mail", growableSlots: 16, account: "test", logger: quietLogger)
        try await store.createMailbox("INBOX", role: nil)
        #expect(try await store.listing("INBOX").isEmpty)
        var keys: [MessageKey] = []
        for index in 0..<40 { keys.append(try #require(try await store.append(message(index), to: "INBOX", flags: ["\\Seen"]))) }
        try await store.flush("INBOX")
        let settled = try #require(try await store.settledStatus(of: "INBOX"))
        #expect(try await store.messages(in: "INBOX", changedSince: settled.watermark) == .delta(changed: [], vanished: []))

        // Found again through a table read at its full size.
        try await store.setFlags([FlagChange(keys: [keys[39], keys[0]], add: ["\\Flagged"], remove: [])], in: "INBOX")
        try await store.expunge([keys[1]], in: "INBOX")
        let listed = try await store.listing("INBOX")
        #expect(listed.count == 39 && listed.filter { $0.flags.contains("\\Flagged") }.map(\.key).sorted() == [keys[0], keys[39]].sorted())
        #expect(try await store.settledStatus(of: "INBOX") != nil)

        // Another program's rename between this store's changes.
        for _ in 0..<40 { _ = try await store.append(message(50), to: "INBOX", flags: []) }
        try await store.flush("INBOX")
        let name = try fileName(of: keys[2], in: directory)
        try FileManager.default.moveItem(atPath: cur(directory) + "/" + name, toPath: cur(directory) + "/" + name + "T")
        try await store.setFlags([FlagChange(keys: [keys[3]], add: ["\\Answered"], remove: [])], in: "INBOX")
        #expect(try await store.settledStatus(of: "INBOX") == nil)
    }
}
