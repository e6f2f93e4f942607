#if canImport(Glibc)
import Glibc
#endif

/// Every failure of the archive writer, reader, verifier and archive stores.
///
/// Each message names the archive file, the entry (tar path) where one is
/// involved, and the cause, because `ferrymail backup`, `verify-archive` and
/// `restore` print it as one line without further context.
public enum ArchiveError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A system call on the archive (or a file next to it) failed.
    case io(archive: String, operation: String, errno: Int32)
    /// The output file exists already; a backup never overwrites one.
    case alreadyExists(archive: String)
    /// The compressed stream or the tar structure is damaged at `entry`
    /// (nil: before the first entry, or between entries).
    case damaged(archive: String, entry: String?, cause: String)
    /// The file ends before the archive does: an interrupted copy or download.
    case truncated(archive: String, entry: String?)
    /// An entry's bytes do not hash to what the manifest recorded.
    case hashMismatch(archive: String, entry: String, expected: String, actual: String)
    /// The manifest (or header entry) is not what this format promises.
    case manifestInvalid(archive: String, line: Int?, cause: String)
    /// An appended message delivered more or fewer bytes than announced.
    case sizeMismatch(archive: String, folder: String, announced: Int64, received: Int64)
    /// An operation an archive store cannot perform (archives are
    /// append-only while written and read-only afterwards).
    case unsupported(archive: String, operation: String, reason: String)
    case noSuchFolder(archive: String, folder: String)
    /// Several archives given as one incremental chain do not form one.
    case chainBroken(archive: String, cause: String)
    /// zlib refused to start or continue.
    case compression(archive: String, cause: String)
    /// The writer was used after `finish()` or `abandon()`.
    case closed(archive: String)

    public var description: String {
        switch self {
        case let .io(archive, operation, code):
            return "archive \(archive): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
        case let .alreadyExists(archive):
            return "archive \(archive) already exists; choose another output name or remove it first (a backup never overwrites an archive)"
        case let .damaged(archive, entry, cause):
            return "archive \(archive) is damaged\(Self.at(entry)): \(cause); restore from another copy of this archive"
        case let .truncated(archive, entry):
            return "archive \(archive) is truncated\(Self.at(entry)): the file ends before the archive does (interrupted copy or full disk?)"
        case let .hashMismatch(archive, entry, expected, actual):
            return "archive \(archive) is damaged at entry \(entry): SHA-256 \(actual) but the manifest records \(expected)"
        case let .manifestInvalid(archive, line, cause):
            let place = line.map { " (manifest.jsonl line \($0))" } ?? ""
            return "archive \(archive) has an invalid manifest\(place): \(cause)"
        case let .sizeMismatch(archive, folder, announced, received):
            return "archive \(archive), folder \(folder): message announced \(announced) bytes but \(received) arrived; it was not archived"
        case let .unsupported(archive, operation, reason):
            return "archive \(archive): \(operation) is not supported: \(reason)"
        case let .noSuchFolder(archive, folder):
            return "archive \(archive) has no folder \(folder)"
        case let .chainBroken(archive, cause):
            return "archive \(archive) does not fit the incremental chain: \(cause)"
        case let .compression(archive, cause):
            return "archive \(archive): zlib failed: \(cause)"
        case let .closed(archive):
            return "archive \(archive): the writer was already finished or abandoned"
        }
    }

    private static func at(_ entry: String?) -> String {
        entry.map { " at entry \($0)" } ?? ""
    }
}
