import Testing

@testable import Configuration

@Suite("Folder patterns and names")
struct FolderTests {
    @Test(arguments: [
        // pattern, name, delimiter, matches
        ("*", "INBOX", "/", true),
        ("*", "Lists/swift/dev", "/", true),
        ("%", "Lists", "/", true),
        ("%", "Lists/swift", "/", false),
        ("Lists/%", "Lists/swift", "/", true),
        ("Lists/%", "Lists/swift/dev", "/", false),
        ("Lists/*", "Lists/swift/dev", "/", true),
        ("Lists/*", "Lists", "/", false),
        ("Lists*", "Lists", "/", true),
        ("Li%s", "Lists", "/", true),
        ("Li%s", "Li/s", "/", false),
        ("Li*s", "Li/s", "/", true),
        ("%/%", "a/b", "/", true),
        ("%/%", "a/b/c", "/", false),
        ("INBOX.%", "INBOX.Sent Items", ".", true),
        ("INBOX.%", "INBOX.Sent.2020", ".", false),
        ("inbox", "INBOX", "/", true),
        ("Inbox/%", "INBOX/Work", "/", true),
        ("sent", "Sent", "/", false),
        ("[Gmail]/All Mail", "[Gmail]/All Mail", "/", true),
        ("[Gmail]/*", "[Gmail]/Spam", "/", true),
        ("", "", "/", true),
        ("a", "", "/", false),
    ] as [(String, String, Character, Bool)])
    func patterns(pattern: String, name: String, delimiter: Character, expected: Bool) {
        #expect(FolderFilter.matches(pattern: pattern, name: name, delimiter: delimiter) == expected)
    }

    @Test("without a delimiter % behaves like *")
    func flatNamespace() {
        #expect(FolderFilter.matches(pattern: "a%", name: "a/b", delimiter: nil))
    }

    @Test("exclude wins over include")
    func excludeWins() {
        let filter = FolderFilter(include: ["*"], exclude: ["[Gmail]/All Mail", "Archive/*"])
        #expect(filter.includes("INBOX", delimiter: "/"))
        #expect(filter.includes("Archive", delimiter: "/"))
        #expect(!filter.includes("Archive/2020", delimiter: "/"))
        #expect(!filter.includes("[Gmail]/All Mail", delimiter: "/"))

        let narrow = FolderFilter(include: ["INBOX", "Lists/%"], exclude: ["Lists/spam"])
        #expect(narrow.includes("INBOX", delimiter: "/"))
        #expect(narrow.includes("Lists/swift", delimiter: "/"))
        #expect(!narrow.includes("Lists/spam", delimiter: "/"))
        #expect(!narrow.includes("Drafts", delimiter: "/"))
        #expect(!FolderFilter(include: [], exclude: []).includes("INBOX", delimiter: "/"))
    }

    @Test("a long pathological pattern is matched quickly")
    func noExponentialBacktracking() {
        let name = String(repeating: "a", count: 200) + "b"
        let pattern = String(repeating: "*a", count: 30) + "c"
        #expect(!FolderFilter.matches(pattern: pattern, name: name, delimiter: "/"))
    }

    @Test("server to local: folder_map, then special-use, then unchanged")
    func serverToLocal() {
        let mapping = FolderNameMapping(
            serverToLocal: ["INBOX.Sent Items": "Sent", "Old": "Archive/Old"],
            specialUse: FolderNameMapping.defaultSpecialUse.merging([.junk: "Spam"]) { $1 })
        #expect(mapping.localName(forServerName: "INBOX.Sent Items") == "Sent")
        #expect(mapping.localName(forServerName: "INBOX.Sent Items", role: .drafts) == "Sent")
        #expect(mapping.localName(forServerName: "[Gmail]/Sent Mail", role: .sent) == "Sent")
        #expect(mapping.localName(forServerName: "[Gmail]/Spam", role: .junk) == "Spam")
        #expect(mapping.localName(forServerName: "[Gmail]/Starred", role: .flagged) == "[Gmail]/Starred")
        #expect(mapping.localName(forServerName: "Lists/swift") == "Lists/swift")
        #expect(mapping.localName(forServerName: "Old/child") == "Old/child")
    }

    @Test("local to server: reverse folder_map, then the server's special-use mailbox, then unchanged")
    func localToServer() {
        let mapping = FolderNameMapping(serverToLocal: ["INBOX.Sent Items": "Sent"])
        let roles: [SpecialUseRole: String] = [.drafts: "[Gmail]/Drafts", .sent: "[Gmail]/Sent Mail"]
        #expect(mapping.serverName(forLocalName: "Sent", serverRoles: roles) == "INBOX.Sent Items")
        #expect(mapping.serverName(forLocalName: "Drafts", serverRoles: roles) == "[Gmail]/Drafts")
        #expect(mapping.serverName(forLocalName: "Trash", serverRoles: roles) == "Trash")
        #expect(mapping.serverName(forLocalName: "Lists/swift") == "Lists/swift")
        #expect(mapping.role(forLocalName: "Drafts") == .drafts)
        #expect(mapping.role(forLocalName: "Lists") == nil)
        #expect(mapping.localName(for: .archive) == "Archive")
        #expect(mapping.localName(for: .flagged) == nil)
    }

    @Test("INBOX is matched case-insensitively in folder_map")
    func inboxMapping() {
        let mapping = FolderNameMapping(serverToLocal: ["inbox": "Inbox-local"])
        #expect(mapping.localName(forServerName: "INBOX") == "Inbox-local")
    }

    @Test("special-use attributes")
    func attributes() {
        #expect(SpecialUseRole(attribute: "\\Sent") == .sent)
        #expect(SpecialUseRole(attribute: "\\JUNK") == .junk)
        #expect(SpecialUseRole(attribute: "\\Noselect") == nil)
        #expect(SpecialUseRole(attribute: "Sent") == nil)
        #expect(SpecialUseRole.important.attribute == "\\Important")
    }

    @Test("suggestions find typos but not unrelated words")
    func suggestions() {
        let keys = Keys.account
        #expect(Suggestion.closest(to: "pasword_command", in: keys) == "password_command")
        #expect(Suggestion.closest(to: "mialdir", in: keys) == "maildir")
        #expect(Suggestion.closest(to: "Host", in: keys) == "host")
        #expect(Suggestion.closest(to: "colour", in: keys) == nil)
    }
}
