import Foundation
import PropertyBased
import Testing
@testable import Maildir

/// Characters that stress every escaping rule within one hierarchy level
/// (`/` is the level separator and is tested on whole names): `.`, the escape
/// character, control characters, mUTF-7's `&`, `,`, `+`, `-`, non-ASCII
/// and astral-plane characters (surrogate pairs in UTF-16).
let hostileCharacters: [Character] = [
    "a", "Z", "0", " ", ".", "%", "&", "-", "+", ",", "~", ":", "\\", "*",
    "\u{0}", "\u{1}", "\u{1F}", "\u{7F}", "é", "ä", "日", "😀", "\u{FEFF}", "\u{2028}",
]
let hostileLevel = Gen<Character?>.element(of: hostileCharacters).map { $0! }.string(of: 1...24)

@Suite struct FileNameCodecTests {
    @Test func parsesDovecotStyleNames() throws {
        let name = "1700000000.M123456P789Q1.mail.example,S=2048,W=2100:2,FRSab"
        guard case .message(let parsed) = MaildirFileName.parse(name, inNew: false) else {
            Issue.record("not parsed"); return
        }
        #expect(name[..<parsed.baseEnd] == "1700000000.M123456P789Q1.mail.example,S=2048,W=2100")
        #expect(parsed.size == 2048)
        #expect(parsed.system == [.flagged, .answered, .seen])
        #expect(parsed.keywordMask == 0b11)
        #expect(parsed.preserved.isEmpty)
    }

    @Test func newWithoutInfoIsAMessageButCurIsNot() {
        guard case .message(let parsed) = MaildirFileName.parse("123.M1P2.host", inNew: true) else {
            Issue.record("new/ file without info must be accepted"); return
        }
        #expect(!parsed.hasInfo)
        #expect(parsed.size == nil)
        guard case .foreign = MaildirFileName.parse("123.M1P2.host", inNew: false) else {
            Issue.record("cur/ file without info must be foreign"); return
        }
    }

    @Test(arguments: [".hidden", "", "123:1,S", "x,S=0:2,S", ":2,S"])
    func foreignNames(_ name: String) {
        guard case .foreign = MaildirFileName.parse(name, inNew: false) else {
            Issue.record("\(String(reflecting: name)) should be foreign"); return
        }
    }

    @Test func infoIsSortedAndKeepsUnknownCharacters() {
        let name = MaildirFileName.fileName(baseName: "b", system: [.seen, .draft, .deleted, .passed, .flagged, .answered],
                                            keywordMask: 1 << 25 | 1 << 2, preserved: [UInt8(ascii: "X")])
        #expect(name == "b:2,DFPRSTXcz")
    }

    @Test func infoRoundTrip() async {
        let gen = zip(Gen<UInt8>.value(in: 0...63), Gen<UInt32>.value(in: 0...((1 << 26) - 1)))
        await propertyCheck(input: gen) { rawSystem, mask in
            let system = SystemFlags(rawValue: rawSystem)
            let name = MaildirFileName.fileName(baseName: "1.M2P3Q4.h,S=10", system: system, keywordMask: mask, preserved: [])
            guard case .message(let parsed) = MaildirFileName.parse(name, inNew: false) else {
                Issue.record("unparseable \(name)"); return
            }
            #expect(parsed.system == system)
            #expect(parsed.keywordMask == mask)
            #expect(parsed.size == 10)
            let info = Array(name.split(separator: ":2,").last.map { Array($0.utf8) } ?? [])
            #expect(info == info.sorted(), "info must be in ASCII order: \(name)")
        }
    }

    @Test func uniqueNamesHaveTheSpecShapeAndDiffer() {
        let names = (0..<1000).map { _ in UniqueName.next() }
        #expect(Set(names).count == names.count)
        let pattern = /^\d+\.M\d+P\d+Q\d+\..+$/
        for name in names.prefix(5) { #expect(name.wholeMatch(of: pattern) != nil, "\(name)") }
        #expect(!names[0].contains("/") && !names[0].contains(":") && !names[0].contains(","))
    }

    @Test func hostEscaping() {
        #expect(UniqueName.escapeHost("a/b:c,d") == "a\\057b\\072c\\054d")
        #expect(UniqueName.escapeHost("") == "localhost")
    }

    @Test(arguments: ["../x", "a/b", ".x", "", "a:2,S", "a\u{0}b"])
    func hostileBaseNamesAreRefused(_ baseName: String) throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        #expect(throws: MaildirError.self) { try folder.setFlags(baseName: baseName, flags: .none) }
        #expect(throws: MaildirError.self) { try folder.remove(baseName: baseName) }
    }
}

@Suite struct FlagTests {
    @Test func keywordsAreSortedAndUnique() {
        let flags = MessageFlags(system: [.seen], keywords: ["NonJunk", "$Junk", "NonJunk"])
        #expect(flags.keywords == ["$Junk", "NonJunk"])
        #expect(flags == MessageFlags(system: [.seen], keywords: ["$Junk", "NonJunk"]))
        #expect(flags.description == "(\\Seen $Junk NonJunk)")
    }

    @Test(arguments: ["", "a b", "(x)", "\\Seen", "a\"b", "x]", "ü", "%", "*"])
    func invalidKeywords(_ keyword: String) {
        #expect(MessageFlags.validationProblem(keyword: keyword) != nil)
    }

    @Test(arguments: ["$Forwarded", "$Junk", "$Label1", "NonJunk", "$MDNSent", "a.b-c_d"])
    func validKeywords(_ keyword: String) {
        #expect(MessageFlags.validationProblem(keyword: keyword) == nil)
    }

    @Test func keywordTableParsesLenientlyAndSerializes() {
        let table = KeywordTable(parsing: "0 $Forwarded\n1 $Junk\nbogus\n30 TooFar\n3 $Label1\n4 $Junk\n")
        #expect(table.keyword(at: 0) == "$Forwarded")
        #expect(table.keyword(at: 1) == "$Junk")
        #expect(table.keyword(at: 2) == nil)
        #expect(table.keyword(at: 3) == "$Label1")
        #expect(table.keyword(at: 4) == nil, "duplicate names keep the first index")
        #expect(table.serialized == "0 $Forwarded\n1 $Junk\n3 $Label1\n")
        #expect(KeywordTable(parsing: table.serialized) == table)
    }

    @Test func keywordTableRoundTrip() async {
        let names = Gen<Character?>.element(of: Array("abcXYZ$_-.") as [Character]).map { $0! }.string(of: 1...8).array(of: 0...26)
        await propertyCheck(input: names) { names in
            var table = KeywordTable()
            for name in names { _ = table.allocate(name) }
            #expect(KeywordTable(parsing: table.serialized) == table)
            #expect(Set(table.names.compactMap { $0 }) == Set(names))
        }
    }
}

@Suite struct ModifiedUTF7Tests {
    @Test(arguments: [
        ("Entwürfe", "Entw&APw-rfe"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("a&b", "a&-b"),
        ("Drafts", "Drafts"),
        ("😀", "&2D3eAA-"),
    ])
    func knownVectors(_ pair: (String, String)) {
        #expect(ModifiedUTF7.encode(pair.0) == pair.1)
        #expect(ModifiedUTF7.decode(pair.1) == pair.0)
    }

    @Test(arguments: ["&", "&Jjo", "&AGE-", "&2D0-", "Entw&APw-&APw-rfe", "\u{e9}", "&A-"])
    func rejectsNonCanonical(_ text: String) {
        #expect(ModifiedUTF7.decode(text) == nil, "\(text)")
    }

    @Test func roundTrip() async {
        await propertyCheck(count: 300, input: hostileLevel) { text in
            let encoded = ModifiedUTF7.encode(text)
            #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
            #expect(!encoded.contains("/") || text.contains("/"))
            #expect(ModifiedUTF7.decode(encoded) == text)
        }
    }
}

@Suite struct MailboxNameCodecTests {
    static let codecs = MaildirLayout.allCases.flatMap { layout in
        FolderNameEncoding.allCases.map { MailboxNameCodec(layout: layout, encoding: $0) }
    }

    @Test func layoutsMapLikeDovecot() throws {
        let plus = MailboxNameCodec(layout: .maildirPlusPlus)
        #expect(try plus.relativeComponents(for: "INBOX") == [])
        #expect(try plus.relativeComponents(for: "inbox") == [])
        #expect(try plus.relativeComponents(for: "Lists/swift-dev") == [".Lists.swift-dev"])
        #expect(try plus.relativeComponents(for: "INBOX/Sub") == [".INBOX.Sub"])
        #expect(try plus.relativeComponents(for: "v1.2") == [".v1%2E2"])
        let nested = MailboxNameCodec(layout: .nested)
        #expect(try nested.relativeComponents(for: "INBOX") == [])
        #expect(try nested.relativeComponents(for: "Lists/swift-dev") == ["Lists", "swift-dev"])
        #expect(try nested.relativeComponents(for: "Inbox/x") == ["INBOX", "x"])
        #expect(try nested.relativeComponents(for: "v1.2") == ["v1.2"])
        #expect(try nested.relativeComponents(for: "A/cur") == ["A", "%63ur"])
        #expect(try nested.relativeComponents(for: "A/dovecot-keywords") == ["A", "%64ovecot-keywords"])
        let utf7 = MailboxNameCodec(layout: .maildirPlusPlus, encoding: .modifiedUTF7)
        #expect(try utf7.relativeComponents(for: "Entwürfe/Alt") == [".Entw&APw-rfe.Alt"])
    }

    @Test(arguments: ["../x", "..", ".", "a/../../b", "a\u{0}b", "tab\there", "new\nline", "%2E", "a/./b", "~root"])
    func hostileNamesEncodeSafely(_ name: String) throws {
        for codec in Self.codecs {
            let components = try codec.relativeComponents(for: name)
            for component in components {
                #expect(!component.contains("/"))
                #expect(component != "." && component != "..")
                #expect(!component.utf8.contains { $0 < 0x20 || $0 == 0x7F })
                if codec.layout == .nested { #expect(!component.hasPrefix(".")) }
            }
        }
    }

    @Test(arguments: ["/etc", "", "a//b", "a/", "/"])
    func unencodableNamesAreRefused(_ name: String) {
        for codec in Self.codecs {
            #expect {
                try codec.relativeComponents(for: name)
            } throws: { error in
                guard case MaildirError.unsafeMailboxName(let reported, _) = error else { return false }
                return reported == name
            }
        }
    }

    @Test func overLongNamesAreRefused() {
        let long = String(repeating: "x", count: 300)
        for codec in Self.codecs {
            #expect(throws: MaildirError.self) { try codec.relativeComponents(for: long) }
            #expect(throws: MaildirError.self) { try codec.relativeComponents(for: "a/" + long) }
        }
        // 255 bytes is allowed in nested, where it is one component…
        #expect(throws: Never.self) { try MailboxNameCodec(layout: .nested).relativeComponents(for: String(repeating: "y", count: 255)) }
        // …but Maildir++ adds the leading dot.
        #expect(throws: MaildirError.self) { try MailboxNameCodec(layout: .maildirPlusPlus).relativeComponents(for: String(repeating: "y", count: 255)) }
    }

    @Test func levelEncodingRoundTripsAndIsSafe() async {
        await propertyCheck(count: 400, input: hostileLevel) { level in
            for codec in Self.codecs {
                let disk = codec.encodeLevel(level)
                #expect(codec.decodeLevel(disk) == level, "\(codec.layout) \(codec.encoding): \(String(reflecting: level)) → \(disk)")
                #expect(!disk.contains("/"))
                #expect(!disk.utf8.contains { $0 < 0x20 || $0 == 0x7F })
                #expect(disk != "." && disk != "..")
                switch codec.layout {
                case .maildirPlusPlus: #expect(!disk.contains("."))
                case .nested:
                    #expect(!disk.hasPrefix("."))
                    #expect(!["cur", "new", "tmp", "maildirfolder"].contains(disk) && !disk.hasPrefix("dovecot"))
                }
            }
        }
    }

    @Test func wholeNameRoundTripThroughMaildirPlusPlusDirectory() async {
        await propertyCheck(count: 200, input: hostileLevel.array(of: 1...4)) { levels in
            let name = levels.joined(separator: "/")
            guard !levels.contains(where: { $0.contains("/") }), !MailboxNameCodec.isInbox(levels[0]) else { return }
            for encoding in FolderNameEncoding.allCases {
                let codec = MailboxNameCodec(layout: .maildirPlusPlus, encoding: encoding)
                guard let components = try? codec.relativeComponents(for: name) else { continue }
                #expect(codec.mailboxName(maildirPlusPlusDirectory: components[0]) == name)
            }
        }
    }
}
