import IMAPCodec
import Testing

@Suite("Modified UTF-7, dates and UID sets")
struct EncodingTests {
    @Test(arguments: [
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("&", "&-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("a&b", "a&-b"),
        ("INBOX", "INBOX"),
        ("", ""),
        ("😀", "&2D3eAA-"),
        ("tab\there", "tab&AAk-here"),
    ])
    func modifiedUTF7Vectors(unicode: String, wire: String) throws {
        #expect(ModifiedUTF7.encode(unicode) == Array(wire.utf8))
        #expect(try ModifiedUTF7.decode(Array(wire.utf8)) == unicode)
        #expect(try MailboxName(unicode, encoding: .modifiedUTF7).displayName(encoding: .modifiedUTF7) == unicode)
    }

    @Test(arguments: [
        ("&U,BTFw", "unterminated shift"),
        ("&U,BTF!-", "invalid modified base64 character"),
        ("&U/BTFw-", "invalid modified base64 character"),
        ("&AGE-", "printable ASCII"),
        ("&U,BTFx-", "non-canonical base64 padding"),
        ("&U,B-", "non-canonical base64 padding"),
        ("&U,BTFw-&ZeVnLIqe-", "adjacent shift sequences"),
        ("&2D0-", "not valid UTF-16"),
        ("caf\u{e9}", "not printable US-ASCII"),
    ])
    func modifiedUTF7RejectsInvalidInput(wire: String, message: String) {
        #expect {
            _ = try ModifiedUTF7.decode(Array(wire.utf8))
        } throws: { error in
            (error as? MailboxNameError)?.message.contains(message) == true
        }
    }

    @Test func utf8DisplayNamesAreValidated() throws {
        #expect(try MailboxName("台北", encoding: .utf8).displayName(encoding: .utf8) == "台北")
        #expect(throws: MailboxNameError.self) { try MailboxName(wireBytes: [0xFF, 0x41]).displayName(encoding: .utf8) }
    }

    @Test func internalDateParseAndFormat() throws {
        let date = try InternalDate(imapDateTime: "17-Jul-1996 02:44:25 -0700")
        #expect(date.secondsSinceEpoch == 837_596_665)
        #expect(date.zoneMinutes == -420)
        #expect(date.imapDateTime == "17-Jul-1996 02:44:25 -0700")
        let padded = try InternalDate(imapDateTime: "\" 1-Jan-2000 00:00:00 +0000\"")
        #expect(padded.secondsSinceEpoch == 946_684_800)
        #expect(padded.imapDateTime == "01-Jan-2000 00:00:00 +0000")
        #expect(try InternalDate(imapDateTime: "29-Feb-2024 23:59:59 +0530").imapDateTime == "29-Feb-2024 23:59:59 +0530")
        #expect(try InternalDate(imapDateTime: "1-jan-1970 00:00:00 +0100").secondsSinceEpoch == -3600)
    }

    @Test(arguments: ["31-Feb-2020 00:00:00 +0000", "17-Foo-1996 02:44:25 -0700", "17-Jul-1996 24:00:00 +0000",
                      "17-Jul-1996 02:44:25", "17-Jul-1996 02:44:25 -07000", "17-Jul-96 02:44:25 -0700", ""])
    func internalDateRejects(text: String) {
        #expect(throws: InternalDateError.self) { try InternalDate(imapDateTime: text) }
    }

    @Test func uidSetCompression() {
        #expect(UIDSet([1, 2, 3, 5, 7, 8, 9, 100]).description == "1:3,5,7:9,100")
        #expect(UIDSet(ranges: [9...12, 1...3, 4...4, 11...20]).description == "1:4,9:20")
        #expect(UIDSet(ranges: [5...UInt32.max]).description == "5:*")
        #expect(UIDSet.all.description == "1:*")
        var set = UIDSet([10])
        set.insert(11)
        set.insert(1...3)
        #expect(set.description == "1:3,10:11")
        #expect(set.contains(2) && !set.contains(5))
        #expect(Array(UIDSet([3, 1, 2])) == [1, 2, 3])
    }
}
