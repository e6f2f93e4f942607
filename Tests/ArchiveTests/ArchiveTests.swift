import Archive
import Foundation
import SyncEngine
import SyncState
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite("Archive")
struct ArchiveTests {
    @Test("backup → tar xzf → manifest → restore round trip")
    func roundTrip() async throws {
        let dir = try TemporaryDirectory(prefix: "ferrymail-archive")
        let account = await makeAccount()
        let path = dir.path + "/backup.tar.gz"
        let summary = try await backUp(account, to: path)
        #expect(summary.messages == 12)
        #expect(summary.links == 1)
        #expect(summary.storedMessages == 11)

        // Any tar reads it as a Maildir.
        let out = dir.path + "/x"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let untar = try runTool("/usr/bin/tar", ["xzf", path, "-C", out])
        #expect(untar.status == 0, "\(untar.output)")
        for folder in ["INBOX", "Sent", "Entwürfe", "Lists/swift", "Lists"] {
            for sub in ["cur", "new", "tmp"] {
                var isDirectory: ObjCBool = false
                #expect(FileManager.default.fileExists(atPath: "\(out)/alice@example.test/\(folder)/\(sub)", isDirectory: &isDirectory) && isDirectory.boolValue,
                        "\(folder)/\(sub) missing")
            }
        }
        // A manifest any JSON tool reads, and files whose bytes hash as it says.
        let python = try runTool("/usr/bin/python3", ["-c", """
            import json, sys
            lines = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]
            assert lines[0]['type'] == 'archive' and lines[-1]['type'] == 'end', lines[0]
            print(sum(1 for l in lines if l['type'] == 'message'))
            """, out + "/manifest.jsonl"])
        #expect(python.status == 0, "\(python.output)")
        #expect(python.output.trimmingCharacters(in: .whitespacesAndNewlines) == "12")
        let manifestLines = try String(contentsOfFile: out + "/manifest.jsonl", encoding: .utf8).split(separator: "\n")
        let records = try manifestLines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let originals = Set(await account.contents().values.flatMap { $0.map { sha256($0.body) } })
        var checked = 0
        for record in records where record["type"] as? String == "message" {
            let file = out + "/" + (record["path"] as! String)
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
            #expect(sha256(bytes) == record["sha256"] as? String, "\(file)")
            #expect(originals.contains(sha256(bytes)))
            let date = try FileManager.default.attributesOfItem(atPath: file)[.modificationDate] as! Date
            #expect(Int64(date.timeIntervalSince1970) == record["internalDate"] as? Int64, "mtime of \(file)")
            if (record["flags"] as? [String])?.contains("\\Seen") == true {
                #expect(file.hasSuffix("S") && file.contains(":2,"), "\(file) lacks the S info letter")
            }
            checked += 1
        }
        #expect(checked == 12)
        let folders = records.filter { $0["type"] as? String == "folder" }
        #expect(folders.first { $0["name"] as? String == "Sent" }?["role"] as? String == "\\Sent")
        #expect(folders.first { $0["name"] as? String == "Entwürfe" }?["role"] as? String == "\\Drafts")
        #expect(FileManager.default.fileExists(atPath: out + "/ferrymail-archive.json"))

        // Restore into an empty account: same folders, roles, bytes, flags, dates.
        let target = MemoryStore(.imap, mailboxes: [:])
        try await restore([path], into: target)
        #expect(await snapshot(target) == snapshot(account))
        #expect(try await roles(target) == roles(account))
    }

    @Test("a message in two folders is stored once, then hard-linked")
    func dedupHardLink() async throws {
        let dir = try TemporaryDirectory(prefix: "ferrymail-archive")
        let path = dir.path + "/a.tar.gz"
        try await backUp(await makeAccount(), to: path)
        let listing = try runTool("/usr/bin/tar", ["tvzf", path])
        #expect(listing.status == 0)
        let links = listing.output.split(separator: "\n").filter { $0.contains(" link to ") }
        #expect(links.count == 1, "\(listing.output)")
        #expect(links.first?.contains("Lists/swift/cur/") == true || links.first?.contains("INBOX/cur/") == true)
        let verification = ArchiveVerifier.verify(paths: [path])
        #expect(verification.isIntact, "\(verification.problems)")
        #expect(verification.archives[0].links == 1)
    }

    @Test("incremental: the second archive holds only the new messages; the chain restores everything")
    func incrementalChain() async throws {
        let dir = try TemporaryDirectory(prefix: "ferrymail-archive")
        let account = await makeAccount()
        let first = dir.path + "/full.tar.gz"
        try await backUp(account, to: first)

        await account.deliver(body("INBOX", 100), to: "INBOX", flags: ["\\Seen"], internalDate: 1_710_000_000)
        await account.deliver(body("Archiv", 1), to: "Archiv", internalDate: 1_710_000_100)
        // A message without Message-ID: the engine cannot pair it, the
        // writer recognises its bytes.
        await account.deliver(Array("From: x@example.test\r\nSubject: no id\r\n\r\nhello\r\n".utf8), to: "Sent", internalDate: 1_710_000_200)
        // A flag added to an archived message since the full backup.
        let inbox = try await account.messages(in: "INBOX", changedSince: nil)
        let firstKey = try #require(inbox.messagesForTest.first { !$0.flags.contains("\\Flagged") }?.key)
        await account.replaceFlags(of: firstKey, in: "INBOX", with: ["\\Flagged", "\\Seen"])

        let second = dir.path + "/incr1.tar.gz"
        let chain = try ArchiveChain.open(paths: [first])
        let summary = try await backUp(account, to: second, previous: chain)
        #expect(summary.messages == 3, "the incremental archive must hold only the 3 new messages")
        #expect(summary.previous == chain.ids)
        #expect(summary.flagUpdates >= 1)

        // A third run with nothing new stores nothing, even the message without Message-ID.
        let third = dir.path + "/incr2.tar.gz"
        let summary3 = try await backUp(account, to: third, previous: try ArchiveChain.open(paths: [first, second]))
        #expect(summary3.messages == 0)

        let verification = ArchiveVerifier.verify(paths: [third, first, second])
        #expect(verification.isIntact, "\(verification.problems)")
        #expect(verification.archives.map(\.path) == [first, second, third])

        let target = MemoryStore(.imap, mailboxes: [:])
        try await restore([second, first, third], into: target)
        #expect(await snapshot(target) == snapshot(account))

        // A chain with a missing link is refused.
        #expect(throws: ArchiveError.self) { try ArchiveChain.open(paths: [first, third]) }
        #expect(throws: ArchiveError.self) { try ArchiveChain.open(paths: [second]) }
    }

    @Test("damage: truncation and a flipped byte are found, named, and stop a restore")
    func damage() async throws {
        let dir = try TemporaryDirectory(prefix: "ferrymail-archive")
        let account = MemoryStore(.imap, mailboxes: ["INBOX": nil])
        for index in 0..<40 {
            await account.deliver(body("INBOX", index, size: 60_000), to: "INBOX", internalDate: 1_700_000_000 + Int64(index))
        }
        let path = dir.path + "/good.tar.gz"
        try await backUp(account, to: path)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let good = ArchiveVerifier.verify(paths: [path])
        #expect(good.isIntact, "\(good.problems)")

        let truncated = dir.path + "/truncated.tar.gz"
        try Data(bytes[0..<(bytes.count * 6 / 10)]).write(to: URL(fileURLWithPath: truncated))
        let cut = ArchiveVerifier.verify(paths: [truncated])
        #expect(!cut.isIntact)
        let cutProblem = try #require(cut.problems.first)
        guard case .truncated(let archive, let entry) = cutProblem else {
            Issue.record("expected .truncated, got \(cutProblem)")
            return
        }
        #expect(archive == truncated)
        #expect(entry?.contains("INBOX/cur/") == true, "\(cutProblem)")

        let flipped = dir.path + "/flipped.tar.gz"
        var damaged = bytes
        damaged[bytes.count / 2] ^= 0x5a
        try Data(damaged).write(to: URL(fileURLWithPath: flipped))
        let flip = ArchiveVerifier.verify(paths: [flipped])
        #expect(!flip.isIntact)
        let flipProblem = try #require(flip.problems.first)
        #expect("\(flipProblem)".contains(flipped))
        #expect("\(flipProblem)".contains("INBOX/cur/"), "the entry must be named: \(flipProblem)")

        // Restore verifies first: the target is never touched.
        for bad in [truncated, flipped] {
            let target = MemoryStore(.imap, mailboxes: [:])
            await #expect(throws: ArchiveError.self) { try await restore([bad], into: target) }
            #expect(await target.mailboxNames().isEmpty)
        }
    }

    @Test("a writer abandoned midway leaves no final-named file; files are 0600")
    func atomicity() async throws {
        let dir = try TemporaryDirectory(prefix: "ferrymail-archive")
        let path = dir.path + "/a.tar.gz"
        do {
            let writer = try ArchiveWriter(path: path, account: "bob")
            try writer.addFolder("INBOX", role: nil)
            try writer.addMessage(MessageMetadata(folder: "INBOX", internalDate: 1, size: 5, messageId: nil), body: Array("hello".utf8))
            let partials = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(partials.count == 1 && partials[0].hasPrefix("a.tar.gz.partial-"), "\(partials)")
            var info = stat()
            #expect(stat(dir.path + "/" + partials[0], &info) == 0)
            #expect(info.st_mode & 0o777 == 0o600)
            #expect(!FileManager.default.fileExists(atPath: path))
            // Dropped without finish().
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)

        // A backup whose source fails midway is abandoned: nothing final.
        let store = try ArchiveWriterStore(output: path, account: "bob")
        try await store.createMailbox("INBOX", role: nil)
        let append = try await store.beginAppend(to: "INBOX", AppendEnvelope(flags: .none, internalDate: 1, size: 10, messageId: nil, transferId: "t"))
        try await append.write(Array("short".utf8))
        await #expect(throws: ArchiveError.self) { _ = try await append.finish() }
        await store.abandon()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)

        // A finished one is 0600, and never overwrites.
        let writer = try ArchiveWriter(path: path, account: "bob")
        _ = try writer.finish()
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(throws: ArchiveError.alreadyExists(archive: path)) { try ArchiveWriter(path: path, account: "bob") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["a.tar.gz"])
    }

    @Test("long and UTF-8 names go through pax headers; folder names that would collide are escaped")
    func paxAndEscaping() async throws {
        let dir = try TemporaryDirectory(prefix: "ferrymail-archive")
        let path = dir.path + "/p.tar.gz"
        let writer = try ArchiveWriter(path: path, account: "carol")
        let long = String(repeating: "Sehr langer Ordnername ", count: 8)
        for folder in [long, "Lists/cur", ".hidden", "100%", "Überweisungen/2024"] {
            try writer.addMessage(MessageMetadata(folder: folder, flags: ["\\Seen"], internalDate: 1_600_000_000, size: 4, messageId: nil),
                                  body: Array(folder.utf8.prefix(4)))
        }
        _ = try writer.finish()
        let out = dir.path + "/x"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let untar = try runTool("/usr/bin/tar", ["xzf", path, "-C", out])
        #expect(untar.status == 0, "\(untar.output)")
        let verification = ArchiveVerifier.verify(paths: [path])
        #expect(verification.isIntact, "\(verification.problems)")
        let manifest = try #require(verification.archives.first?.manifest)
        for message in manifest.messages {
            #expect(FileManager.default.fileExists(atPath: out + "/" + message.path), "\(message.path)")
        }
        let paths = Set(manifest.folders.map(\.path))
        #expect(paths.contains("carol/Lists/%63ur"))
        #expect(paths.contains("carol/%2Ehidden"))
        #expect(paths.contains("carol/100%25"))
    }

    /// Memory itself is measured by `ArchiveBenchmark` (ferrymail-bench), not
    /// here: process RSS is shared with every test running in parallel. This
    /// checks the path that keeps memory flat — messages larger than the spool
    /// limit going through scratch files — end to end.
    @Test("200 messages of 1 MB through file spools make an intact archive")
    func largeMessagesThroughFileSpools() async throws {
        let dir = try TemporaryDirectory(prefix: "ferrymail-archive")
        let path = dir.path + "/big.tar.gz"
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        do {
            let writer = try ArchiveWriter(path: path, account: "dave",
                                           options: ArchiveWriterOptions(spoolMemoryLimit: 256 << 10))
            var seed: UInt64 = 42
            for index in 0..<200 {
                let size = 1 << 20
                let spool = try writer.beginMessage(MessageMetadata(folder: "INBOX", internalDate: Int64(index), size: Int64(size), messageId: "<\(index)@x>"))
                var written = 0
                while written < size {
                    for offset in stride(from: 0, to: chunk.count, by: 8) {
                        seed = seed &* 6364136223846793005 &+ 1442695040888963407
                        // Printable text-like bytes: compressible but not trivially.
                        let word = (seed >> 33) % 26
                        for k in 0..<8 { chunk[offset + k] = k == 7 ? 32 : UInt8(97 + (word + UInt64(k)) % 26) }
                    }
                    try spool.write(Array(chunk.prefix(min(chunk.count, size - written))))
                    written += chunk.count
                }
                try writer.commit(spool)
            }
            let summary = try writer.finish()
            #expect(summary.messages == 200)
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0 != "big.tar.gz" }
        #expect(leftovers.isEmpty, "scratch spool files left behind: \(leftovers)")
        let verification = ArchiveVerifier.verify(paths: [path])
        #expect(verification.isIntact, "\(verification.problems)")
        #expect(verification.archives[0].hashedBytes == 200 << 20)
    }

    @Test("the benchmark runs")
    func benchmarkSmoke() async throws {
        let dir = try TemporaryDirectory(prefix: "ferrymail-archive")
        let result = try await ArchiveBenchmark.run(messages: 60, messageSize: 20_000, folders: 3, directory: dir.path)
        #expect(result.messages == 60)
        #expect(result.restoredMessages == 60)
        #expect(result.compressionRatio > 1.5)
    }
}

extension MessageListing {
    var messagesForTest: [MessageInfo] {
        switch self {
        case .full(let messages): messages
        case .delta(let changed, _): changed
        }
    }
}
