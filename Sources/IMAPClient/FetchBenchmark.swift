#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import IMAPCodec
import NIOCore

/// Downloads a whole mailbox into one file per message, for `ferrymail-bench`.
/// `pipelined` sends the UID FETCH for every message at once (split into a few
/// commands in flight); otherwise each message is fetched by its own command and
/// the next is sent only after the previous completed, like a naive client.
public enum FetchBenchmark {
    public struct Report: Sendable, CustomStringConvertible {
        public var messages: Int
        public var bytes: UInt64
        public var seconds: Double
        public var pipelined: Bool
        public var description: String {
            let mb = Double(bytes) / 1_000_000
            return "\(pipelined ? "pipelined" : "one-by-one"): \(messages) messages, \(Int(mb)) MB in "
                + "\((seconds * 100).rounded() / 100) s (\(Int(mb / seconds)) MB/s)"
        }
    }

    public static func run(host: String, port: Int, user: String, password: String, mailbox: String = "INBOX",
                           outputDirectory: String, pipelined: Bool, security: IMAPConfiguration.Security = .plaintext,
                           compress: Bool = false) async throws -> Report {
        let configuration = IMAPConfiguration(host: host, port: port, security: security,
                                              credentials: .password(user: user, password: password),
                                              allowInsecureAuth: security == .plaintext, compress: compress)
        let start = ContinuousClock.now
        let sink = MessageFileSink(directory: outputDirectory)
        let count = try await IMAPConnection.withConnection(configuration: configuration) { connection in
            _ = try await connection.examine(mailbox)
            let uids = try await connection.uidSearch(.all).uids
            if pipelined {
                // Several commands in flight, each a range of messages: the server never waits for us.
                let all = Array(uids)
                let perCommand = max(1, all.count / 8)
                let parts = stride(from: 0, to: all.count, by: perCommand).map { UIDSet(all[$0..<min($0 + perCommand, all.count)]) }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for part in parts {
                        group.addTask { _ = try await connection.uidFetch(part, items: [.uid, .body()], sink: sink) }
                    }
                    try await group.waitForAll()
                }
            } else {
                for uid in uids {
                    _ = try await connection.uidFetch(UIDSet(uid...uid), items: [.uid, .body()], sink: sink)
                }
            }
            return uids.count
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Report(messages: count, bytes: await sink.totalBytes, seconds: seconds, pipelined: pipelined)
    }
}

/// Writes each fetched body to `<directory>/<uid>` as its bytes arrive.
actor MessageFileSink: FetchSink {
    private let directory: String
    private var descriptor: Int32 = -1
    private(set) var totalBytes: UInt64 = 0

    init(directory: String) { self.directory = directory }

    func bodyBegin(message: FetchedMessage, section: BodySection, size: UInt64) async throws {
        let path = "\(directory)/\(message.uid ?? message.sequenceNumber)"
        descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw IMAPClientError.invalidArgument("cannot create \(path) (errno \(errno))") }
    }

    func bodyBytes(_ bytes: ByteBuffer) async throws {
        totalBytes += UInt64(bytes.readableBytes)
        try bytes.withUnsafeReadableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                guard n > 0 else { throw IMAPClientError.invalidArgument("write failed (errno \(errno))") }
                offset += n
            }
        }
    }

    func bodyEnd() async throws {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }
}
