import IMAPCodec
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
}
