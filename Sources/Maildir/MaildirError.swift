import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Every failure the Maildir store reports.
///
/// Each case carries the folder or path it concerns so that a log line alone is
/// enough to find the problem on disk, and `description` ends with what the
/// operator can do about it.
public enum MaildirError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A mailbox name that cannot be stored without leaving the root or
    /// colliding with Maildir's own files (for example an empty hierarchy level
    /// or an on-disk component longer than 255 bytes).
    case unsafeMailboxName(name: String, reason: String)
    /// A message base name handed in by the caller that could address a file
    /// outside the folder's `cur/` and `new/` (contains `/`, NUL, starts with `.`…).
    case invalidBaseName(folder: String, baseName: String, reason: String)
    /// A symbolic link was found where the tree must contain a real directory or
    /// file. The store never follows links below the root.
    case symlinkInTree(path: String)
    /// Something other than a directory sits where a directory is required.
    case notADirectory(path: String)
    /// Something other than a regular file sits where a message is expected.
    case notARegularFile(path: String)
    case folderNotFound(name: String, path: String)
    case folderExists(name: String, path: String)
    case folderNotEmpty(name: String, path: String, reason: String)
    /// INBOX is the root (Maildir++) or a fixed directory (nested) and cannot
    /// be renamed or deleted.
    case inboxOperationNotSupported(operation: String)
    case messageNotFound(folder: String, baseName: String)
    /// A folder already uses all 26 keyword letters `a`–`z`.
    case keywordLimitReached(folder: String, keyword: String)
    /// A keyword that is not a valid IMAP flag-keyword atom.
    case invalidKeyword(folder: String, keyword: String, reason: String)
    /// `dovecot-keywords.lock` is held by someone else and is not stale yet.
    case keywordsFileLocked(path: String)
    /// `write` or `commit` after the delivery was already committed or aborted.
    case deliveryFinished(folder: String)
    /// A system call failed; `errno` is kept for callers that branch on it.
    case systemCall(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case let .unsafeMailboxName(name, reason):
            return "Mailbox name \(quoted(name)) cannot be stored safely: \(reason). Rename the mailbox on the server or choose another name."
        case let .invalidBaseName(folder, baseName, reason):
            return "Message base name \(quoted(baseName)) in folder \(quoted(folder)) is not usable: \(reason). Use the base name returned by scan() or commit()."
        case let .symlinkInTree(path):
            return "\(path) is a symbolic link; the Maildir store refuses to follow links inside its root. Replace it with a real directory or move the link target into the root."
        case let .notADirectory(path):
            return "\(path) is not a directory. Move the file out of the way so the Maildir folder can be used."
        case let .notARegularFile(path):
            return "\(path) is not a regular file and cannot be read as a message. Remove or move it out of the Maildir."
        case let .folderNotFound(name, path):
            return "Folder \(quoted(name)) does not exist at \(path). Create it first or check the configured Maildir root and layout."
        case let .folderExists(name, path):
            return "Folder \(quoted(name)) already exists at \(path). Choose another name or delete the existing folder first."
        case let .folderNotEmpty(name, path, reason):
            return "Folder \(quoted(name)) at \(path) is not empty (\(reason)). Move or expunge its messages first."
        case let .inboxOperationNotSupported(operation):
            return "INBOX cannot be \(operation). Move its messages to another folder instead."
        case let .messageNotFound(folder, baseName):
            return "No message with base name \(quoted(baseName)) in cur/ or new/ of folder \(quoted(folder)). It was probably expunged or moved by another program; rescan the folder."
        case let .keywordLimitReached(folder, keyword):
            return "Folder \(quoted(folder)) already uses all 26 Maildir keyword letters, so keyword \(quoted(keyword)) cannot be stored. Remove unused keywords from its dovecot-keywords file (and from messages) or stop syncing this keyword."
        case let .invalidKeyword(folder, keyword, reason):
            return "Keyword \(quoted(keyword)) for folder \(quoted(folder)) is invalid: \(reason). IMAP keywords are atoms without spaces, parentheses, quotes, wildcards or backslashes."
        case let .keywordsFileLocked(path):
            return "\(path) is locked by another process. Retry later; remove the lock file only if no mail program is running."
        case let .deliveryFinished(folder):
            return "A delivery into folder \(quoted(folder)) was already committed or aborted. Start a new delivery with beginDelivery()."
        case let .systemCall(operation, path, code):
            return "\(operation) failed for \(path): \(String(cString: strerror(code))) (errno \(code)). \(Self.suggestion(for: code))"
        }
    }

    private static func suggestion(for code: Int32) -> String {
        switch code {
        case EACCES, EPERM: return "Check ownership and permissions of the Maildir tree."
        case ENOSPC, EDQUOT: return "The file system or quota is full; free space and retry."
        case EROFS: return "The file system is mounted read-only."
        case EXDEV: return "Source and destination are on different file systems; keep the whole Maildir on one file system."
        case ENOENT: return "Another program may have removed or renamed it; rescan and retry."
        case ENAMETOOLONG: return "Shorten the mailbox name or move the Maildir root to a shorter path."
        case EMFILE, ENFILE: return "Too many open files; raise the descriptor limit or open fewer folders at once."
        case EIO: return "The storage reported an I/O error; check the disk."
        default: return "Check the Maildir tree and retry."
        }
    }
}

private func quoted(_ s: String) -> String {
    // Debug-style quoting keeps control characters in hostile names visible in logs.
    String(reflecting: s)
}
