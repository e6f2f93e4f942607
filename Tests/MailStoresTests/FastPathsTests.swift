import IMAPCodec
import SyncEngine
import TestSupport
import Testing

@testable import MailStores

@Suite struct FastPathsTests {
    let full: Set<Capability> = [.listStatus, .condStore, .qresync, .uidPlus, .move, .literalPlus, .idle]

    @Test("Dovecot gets INBOX's STATUS ahead of LIST; other servers LIST-STATUS when offered, else STATUS per folder")
    func folderStatusStrategy() {
        #expect(FastPaths(capabilities: full, serverName: "Dovecot").folderStatus == .inboxStatusFirst)
        #expect(FastPaths(capabilities: full, serverName: "dovecot").folderStatus == .inboxStatusFirst)
        #expect(FastPaths(capabilities: full.subtracting([.listStatus]), serverName: "Dovecot").folderStatus == .inboxStatusFirst)
        #expect(FastPaths(capabilities: full, serverName: "Cyrus IMAPD").folderStatus == .listStatus)
        #expect(FastPaths(capabilities: full).folderStatus == .listStatus)
        #expect(FastPaths(capabilities: full.subtracting([.listStatus])).folderStatus == .statusPerFolder)
    }

    @Test("check reports the uploads the store makes: pipelined APPENDs, with MULTIAPPEND offered or not")
    func uploadsArePipelinedAppends() {
        #expect(FastPaths(capabilities: full.union([.multiAppend])).upload == .literalPlus)
        #expect(FastPaths(capabilities: full).upload == .literalPlus)
        #expect(FastPaths(capabilities: full.subtracting([.literalPlus]).union([.multiAppend])).upload == .synchronizing)
    }

    @Test("Dovecot lists the same folders, roles and statuses whether INBOX's STATUS goes first or LIST-STATUS is used")
    func bothFolderStatusStrategiesAgree() async throws {
        let account = try await Servers.shared.account(.full)
        let user = account.user.name
        _ = try await offloadBlocking {
            try account.server.seedMaildir(user: user, messages: (0..<3).map { message($0) }, flags: ["\\Seen"])
            try account.server.seedMaildir(user: user, mailbox: "Lists/swift-dev", messages: (3..<5).map { message($0, "Lists/swift-dev") })
        }
        let inboxFirst = try await IMAPStore.open(configuration: account.imap, logger: quietLogger)
        var anonymous = account.imap
        anonymous.clientID = nil
        let listStatus = try await IMAPStore.open(configuration: anonymous, logger: quietLogger)
        #expect(inboxFirst.fastPaths.folderStatus == .inboxStatusFirst)
        #expect(listStatus.fastPaths.folderStatus == .listStatus)
        let a = try await inboxFirst.listMailboxes().sorted { $0.name < $1.name }
        let b = try await listStatus.listMailboxes().sorted { $0.name < $1.name }
        await inboxFirst.close()
        await listStatus.close()
        #expect(a == b)
        #expect(a.first { $0.name == "INBOX" }?.status?.messageCount == 3)
        #expect(a.first { $0.name == "Lists/swift-dev" }?.status?.messageCount == 2)
        #expect(a.filter(\.selectable).allSatisfy { $0.status?.uidValidity != nil && $0.status?.highestModSeq != nil })
    }
}
