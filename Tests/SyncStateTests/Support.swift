import Foundation
import SyncState

/// A private directory removed when the value is deinitialised.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.path + "/syncstate-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Permission bits of a file, e.g. 0o600.
func permissions(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as! NSNumber).intValue & 0o777
}

/// An in-memory store with one account and one mailbox pair, the usual start
/// of an API test.
func storeWithMailbox() throws -> (StateStore, accountId: Int64, mailboxId: Int64) {
    let store = try StateStore.inMemory()
    let account = try store.account(named: "personal")
    let mailbox = try store.upsertMailboxPair(account: account.id!, farName: "INBOX", nearName: "INBOX")
    return (store, account.id!, mailbox.id!)
}

func pair(_ uid: UInt32, _ name: String? = nil, messageId: String? = nil, size: Int64 = 1000) -> NewPair {
    NewPair(farUid: uid, nearName: name ?? "msg\(uid)", size: size, messageId: messageId ?? "<\(uid)@example.org>")
}
