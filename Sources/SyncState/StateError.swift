import Foundation
import GRDB

/// Every failure the sync state can report.
///
/// There is one error type so the daemon and the CLI can print a single
/// actionable line without knowing about SQLite or GRDB; each message names the
/// state file involved and, where there is one, what the user should do.
public enum StateError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Another process (or another `StateStore` in this process) holds the
    /// state's process lock. `holderPID` is nil when the holder had not yet
    /// written its pid, which only happens in a very short window after it
    /// took the lock.
    case locked(path: String, holderPID: Int32?)
    /// The database was written by a newer Ferrymail: it has applied schema
    /// migrations this build does not know, so touching it could corrupt it.
    case schemaTooNew(path: String, unknownMigrations: [String])
    /// The file exists but is not a readable SQLite database.
    case corrupted(path: String, detail: String)
    /// A uniqueness or foreign-key rule refused a write, e.g. pairing a far UID
    /// that is already paired in the same mailbox. `detail` is SQLite's own
    /// text, which names the table and columns of the conflict.
    case conflict(String)
    /// `completeCopies` or `cancelCopies` named a transfer that is not pending
    /// (already completed, cancelled, or never recorded).
    case unknownTransfer(String)
    /// A mailbox pair id that does not exist in this database.
    case unknownMailboxPair(Int64)
    /// A message pair id that does not exist (any more) in this database.
    case unknownMessagePair(Int64)
    /// A file-system operation around the database failed (creating the state
    /// directory, the lock file, fixing permissions).
    case io(path: String, operation: String, errno: Int32)
    /// Any other SQLite failure (disk full, I/O error, closed store, ...).
    case database(path: String, detail: String)

    public var description: String {
        switch self {
        case let .locked(path, pid):
            let holder = pid.map { "pid \($0)" } ?? "pid unknown"
            return "state database \(path) is in use by another ferrymail process (\(holder)); stop it or use a different state file"
        case let .schemaTooNew(path, unknown):
            return "state database \(path) was written by a newer ferrymail (unknown schema migrations: \(unknown.joined(separator: ", "))); upgrade ferrymail or use a different state file"
        case let .corrupted(path, detail):
            return "state database \(path) is not a usable SQLite database (\(detail)); move it aside to start a fresh sync state"
        case let .conflict(detail):
            return "sync state refused a conflicting write: \(detail)"
        case let .unknownTransfer(id):
            return "no pending copy with transfer id \(id) in the sync state"
        case let .unknownMailboxPair(id):
            return "no mailbox pair with id \(id) in the sync state"
        case let .unknownMessagePair(id):
            return "no message pair with id \(id) in the sync state"
        case let .io(path, operation, code):
            return "\(operation) \(path) failed: \(String(cString: strerror(code))) (errno \(code))"
        case let .database(path, detail):
            return "state database \(path): \(detail)"
        }
    }

    /// Maps whatever GRDB or SQLite threw into the case a user can act on.
    static func wrap(_ error: any Error, path: String) -> StateError {
        if let error = error as? StateError { return error }
        guard let dbError = error as? DatabaseError else {
            return .database(path: path, detail: String(describing: error))
        }
        let message = dbError.message ?? "\(dbError.resultCode)"
        switch dbError.resultCode {
        case .SQLITE_CONSTRAINT:
            return .conflict(message)
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            return .corrupted(path: path, detail: message)
        default:
            return .database(path: path, detail: message)
        }
    }
}
