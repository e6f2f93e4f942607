import Foundation
import Testing
import TestSupport
@testable import Maildir

/// Ferrymail and a real Dovecot 2.3 reading and changing the same Maildir.
@Suite(.serialized) struct DovecotInteropTests {
    struct Setup: Sendable, CustomStringConvertible {
        let layout: MaildirLayout
        let encoding: FolderNameEncoding
        var description: String { "\(layout) \(encoding)" }
    }

    static let setups = [
        Setup(layout: .maildirPlusPlus, encoding: .utf8),
        Setup(layout: .maildirPlusPlus, encoding: .modifiedUTF7),
        Setup(layout: .nested, encoding: .utf8),
    ]

    /// One message as Dovecot reports it.
    struct DovecotMessage: Hashable, CustomStringConvertible {
        let mailbox: String
        let guid: String
        let flags: Set<String>
        var description: String { "\(mailbox) \(guid) \(flags.sorted())" }
    }

    /// `doveadm fetch` in tab format; `\Recent` is session state, not stored, so it is dropped.
    static func dovecotMessages(_ server: DovecotServer) throws -> Set<DovecotMessage> {
        let output = try server.doveadm(["-f", "tab", "fetch", "-u", "alice", "mailbox guid flags", "all"])
        var result = Set<DovecotMessage>()
        for line in output.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 3 else { continue }
            let flags = Set(fields[2].split(separator: " ").map(String.init)).subtracting(["\\Recent"])
            result.insert(DovecotMessage(mailbox: fields[0], guid: fields[1], flags: flags))
        }
        return result
    }

    static func imapFlags(_ flags: MessageFlags) -> Set<String> {
        Set(SystemFlags.imapNames.filter { flags.system.contains($0.0) }.map(\.1) + flags.keywords)
    }

    static func ferrymailMessages(_ store: MaildirStore) throws -> Set<DovecotMessage> {
        var result = Set<DovecotMessage>()
        for listing in try store.listFolders() {
            let scan = try store.folder(named: listing.name).scan()
            #expect(scan.issues.isEmpty, "\(listing.name): \(scan.issues)")
            for entry in scan.entries {
                result.insert(DovecotMessage(mailbox: listing.name, guid: entry.baseName, flags: imapFlags(entry.flags)))
            }
        }
        return result
    }

    @Test(arguments: setups)
    func dovecotReadsWhatFerrymailWritesAndViceVersa(_ setup: Setup) async throws {
        let server = try await DovecotServer.start(DovecotServer.Options(
            compress: false,
            mailLayout: setup.layout == .nested ? .fs : .maildirPlusPlus,
            utf8Names: setup.encoding == .utf8,
            specialUse: false,
            notify: false,
            // Dovecot keeps the file name on copy/move only with this; by
            // default a moved message gets a new base name.
            extraConfiguration: "maildir_copy_preserve_filename = yes\n"))
        defer { server.stop() }
        let root = try server.testUser(named: "alice").maildirRoot.path
        let store = try MaildirStore(root: root, layout: setup.layout, folderNameEncoding: setup.encoding)

        // Ferrymail writes.
        let inbox = try store.folder(named: "INBOX", create: true)
        let lists = try store.folder(named: "Lists/swift-dev", create: true)
        let drafts = try store.folder(named: "Entwürfe", create: true)
        _ = try store.folder(named: "Archive", create: true)
        let m1 = try deliver(inbox, "Subject: one\r\n\r\n1\r\n", flags: MessageFlags(system: [.seen], keywords: ["$Forwarded"]))
        let m2 = try deliver(inbox, "Subject: two\r\n\r\n2\r\n", toNew: true)
        let m3 = try deliver(inbox, "Subject: three\r\n\r\n3\r\n", flags: MessageFlags(system: [.flagged, .answered], keywords: ["$Junk", "$Label1"]))
        let m4 = try deliver(lists, "Subject: four\r\n\r\n4\r\n", flags: MessageFlags(system: [.seen, .deleted], keywords: ["NonJunk"]))
        _ = try deliver(drafts, "Subject: five\r\n\r\n5\r\n", flags: MessageFlags(system: [.draft]))
        try server.fixOwnership()

        // Dovecot sees the same folders, messages (its maildir GUID is our base name), flags and keywords.
        let mailboxes = Set(try server.doveadm(["mailbox", "list", "-u", "alice"]).split(separator: "\n").map(String.init))
        #expect(mailboxes == ["INBOX", "Lists", "Lists/swift-dev", "Entwürfe", "Archive"]
                || mailboxes == ["INBOX", "Lists/swift-dev", "Entwürfe", "Archive"], "\(mailboxes)")
        let written = try Self.ferrymailMessages(store)
        #expect(written.count == 5)
        #expect(try Self.dovecotMessages(server) == written)

        // Dovecot changes things.
        try server.doveadm(["flags", "add", "-u", "alice", "\\Seen $Junk", "mailbox", "INBOX", "guid", m2.baseName])
        try server.doveadm(["flags", "replace", "-u", "alice", "\\Answered $Label2", "mailbox", "INBOX", "guid", m1.baseName])
        try server.doveadm(["move", "-u", "alice", "Archive", "mailbox", "INBOX", "guid", m3.baseName])
        try server.doveadm(["expunge", "-u", "alice", "mailbox", "Lists/swift-dev", "all"])

        // The next scan sees exactly Dovecot's view, with the same base names.
        let afterDovecot = try Self.dovecotMessages(server)
        #expect(try Self.ferrymailMessages(store) == afterDovecot)
        let inboxEntries = try inbox.scan().entries
        #expect(Set(inboxEntries.map(\.baseName)) == [m1.baseName, m2.baseName])
        #expect(inboxEntries.first { $0.baseName == m1.baseName }?.flags == MessageFlags(system: [.answered], keywords: ["$Label2"]))
        #expect(inboxEntries.first { $0.baseName == m2.baseName }?.flags == MessageFlags(system: [.seen], keywords: ["$Junk"]))
        // doveadm changes flags without a session that sees the message, so
        // Dovecot leaves it in new/ with an info part; the scan accepts that.
        #expect(inboxEntries.first { $0.baseName == m2.baseName }?.fileName.contains(":2,") == true)
        let archived = try store.folder(named: "Archive").scan().entries
        #expect(archived.map(\.baseName) == [m3.baseName])
        #expect(archived.first?.flags == MessageFlags(system: [.flagged, .answered], keywords: ["$Junk", "$Label1"]))
        #expect(try lists.find(baseName: m4.baseName) == nil)
        #expect(try lists.scan().entries.isEmpty)

        // And Ferrymail's next change is again what Dovecot reports.
        try inbox.setFlags(baseName: m2.baseName, flags: MessageFlags(system: [.seen, .flagged], keywords: ["$Junk", "$Label3"]))
        try inbox.move(baseName: m1.baseName, to: try store.folder(named: "Archive"))
        try server.fixOwnership()
        #expect(try Self.dovecotMessages(server) == (try Self.ferrymailMessages(store)))
    }
}
