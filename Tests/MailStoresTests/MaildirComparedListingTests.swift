import Foundation
@testable import MailStores
import SyncEngine
import SyncState
import TestSupport
import Testing

/// `MaildirMailStore.messages(in:changedSince:comparedWith:)`: the state's
/// keys looked up in the folder's table of files, with entries built only
/// for the files that differ. Whatever it lists must be exactly what the full
/// listing says of those files.
@Suite("Maildir listing compared with the recorded keys")
struct MaildirComparedListingTests {
    static let body = Data("Subject: compared\r\nMessage-ID: <c@x>\r\n\r\nbody\r\n".utf8)

    /// INBOX with files a…f; the recorded keys say a, b, d, e, f and x.
    private func inbox() throws -> (TemporaryDirectory, String) {
        let directory = try TemporaryDirectory(prefix: "ferrymail-compared")
        let root = directory.path + "/Mail"
        for sub in ["cur", "new", "tmp"] { try FileManager.default.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true) }
        let files = ["cur/1.a.h:2,S", "cur/2.b.h:2,F", "new/3.c.h", "cur/4.d.h,S=\(Self.body.count):2,S", "cur/5.e.h:2,", "cur/6.f.h:2,RS"]
        for file in files { try Self.body.write(to: URL(fileURLWithPath: root + "/" + file)) }
        return (directory, root)
    }

    private static let recorded: [(MessageKey, MessageFlags)] = [
        (.name("1.a.h"), ["\\Seen"]),                // agrees
        (.name("2.b.h"), .none),                     // flags differ
        (.name("4.d.h,S=\(body.count)"), ["\\Seen"]),  // agrees (the size is part of the base name)
        (.name("5.e.h"), ["\\Seen"]),                // flags differ
        (.name("6.f.h"), ["\\Seen", "\\Answered"]),  // agrees, in another order
        (.name("7.x.h"), ["\\Seen"]),                // vanished
    ]

    private static func rows(_ rows: [(MessageKey, MessageFlags)]) -> RecordedMessages {
        RecordedMessages(count: rows.count) { body in
            for (key, flags) in rows where !body(key, flags) { break }
        }
    }

    private static func full(_ root: String) async throws -> [MessageKey: MessageInfo] {
        let store = try MaildirMailStore(root: root, account: "test", logger: quietLogger)
        guard case .full(let messages) = try await store.messages(in: "INBOX", changedSince: nil) else { throw TestFailure("not full") }
        return Dictionary(uniqueKeysWithValues: messages.map { ($0.key, $0) })
    }

    @Test func onlyTheDifferingFilesAreListedExactlyAsTheFullListingListsThem() async throws {
        let (directory, root) = try inbox()
        defer { directory.remove() }
        let store = try MaildirMailStore(root: root, account: "test", logger: quietLogger)
        let listing = try await store.messages(in: "INBOX", changedSince: nil, comparedWith: Self.rows(Self.recorded))
        guard case .delta(let changed, let vanished) = listing else { throw TestFailure("expected a delta, got \(listing)") }
        #expect(changed.map(\.key).sorted() == [.name("2.b.h"), .name("3.c.h"), .name("5.e.h")])
        #expect(vanished == [.name("7.x.h")])
        let full = try await Self.full(root)
        for message in changed { #expect(message == full[message.key], "\(message.key)") }
        #expect(changed.allSatisfy { $0.size == Int64(Self.body.count) && $0.internalDate != nil })

        // The scan was the folder's snapshot: the store proves the folder
        // unchanged since, and lists nothing against it.
        let settled = try #require(try await store.settledStatus(of: "INBOX"))
        #expect(try await store.messages(in: "INBOX", changedSince: settled.watermark) == .delta(changed: [], vanished: []))
    }

    @Test func recordedKeysInAnyOrderGiveTheSameDelta() async throws {
        let (directory, root) = try inbox()
        defer { directory.remove() }
        let store = try MaildirMailStore(root: root, account: "test", logger: quietLogger)
        let listing = try await store.messages(in: "INBOX", changedSince: nil, comparedWith: Self.rows(Self.recorded.reversed()))
        guard case .delta(let changed, let vanished) = listing else { throw TestFailure("expected a delta, got \(listing)") }
        #expect(changed.map(\.key).sorted() == [.name("2.b.h"), .name("3.c.h"), .name("5.e.h")])
        #expect(vanished == [.name("7.x.h")])
    }

    @Test func aBaseNameWithTwoFilesGivesTheFullListingWithItOnce() async throws {
        let (directory, root) = try inbox()
        defer { directory.remove() }
        try Self.body.write(to: URL(fileURLWithPath: root + "/new/1.a.h"))
        let store = try MaildirMailStore(root: root, account: "test", logger: quietLogger)
        let listing = try await store.messages(in: "INBOX", changedSince: nil, comparedWith: Self.rows(Self.recorded))
        guard case .full(let messages) = listing else { throw TestFailure("expected the full listing, got \(listing)") }
        #expect(messages.map(\.key).sorted() == ["1.a.h", "2.b.h", "3.c.h", "4.d.h,S=\(Self.body.count)", "5.e.h", "6.f.h"].map(MessageKey.name))
        // The scan reads `new/` first: its file is the one listed.
        #expect(messages.first { $0.key == .name("1.a.h") }?.flags == MessageFlags.none)
        #expect(try await store.settledStatus(of: "INBOX") == nil, "a folder whose table doubts a name proves nothing")
    }

    /// Tables keeping 2 bits of each hash: the folder's 26 base names share
    /// 3 keys. Every listing must still be what whole keys give, and every
    /// message must still be found.
    @Test func baseNamesSharingKeysAreListedAndFoundAsWithWholeKeys() async throws {
        let (directory, root) = try inbox()
        defer { directory.remove() }
        for index in 0..<20 { try Self.body.write(to: URL(fileURLWithPath: root + "/cur/1\(index).z.h:2,S")) }
        let whole = try await Self.full(root)
        let store = try MaildirMailStore(root: root, tableKeyBits: 2, account: "test", logger: quietLogger)

        let compared = try await store.messages(in: "INBOX", changedSince: nil, comparedWith: Self.rows(Self.recorded))
        guard case .full(let messages) = compared else { throw TestFailure("expected the full listing, got \(compared)") }
        #expect(Dictionary(uniqueKeysWithValues: messages.map { ($0.key, $0) }) == whole)
        guard case .full(let plain) = try await store.messages(in: "INBOX", changedSince: nil) else { throw TestFailure("not full") }
        #expect(Dictionary(uniqueKeysWithValues: plain.map { ($0.key, $0) }) == whole)

        let keys = Array(whole.keys)
        try await store.setFlags([FlagChange(keys: keys, add: ["\\Flagged"], remove: [])], in: "INBOX")
        try await store.expunge(Array(keys.prefix(2)), in: "INBOX")
        let after = try await Self.full(root)
        #expect(after.count == 24 && after.values.allSatisfy { $0.flags.contains("\\Flagged") })
        #expect(Set(after.keys) == Set(keys.dropFirst(2)))
    }

    @Test func moreDifferencesThanTheLimitGiveTheFullListing() async throws {
        let (directory, root) = try inbox()
        defer { directory.remove() }
        let store = try MaildirMailStore(root: root, account: "test", logger: quietLogger)
        // 1,100 recorded keys the folder lacks: over the limit of 1,024.
        let gone = (0..<1100).map { (MessageKey.name(String(format: "9.%04d.h", $0)), MessageFlags.none) }
        let listing = try await store.messages(in: "INBOX", changedSince: nil, comparedWith: Self.rows(Self.recorded + gone))
        guard case .full(let messages) = listing else { throw TestFailure("expected the full listing, got \(listing)") }
        #expect(messages.count == 6)
    }
}
