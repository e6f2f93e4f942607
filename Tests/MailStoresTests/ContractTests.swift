import Foundation
import IMAPClient
import IMAPCodec
@testable import MailStores
import SyncEngine
import SyncState
import TestSupport
import Testing

/// The store under a contract test: IMAP against one of the server
/// configurations, or a Maildir in a temporary directory.
enum ContractStore: Sendable, CustomTestStringConvertible {
    case imap(ServerKind)
    case maildir

    static let all: [ContractStore] = ServerKind.protocolKinds.map { .imap($0) } + [.maildir]

    var testDescription: String {
        switch self {
        case .imap(let kind): "IMAP (\(kind.rawValue))"
        case .maildir: "Maildir"
        }
    }

    /// A fresh, empty store (a new server user or a new directory) with
    /// INBOX; `body` gets it and closes nothing itself.
    func with(_ body: (any MailStore) async throws -> Void) async throws {
        switch self {
        case .imap(let kind):
            let account = try await Servers.shared.account(kind)
            let store = try await account.openStore()
            do {
                try await body(store)
            } catch {
                await store.close()
                throw error
            }
            await store.close()
        case .maildir:
            let directory = try TemporaryDirectory(prefix: "ferrymail-stores")
            let store = try MaildirMailStore(root: directory.path + "/Mail", account: "test", logger: quietLogger)
            try await store.createMailbox("INBOX", role: nil)
            try await body(store)
            directory.remove()
        }
    }
}

func message(_ index: Int, _ folder: String = "INBOX", size: Int = 3000) -> [UInt8] {
    Corpus.message(index: index, size: size, folder: folder)
}

@Suite("MailStore contract, identical for IMAP and Maildir")
struct ContractTests {
    @Test(arguments: ContractStore.all)
    func mailboxesAreCreatedListedAndDeleted(_ kind: ContractStore) async throws {
        try await kind.with { store in
            for name in ["Lists/swift", "Entwürfe", "Archiv/2024"] {
                try await store.createMailbox(name, role: nil)
            }
            // Creating an existing mailbox succeeds.
            try await store.createMailbox("Entwürfe", role: nil)
            var names = Set(try await store.listMailboxes().filter(\.selectable).map(\.name))
            #expect(names.isSuperset(of: ["INBOX", "Lists/swift", "Entwürfe", "Archiv/2024"]))
            let listed = try #require(try await store.listMailboxes().first { $0.name == "Entwürfe" })
            #expect(listed.delimiter == "/")
            #expect(listed.status != nil)

            _ = try await store.append(message(1, "Entwürfe"), to: "Entwürfe")
            try await store.deleteMailbox("Entwürfe")
            names = Set(try await store.listMailboxes().filter(\.selectable).map(\.name))
            #expect(!names.contains("Entwürfe"))
            #expect(names.contains("Lists/swift"))
        }
    }

    @Test(arguments: ContractStore.all)
    func appendedMessagesComeBackByteForByte(_ kind: ContractStore) async throws {
        try await kind.with { store in
            try await store.createMailbox("Box", role: nil)
            let bodies = [message(1, size: 900), message(2, size: 150_000), message(3, size: 70_000)]
            let flags: [SyncState.MessageFlags] = [["\\Seen"], ["\\Flagged", "$Forwarded"], .none]
            var keys: [MessageKey?] = []
            for (body, flag) in zip(bodies, flags) {
                keys.append(try await store.append(body, to: "Box", flags: flag, date: 1_700_000_123, chunk: 4096))
            }
            switch kind {
            case .imap(.noUIDPlus): #expect(keys.allSatisfy { $0 == nil })
            case .imap: #expect(keys.allSatisfy { if case .uid? = $0 { true } else { false } })
            case .maildir: #expect(keys.allSatisfy { if case .name? = $0 { true } else { false } })
            }

            let listed = try await store.listing("Box")
            #expect(listed.count == 3)
            let bySize = Dictionary(uniqueKeysWithValues: listed.map { ($0.size, $0) })
            for (body, flag) in zip(bodies, flags) {
                let info = try #require(bySize[Int64(body.count)])
                #expect(info.flags == flag)
                #expect(info.internalDate == 1_700_000_123)
            }
            if case .some(let key) = keys[1] { #expect(bySize[Int64(bodies[1].count)]?.key == key) }

            let sink = CollectingSink()
            try await store.fetch(listed.map(\.key) + [Self.missingKey(kind)], in: "Box", into: sink)
            let fetched = await sink.bodies
            #expect(fetched.count == 3)
            for info in listed {
                let body = try #require(fetched[info.key])
                #expect(Int64(body.count) == info.size)
                #expect(bodies.contains(body))
                #expect(await sink.announced[info.key] == info.size)
            }

            let ids = try await store.messageIds(for: listed.map(\.key), in: "Box")
            #expect(Set(ids.values) == Set((1...3).map { Corpus.messageID(index: $0) }))
        }
    }

    @Test(arguments: ContractStore.all)
    func flagsAndKeywordsRoundTrip(_ kind: ContractStore) async throws {
        try await kind.with { store in
            #expect(store.capabilities.keywords)
            let a = try await store.append(message(1), to: "INBOX")
            let b = try await store.append(message(2), to: "INBOX", flags: ["\\Seen"])
            _ = (a, b)
            let listed = try await store.listing("INBOX")
            let keys = listed.sorted { $0.size < $1.size }.map(\.key)
            try await store.setFlags([
                FlagChange(keys: keys + [Self.missingKey(kind)], add: ["\\Flagged", "$Label1", "NonJunk"], remove: []),
                FlagChange(keys: [keys[1]], add: ["\\Answered"], remove: ["\\Seen"]),
            ], in: "INBOX")
            var now = Dictionary(uniqueKeysWithValues: try await store.listing("INBOX").map { ($0.key, $0.flags) })
            #expect(now[keys[0]] == ["\\Flagged", "$Label1", "NonJunk"])
            #expect(now[keys[1]] == ["\\Answered", "\\Flagged", "$Label1", "NonJunk"])

            try await store.setFlags([FlagChange(keys: keys, add: [], remove: ["$Label1", "\\Flagged"])], in: "INBOX")
            now = Dictionary(uniqueKeysWithValues: try await store.listing("INBOX").map { ($0.key, $0.flags) })
            #expect(now[keys[0]] == ["NonJunk"])
            #expect(now[keys[1]] == ["\\Answered", "NonJunk"])
        }
    }

    @Test(arguments: ContractStore.all)
    func expungeRemovesExactlyTheGivenMessages(_ kind: ContractStore) async throws {
        try await kind.with { store in
            for index in 1...4 { _ = try await store.append(message(index), to: "INBOX") }
            let keys = try await store.listing("INBOX").map(\.key).sorted()
            try await store.expunge([keys[1], keys[3], Self.missingKey(kind)], in: "INBOX")
            #expect(try await store.listing("INBOX").map(\.key).sorted() == [keys[0], keys[2]])
        }
    }

    @Test(arguments: ContractStore.all)
    func moveKeepsBytesAndFlags(_ kind: ContractStore) async throws {
        try await kind.with { store in
            try await store.createMailbox("Lists/swift", role: nil)
            let body = message(7)
            _ = try await store.append(body, to: "INBOX", flags: ["\\Seen", "$Forwarded"])
            _ = try await store.append(message(8), to: "INBOX")
            let source = try await store.listing("INBOX").first { $0.size == Int64(body.count) }!
            let moved = try await store.move([source.key, Self.missingKey(kind)], from: "INBOX", to: "Lists/swift")

            #expect(try await store.listing("INBOX").count == 1)
            let destination = try await store.listing("Lists/swift")
            #expect(destination.count == 1)
            #expect(destination.first?.flags == ["\\Seen", "$Forwarded"])
            switch kind {
            case .maildir:
                #expect(store.capabilities.keysSurviveMove)
                #expect(moved == [source.key: source.key])
            case .imap(.noUIDPlus):
                #expect(moved.isEmpty || moved[source.key] == destination.first?.key)
            case .imap:
                // With MOVE, Dovecot sends COPYUID in an untagged OK before the
                // tagged one (RFC 6851 §4.3); the client routes it to the command.
                #expect(moved[source.key] == destination.first?.key)
            }
            let sink = CollectingSink()
            try await store.fetch(destination.map(\.key), in: "Lists/swift", into: sink)
            #expect(await sink.bodies.values.first == body)
        }
    }

    /// Deltas: QRESYNC and CONDSTORE report changed flags, new messages and
    /// expunges since a watermark; without either the listing is full. A
    /// Maildir lists the difference to its last scan when the watermark is
    /// that scan's (settled) token, and everything otherwise.
    /// IMAP lists part of a mailbox by UID, past gaps, each entry as the
    /// full listing has it, until a page is empty; a Maildir cannot, and
    /// says so.
    @Test(arguments: ContractStore.all)
    func partOfAMailboxIsListedAPageAtATime(_ kind: ContractStore) async throws {
        try await kind.with { store in
            for index in 1...8 { _ = try await store.append(message(index), to: "INBOX", flags: index == 2 ? ["\\Seen", "$Label1"] : []) }
            var all = try await store.listing("INBOX").sorted { $0.key < $1.key }
            try await store.expunge([all[3].key, all[7].key], in: "INBOX")
            all.remove(at: 7)
            all.remove(at: 3)
            guard let first = try await store.messages(in: "INBOX", after: nil, limit: 3) else {
                if case .imap = kind { Issue.record("IMAP lists part of a mailbox") }
                return
            }
            var pages = [first]
            while let last = pages.last?.last, let next = try await store.messages(in: "INBOX", after: last.key, limit: 3), !next.isEmpty {
                pages.append(next)
            }
            // Windows of UIDs: a page can come short of the limit (a gap), never empty before the end.
            #expect(pages.allSatisfy { !$0.isEmpty && $0.count <= 3 * 8 })
            #expect(pages.flatMap { $0 } == all)
            #expect(try await store.messages(in: "INBOX", after: all[5].key, limit: 3) == [])
            #expect(try await store.messages(in: "INBOX", after: all[4].key, limit: 3) == [all[5]])
        }
    }

    /// Without ESEARCH, the `UID SEARCH ALL` a CONDSTORE-only delta uses to
    /// find expunges is answered with one line of every UID: 15,000 UIDs
    /// make 69 KB, over the parser's 64 KB line limit. The folder is listed
    /// in full instead of failing on every run.
    @Test func aLargeFolderWithoutESearchListsItsChangesInFull() async throws {
        let account = try await Servers.shared.account(.condStoreWithoutESearch)
        let (server, user) = (account.server, account.user.name)
        try await offloadBlocking {
            try server.seedMaildir(user: user, mailbox: "INBOX", messages: (0..<15_000).map { message($0, size: 200) })
        }
        let store = try await account.openStore()
        defer { Task { await store.close() } }
        let mark = try await store.select("INBOX").watermark
        try await account.doveadm(["flags", "add", "-u", user, "\\Flagged", "mailbox", "INBOX", "uid", "5"])
        _ = try await store.select("INBOX")
        guard case .full(let messages) = try await store.messages(in: "INBOX", changedSince: mark) else {
            Issue.record("expected the full listing")
            return
        }
        #expect(messages.count == 15_000)
        #expect(messages.first { $0.key == .uid(5) }?.flags == ["\\Flagged"])
    }

    @Test(arguments: ContractStore.all)
    func listingSinceAWatermark(_ kind: ContractStore) async throws {
        try await kind.with { store in
            for index in 1...4 { _ = try await store.append(message(index), to: "INBOX") }
            let before = try await store.listing("INBOX").sorted { $0.key < $1.key }
            let mark = try await store.select("INBOX").watermark

            try await store.setFlags([FlagChange(keys: [before[0].key], add: ["\\Seen"], remove: [])], in: "INBOX")
            try await store.expunge([before[1].key], in: "INBOX")
            _ = try await store.append(message(9), to: "INBOX")

            let status = try await store.select("INBOX")
            #expect(!mark.provesUnchanged(status))
            let listing = try await store.messages(in: "INBOX", changedSince: mark)
            switch (kind, listing) {
            case (.imap(.noModSeq), .full(let all)), (.maildir, .full(let all)):
                #expect(all.count == 4)
            case (.imap(.noModSeq), .delta):
                Issue.record("a delta without CONDSTORE")
            case (_, .delta(let changed, let vanished)):
                // A Maildir gives one when its last scan is what the watermark describes.
                #expect(vanished.contains(before[1].key))
                #expect(!vanished.contains(before[0].key))
                let changedKeys = Set(changed.map(\.key))
                #expect(changedKeys.contains(before[0].key))
                #expect(!changedKeys.contains(before[2].key))
                #expect(changed.count == 2)
                #expect(changed.first { $0.key == before[0].key }?.flags == ["\\Seen"])
            default:
                Issue.record("unexpected listing \(listing) for \(kind)")
            }
            // A watermark from another UIDVALIDITY is never used for a delta.
            var stale = mark
            stale.uidValidity = (mark.uidValidity ?? 0) &+ 1
            if case .delta = try await store.messages(in: "INBOX", changedSince: stale) {
                Issue.record("delta against a stale UIDVALIDITY")
            }
        }
    }

    @Test(arguments: [ContractStore.imap(.full), .maildir])
    func unchangedMailboxIsProvenByItsStatus(_ kind: ContractStore) async throws {
        try await kind.with { store in
            try await store.createMailbox("Quiet", role: nil)
            _ = try await store.append(message(1), to: "Quiet")
            // Maildir needs its directory mtimes to settle before a token proves anything.
            if case .maildir = kind { try await Task.sleep(for: .seconds(2.1)) }
            let mark = try await store.select("Quiet").watermark
            let listed = try #require(try await store.listMailboxes().first { $0.name == "Quiet" })
            #expect(mark.provesUnchanged(try #require(listed.status)))
            _ = try await store.append(message(2), to: "Quiet")
            let again = try #require(try await store.listMailboxes().first { $0.name == "Quiet" })
            #expect(!mark.provesUnchanged(try #require(again.status)))
        }
    }

    @Test func imapCapabilitiesFollowTheServer() async throws {
        let full = try await Servers.shared.account(.full).openStore()
        #expect(full.fastPaths.changeLoading == .qresync)
        #expect(full.fastPaths.appendUID)
        #expect(full.capabilities.keywords && full.capabilities.move && !full.capabilities.keysSurviveMove)
        await full.close()
        let plain = try await Servers.shared.account(.noModSeq).openStore()
        #expect(plain.fastPaths.changeLoading == .fullFlags)
        await plain.close()
        let noMove = try await Servers.shared.account(.noMove).openStore()
        #expect(noMove.fastPaths.move == .copyStoreExpunge)
        #expect(noMove.capabilities.move)
        await noMove.close()
    }

    static func missingKey(_ kind: ContractStore) -> MessageKey {
        if case .maildir = kind { return .name("1700000000.M1P1Q1.gone") }
        return .uid(999_999)
    }
}

@Suite("Store internals")
struct StoreInternalsTests {
    @Test func condStoreGapsAreTheExpunges() {
        #expect(IMAPStore.gaps(in: UIDSet(ranges: [1...2, 5...5, 8...9]), upTo: 10) == [3, 4, 6, 7, 10])
        #expect(IMAPStore.gaps(in: UIDSet(), upTo: 3) == [1, 2, 3])
        #expect(IMAPStore.gaps(in: UIDSet(1...3), upTo: 0) == [])
        #expect(IMAPStore.gaps(in: UIDSet(ranges: [2...UInt32.max]), upTo: 5) == [1])
    }

    @Test func messageIdIsUnfolded() {
        let header = Array("Subject: x\r\nMessage-ID:\r\n <a.b@c>\r\n\r\nMessage-ID: <body@x>\r\n".utf8)
        #expect(HeaderFields.value(of: "Message-ID", in: header) == "<a.b@c>")
        #expect(HeaderFields.value(of: "Message-ID", in: Array("Subject: x\r\n\r\n".utf8)) == nil)
    }
}
