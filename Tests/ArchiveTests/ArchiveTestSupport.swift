import Archive
import Digest
import Foundation
import SyncEngine
import SyncState
import TestSupport

/// Runs a system tool to completion. Output goes to files, not pipes, so a
/// long-lived child started by a parallel test can never inherit a pipe end
/// and stall us.
func runTool(_ executable: String, _ arguments: [String], in directory: String? = nil) throws -> (status: Int32, output: String) {
    let scratch = try TemporaryDirectory(prefix: "ferrymail-tool")
    let outPath = scratch.path + "/out"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    process.standardOutput = handle
    process.standardError = handle
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    try handle.close()
    let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    return (process.terminationStatus, output)
}

func sha256(_ bytes: [UInt8]) -> String { SHA256Hasher.digest(bytes).hexString }

/// A message body with a Message-ID, deterministic per (folder, index).
func body(_ folder: String, _ index: Int, size: Int = 1_500) -> [UInt8] {
    Corpus.message(index: index, size: size, folder: folder)
}

/// One mailbox's content, compared without the engine: bytes (by hash),
/// flags (IMAP-normalised), internal dates.
struct MessageSnapshot: Hashable, CustomStringConvertible {
    var sha: String
    var flags: String
    var internalDate: Int64?
    var description: String { "\(sha.prefix(8)) [\(flags)] @\(internalDate.map(String.init) ?? "-")" }
}

func snapshot(_ store: MemoryStore) async -> [String: [MessageSnapshot]] {
    var result: [String: [MessageSnapshot]] = [:]
    for (folder, messages) in await store.contents() {
        result[folder] = messages.map {
            MessageSnapshot(sha: sha256($0.body), flags: FlagMerge.normalized($0.flags).text, internalDate: $0.internalDate)
        }.sorted { ($0.sha, $0.flags) < ($1.sha, $1.flags) }
    }
    return result
}

func roles(_ store: MemoryStore) async throws -> [String: String] {
    var result: [String: String] = [:]
    for box in try await store.listMailboxes() { result[box.name] = box.role?.rawValue ?? "" }
    return result
}

/// Backs `far` up into a new archive at `path` through the engine (pull).
@discardableResult
func backUp(_ far: MemoryStore, to path: String, account: String = "alice@example.test", previous: ArchiveChain? = nil) async throws -> ArchiveSummary {
    let state = try StateStore.inMemory()
    let archive = try ArchiveWriterStore(output: path, account: account, previous: previous, sourceState: state)
    let engine = SyncEngine(account: account, state: state, far: { far }, near: { archive }, options: SyncOptions(direction: .pull))
    let report = try await engine.run()
    guard report.succeeded else {
        await archive.abandon()
        throw BackupFailed(errors: report.allErrors.map(\.description))
    }
    return try await archive.finish()
}

struct BackupFailed: Error, CustomStringConvertible {
    var errors: [String]
    var description: String { errors.joined(separator: "\n") }
}

/// Restores a chain into `near` through the engine (pull); verifies first.
func restore(_ paths: [String], into near: MemoryStore, account: String = "alice@example.test") async throws {
    let chain = try ArchiveChain.open(paths: paths)
    let engine = SyncEngine(account: account, state: try StateStore.inMemory(), far: { ArchiveReaderStore(chain: chain) },
                            near: { near }, options: SyncOptions(direction: .pull))
    let report = try await engine.run()
    guard report.succeeded else { throw BackupFailed(errors: report.allErrors.map(\.description)) }
}

/// The test account: several folders (UTF-8, nested, special-use), flags
/// and keywords, one message in two folders.
func makeAccount() async -> MemoryStore {
    let store = MemoryStore(.imap, mailboxes: ["INBOX": nil, "Sent": .sent, "Entwürfe": .drafts, "Lists/swift": nil, "Lists": nil])
    for index in 0..<5 {
        await store.deliver(body("INBOX", index), to: "INBOX", flags: index.isMultiple(of: 2) ? ["\\Seen"] : .none,
                            internalDate: 1_700_000_000 + Int64(index) * 3_600)
    }
    await store.deliver(body("INBOX", 5), to: "INBOX", flags: ["\\Seen", "\\Flagged", "$Forwarded", "$Label1"], internalDate: 1_700_100_000)
    await store.deliver(body("Sent", 0), to: "Sent", flags: ["\\Seen", "\\Answered"], internalDate: 1_700_200_000)
    await store.deliver(body("Entwürfe", 0), to: "Entwürfe", flags: ["\\Draft"], internalDate: 1_700_300_000)
    for index in 0..<3 {
        await store.deliver(body("Lists/swift", index), to: "Lists/swift", flags: ["$Important"], internalDate: 1_700_400_000 + Int64(index))
    }
    // The same message in two folders (bytes identical): stored once.
    await store.deliver(body("INBOX", 0), to: "Lists/swift", flags: ["\\Seen", "$Copy"], internalDate: 1_700_000_000)
    return store
}
