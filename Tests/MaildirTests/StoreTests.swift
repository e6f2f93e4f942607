import Foundation
import Testing
@testable import Maildir

/// Every path below `root`, so tests can prove nothing was written elsewhere.
func treeListing(_ root: String) -> [String] {
    (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).sorted()
}

@Suite struct FolderManagementTests {
    @Test(arguments: MaildirLayout.allCases)
    func createListRenameDelete(_ layout: MaildirLayout) throws {
        let dir = try ScratchDirectory()
        let store = try MaildirStore(root: dir.path, layout: layout)
        _ = try store.folder(named: "INBOX", create: true)
        for name in ["Lists/swift-dev", "Lists/swift-users", "Archive", "Entwürfe", "v1.2"] { try store.createFolder(named: name) }
        #expect(throws: MaildirError.self) { try store.createFolder(named: "Archive") }

        let expected = ["INBOX", "Archive", "Entwürfe", "Lists/swift-dev", "Lists/swift-users", "v1.2"]
        #expect(try store.listFolders().map(\.name) == expected)
        switch layout {
        case .maildirPlusPlus:
            #expect(FileManager.default.fileExists(atPath: dir.sub(".Lists.swift-dev/cur")))
            #expect(FileManager.default.fileExists(atPath: dir.sub(".Lists.swift-dev/maildirfolder")))
            #expect(FileManager.default.fileExists(atPath: dir.sub(".v1%2E2/cur")))
        case .nested:
            #expect(FileManager.default.fileExists(atPath: dir.sub("Lists/swift-dev/cur")))
            #expect(FileManager.default.fileExists(atPath: dir.sub("v1.2/cur")))
        }

        let lists = try store.folder(named: "Lists/swift-dev")
        let entry = try deliver(lists, "list mail", flags: MessageFlags(system: [.seen], keywords: ["$Label1"]))
        try store.renameFolder(from: "Lists", to: "Mailing Lists")
        #expect(try store.listFolders().map(\.name) == ["INBOX", "Archive", "Entwürfe", "Mailing Lists/swift-dev", "Mailing Lists/swift-users", "v1.2"])
        let renamed = try store.folder(named: "Mailing Lists/swift-dev")
        #expect(try renamed.scan().entries.map(\.fileName) == [entry.fileName])
        #expect(try renamed.scan().entries.first?.flags.keywords == ["$Label1"])

        #expect(throws: MaildirError.self) { try store.renameFolder(from: "Archive", to: "v1.2") }
        #expect {
            try store.deleteFolder(named: "Mailing Lists/swift-dev")
        } throws: { error in
            guard case MaildirError.folderNotEmpty(let name, _, _) = error else { return false }
            return name == "Mailing Lists/swift-dev"
        }
        try renamed.remove(baseName: entry.baseName)
        try store.deleteFolder(named: "Mailing Lists/swift-dev")
        try store.deleteFolder(named: "Archive")
        #expect(try store.listFolders().map(\.name) == ["INBOX", "Entwürfe", "Mailing Lists/swift-users", "v1.2"])
        #expect(throws: MaildirError.inboxOperationNotSupported(operation: "deleted")) { try store.deleteFolder(named: "inbox") }
        #expect(throws: MaildirError.inboxOperationNotSupported(operation: "renamed")) { try store.renameFolder(from: "INBOX", to: "X") }
        #expect {
            try store.folder(named: "Archive")
        } throws: { error in
            if case MaildirError.folderNotFound = error { return true }
            return false
        }
    }

    @Test func deleteRefusesForeignFilesAndKeepsThem() throws {
        let dir = try ScratchDirectory()
        let store = try MaildirStore(root: dir.path)
        try store.createFolder(named: "Junk")
        try writeFile(dir.sub(".Junk/notes.txt"), "mine")
        #expect(throws: MaildirError.self) { try store.deleteFolder(named: "Junk") }
        try writeFile(dir.sub(".Junk/dovecot-uidlist"), "3 V1 N1\n")
        try FileManager.default.removeItem(atPath: dir.sub(".Junk/notes.txt"))
        try store.deleteFolder(named: "Junk")
        #expect(!FileManager.default.fileExists(atPath: dir.sub(".Junk")))
    }

    @Test func modifiedUTF7NamesOnDisk() throws {
        let dir = try ScratchDirectory()
        let store = try MaildirStore(root: dir.path, folderNameEncoding: .modifiedUTF7)
        try store.createFolder(named: "Entwürfe/日本語")
        #expect(FileManager.default.fileExists(atPath: dir.sub(".Entw&APw-rfe.&ZeVnLIqe-/cur")))
        #expect(try store.listFolders().map(\.name) == ["Entwürfe/日本語"])
    }
}

@Suite struct PathSafetyTests {
    static let hostileNames = [
        "../x", "..", ".", "a/../../b", "a\u{0}b", "ctl\u{1}\u{7F}\u{1B}[31m", "tab\tnew\nline",
        "dots.in.name", ".hidden", "..hidden", "%2E%2E", "a/./b", "cur", "tmp/new", "dovecot-keywords",
        "x/" + String(repeating: "é", count: 120), "~", "-rf",
    ]

    @Test(arguments: MaildirLayout.allCases)
    func hostileNamesStayInsideTheRootAndRoundTrip(_ layout: MaildirLayout) throws {
        let outer = try ScratchDirectory()
        let root = outer.sub("root")
        let store = try MaildirStore(root: root, layout: layout)
        _ = try store.folder(named: "INBOX", create: true)
        for name in Self.hostileNames {
            let folder = try store.createFolder(named: name)
            #expect(folder.path.hasPrefix(root + "/"), "\(String(reflecting: name)) → \(folder.path)")
            try deliver(folder, "for \(name)")
        }
        #expect(directoryListing(outer.path) == ["root"], "nothing written next to the root")
        let listed = try store.listFolders().map(\.name)
        for name in Self.hostileNames {
            #expect(listed.contains(name), "\(String(reflecting: name)) must list back unchanged: \(listed)")
        }
        #expect(listed.count == Self.hostileNames.count + 1)
        // The tree has only Maildir-shaped entries.
        for path in treeListing(root) {
            #expect(!path.contains("/../") && !path.hasPrefix("../"))
        }
        for name in Self.hostileNames {
            let folder = try store.folder(named: name)
            #expect(try folder.scan().entries.count == 1)
        }
    }

    @Test(arguments: MaildirLayout.allCases)
    func unencodableNamesAreClearErrors(_ layout: MaildirLayout) throws {
        let outer = try ScratchDirectory()
        let store = try MaildirStore(root: outer.sub("root"), layout: layout)
        for name in ["/etc", "/", "", "a//b", "trailing/", String(repeating: "x", count: 300)] {
            #expect {
                try store.createFolder(named: name)
            } throws: { error in
                guard case MaildirError.unsafeMailboxName(let reported, _) = error else { return false }
                return reported == name && String(describing: error).contains("cannot be stored safely")
            }
        }
        #expect(treeListing(outer.path) == ["root"])
    }

    @Test(arguments: MaildirLayout.allCases)
    func plantedSymlinkIsRefusedAndNothingIsWrittenThere(_ layout: MaildirLayout) throws {
        let outer = try ScratchDirectory()
        let outside = outer.sub("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: false)
        let root = outer.sub("root")
        let store = try MaildirStore(root: root, layout: layout)
        _ = try store.folder(named: "INBOX", create: true)
        let linkName = layout == .maildirPlusPlus ? ".Evil" : "Evil"
        try FileManager.default.createSymbolicLink(atPath: root + "/" + linkName, withDestinationPath: outside)
        // Make the target look like a valid Maildir so only the link check can refuse it.
        for sub in ["cur", "new", "tmp"] { try FileManager.default.createDirectory(atPath: outside + "/" + sub, withIntermediateDirectories: false) }
        let before = treeListing(outside)

        #expect(throws: MaildirError.symlinkInTree(path: root + "/" + linkName)) { try store.folder(named: "Evil", create: true) }
        #expect(throws: MaildirError.symlinkInTree(path: root + "/" + linkName)) { try store.folder(named: "Evil") }
        if layout == .nested {
            // Only in the nested layout does a child live inside the linked directory.
            #expect(throws: MaildirError.self) { try store.folder(named: "Evil/Child", create: true) }
        }
        #expect(throws: MaildirError.self) { try store.renameFolder(from: "Evil", to: "Good") }
        #expect(throws: MaildirError.self) { try store.deleteFolder(named: "Evil") }
        #expect(!(try store.listFolders().map(\.name).contains("Evil")))
        #expect(treeListing(outside) == before)

        // A symlinked cur/ inside a real folder is refused too.
        let folderDir = try store.createFolder(named: "Real").path
        try FileManager.default.removeItem(atPath: folderDir + "/cur")
        try FileManager.default.createSymbolicLink(atPath: folderDir + "/cur", withDestinationPath: outside + "/cur")
        #expect(throws: MaildirError.symlinkInTree(path: folderDir + "/cur")) { try store.folder(named: "Real", create: true) }
        #expect(treeListing(outside) == before)
    }

    @Test func symlinkedMessageIsNotOpened() throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        try FileManager.default.createSymbolicLink(atPath: dir.sub("cur/1.M1P1.h:2,S"), withDestinationPath: "/etc/hostname")
        #expect(throws: MaildirError.self) { try folder.openMessage(baseName: "1.M1P1.h") }
    }
}
