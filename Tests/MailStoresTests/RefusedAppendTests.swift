import Foundation
@testable import MailStores
import SyncEngine
import SyncState
import TestSupport
import Testing

/// A server that refuses one message (Dovecot's `quota_max_mail_size`
/// answers the APPEND with `NO [LIMIT]`) while pipelined APPENDs of the
/// others are in flight around it.
@Suite("Uploads the server refuses")
struct RefusedAppendTests {
    @Test func aRefusedUploadIsReportedAndTheOthersArrive() async throws {
        let account = try await Account(.sizeLimited)
        for index in 0..<12 {
            // The seventh is over the server's limit; the rest are small.
            let size = index == 6 ? ServerKind.sizeLimit * 2 : 3_000
            try account.writeLocal(Corpus.message(index: index, size: size), folder: "INBOX")
        }

        let first = try await account.sync()
        #expect(first.mailbox("INBOX")?.copied.far == 11)
        guard case .messageRejected(_, "INBOX", .far, _, let size, let reason)? = first.allErrors.first else {
            Issue.record("expected the refusal in the report, got \(first.allErrors.map(\.description))")
            return
        }
        #expect(first.allErrors.count == 1)
        #expect(size > Int64(ServerKind.sizeLimit))
        #expect(reason.uppercased().contains("LIMIT") || reason.lowercased().contains("size"), "the server's reason: \(reason)")

        // Exactly the eleven small ones are on the server, once each.
        let server = try MaildirChecker.read(root: account.server.user.maildirRoot, encodesNames: true, servesCRLF: true)
        let local = try MaildirChecker.read(root: account.localRoot, encodesNames: false)
        #expect(server["INBOX"]?.count == 11)
        let uploaded: [CheckedMessage] = server["INBOX"] ?? []
        let held: [CheckedMessage] = local["INBOX"] ?? []
        let localDigests = Set(held.map(\.digest))
        #expect(uploaded.allSatisfy { localDigests.contains($0.digest) })

        // The next run tries it again, says so again, and duplicates nothing.
        let second = try await account.sync()
        #expect(second.allErrors.count == 1, "\(second.allErrors.map(\.description))")
        #expect(second.mailbox("INBOX")?.copied == Sides(far: 0, near: 0))
        #expect(try MaildirChecker.read(root: account.server.user.maildirRoot, encodesNames: true, servesCRLF: true)["INBOX"]?.count == 11)
    }
}
