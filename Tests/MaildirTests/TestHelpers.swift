import Foundation
import Testing
@testable import Maildir

/// A private directory removed when the value is released.
final class ScratchDirectory: Sendable {
    let path: String

    init(_ label: String = "maildir-test") throws {
        var template = Array((NSTemporaryDirectory() + "ferrymail-\(label)-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw MaildirError.systemCall(operation: "mkdtemp", path: NSTemporaryDirectory(), errno: errno) }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { path + "/" + name }
}

@discardableResult
func deliver(_ folder: MaildirFolder, _ body: String, flags: MessageFlags = .none,
             date: Date = Date(timeIntervalSince1970: 1_600_000_000), toNew: Bool = false) throws -> MaildirEntry {
    let delivery = try folder.beginDelivery()
    let bytes = Array(body.utf8)
    // Several chunks, so the streaming path is what is tested.
    var offset = 0
    while offset < bytes.count {
        let end = min(offset + 7, bytes.count)
        try delivery.write(bytes[offset..<end])
        offset = end
    }
    return try delivery.commit(flags: flags, internalDate: date, toNew: toNew)
}

func readBody(_ folder: MaildirFolder, _ baseName: String) throws -> String {
    let opened = try folder.openMessage(baseName: baseName)
    let data = try opened.fileHandle.readToEnd() ?? Data()
    return String(decoding: data, as: UTF8.self)
}

func directoryListing(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

func writeFile(_ path: String, _ contents: String) throws {
    try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
}
