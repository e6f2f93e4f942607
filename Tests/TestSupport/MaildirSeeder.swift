import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension DovecotServer {
    /// Where `seedMaildir` puts the messages.
    public enum SeedPlacement: Sendable {
        /// `cur/` with an info suffix (`:2,<flags>`): messages Dovecot has already "seen" arrive.
        case cur
        /// `new/` without info suffix: freshly delivered mail (Dovecot reports it as \Recent).
        /// Flags cannot be stored in this placement.
        case new
    }

    /// Writes messages straight into `user`'s Maildir (bypassing Dovecot), creating the mailbox
    /// directories as needed, and fixes their ownership. Returns the paths of the files written.
    ///
    /// Fast enough for tens of thousands of messages (a few syscalls each, no helper processes);
    /// Dovecot indexes them on first access. `flags` are IMAP system flags (`\Seen`, `\Answered`,
    /// `\Flagged`, `\Deleted`, `\Draft`) applied to every message; keywords would need Dovecot's
    /// dovecot-keywords file, so use `saveMessage` for those.
    ///
    /// Mailbox names use "/" as separator (as clients see them). With Maildir++ `Lists/swift` is
    /// stored as `<root>/.Lists.swift`, with `.fs` as `<root>/Lists/swift`; non-ASCII names are
    /// stored in modified UTF-7 unless `Options.utf8Names` is on. `INBOX` is the root itself.
    @discardableResult
    public func seedMaildir(user: String, mailbox: String = "INBOX", messages: [[UInt8]], flags: [String] = [],
                            placement: SeedPlacement = .cur) throws -> [URL] {
        let account = try testUser(named: user)
        let info = try Self.maildirInfo(flags: flags, placement: placement)
        let mailboxDirectory = try maildirDirectory(for: mailbox, root: account.maildirRoot)
        try createMailboxDirectories(mailboxDirectory, root: account.maildirRoot, isInbox: mailbox.uppercased() == "INBOX")

        let tmp = mailboxDirectory.appendingPathComponent("tmp").path
        let destination = mailboxDirectory.appendingPathComponent(placement == .cur ? "cur" : "new").path
        var written: [URL] = []
        written.reserveCapacity(messages.count)
        for message in messages {
            let name = MaildirNames.unique(size: message.count) + info
            let tmpPath = "\(tmp)/\(name)"
            let fd = open(tmpPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FixtureError.fileSystem(operation: "create", path: tmpPath, errno: errno) }
            do {
                try Subprocess.writeAll(fd: fd, bytes: message, path: tmpPath)
            } catch {
                close(fd)
                throw error
            }
            fchown(fd, mailUID, mailGID)
            close(fd)
            let finalPath = "\(destination)/\(name)"
            guard rename(tmpPath, finalPath) == 0 else {
                throw FixtureError.fileSystem(operation: "rename into \(placement)", path: tmpPath, errno: errno)
            }
            written.append(URL(fileURLWithPath: finalPath))
        }
        return written
    }

    /// The directory holding `mailbox` for the configured layout and name encoding.
    public func maildirDirectory(for mailbox: String, user: String) throws -> URL {
        try maildirDirectory(for: mailbox, root: testUser(named: user).maildirRoot)
    }

    func maildirDirectory(for mailbox: String, root: URL) throws -> URL {
        if mailbox.uppercased() == "INBOX" { return root }
        let components = mailbox.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for component in components {
            if component.isEmpty || component == "." || component == ".." {
                throw FixtureError.invalidMailboxName(mailbox, reason: "empty, '.' or '..' hierarchy level")
            }
            if options.mailLayout == .maildirPlusPlus && component.contains(".") {
                throw FixtureError.invalidMailboxName(
                    mailbox, reason: "'.' is Maildir++'s on-disk separator; use MailLayout.fs for such names")
            }
            if ["cur", "new", "tmp"].contains(component) && options.mailLayout == .fs {
                throw FixtureError.invalidMailboxName(mailbox, reason: "clashes with a Maildir subdirectory in LAYOUT=fs")
            }
        }
        let encoded = options.utf8Names ? components : components.map(FixtureModifiedUTF7.encode)
        switch options.mailLayout {
        case .maildirPlusPlus:
            return root.appendingPathComponent("." + encoded.joined(separator: "."), isDirectory: true)
        case .fs:
            return encoded.reduce(root) { $0.appendingPathComponent($1, isDirectory: true) }
        }
    }

    private func createMailboxDirectories(_ directory: URL, root: URL, isInbox: Bool) throws {
        var toCreate: [URL] = []
        if options.mailLayout == .fs {
            // Parents of nested folders are plain directories (\NoSelect until they get cur/new/tmp).
            var parent = directory.deletingLastPathComponent()
            while parent.path.count > root.path.count {
                toCreate.insert(parent, at: 0)
                parent = parent.deletingLastPathComponent()
            }
        }
        toCreate.append(directory)
        toCreate += ["cur", "new", "tmp"].map { directory.appendingPathComponent($0, isDirectory: true) }
        for dir in toCreate where !FileManager.default.fileExists(atPath: dir.path) {
            if mkdir(dir.path, 0o700) != 0 && errno != EEXIST {
                throw FixtureError.fileSystem(operation: "mkdir", path: dir.path, errno: errno)
            }
            chown(dir.path, mailUID, mailGID)
        }
        if !isInbox && options.mailLayout == .maildirPlusPlus {
            // Marker Dovecot (and Courier) create in every Maildir++ subfolder.
            let marker = directory.appendingPathComponent("maildirfolder").path
            let fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            if fd >= 0 {
                fchown(fd, mailUID, mailGID)
                close(fd)
            }
        }
    }

    /// `:2,` plus the sorted Maildir flag letters, or "" for `new/`.
    static func maildirInfo(flags: [String], placement: SeedPlacement) throws -> String {
        let letters: [String: Character] = ["\\DRAFT": "D", "\\FLAGGED": "F", "\\ANSWERED": "R", "\\SEEN": "S", "\\DELETED": "T"]
        var chosen: [Character] = []
        for flag in flags {
            guard let letter = letters[flag.uppercased()] else {
                throw FixtureError.unsupportedFlag(flag, reason: "seedMaildir only writes system flags (\\Seen \\Answered \\Flagged \\Deleted \\Draft); use saveMessage for keywords")
            }
            if !chosen.contains(letter) { chosen.append(letter) }
        }
        switch placement {
        case .cur:
            return ":2," + String(chosen.sorted())
        case .new:
            guard chosen.isEmpty else {
                throw FixtureError.unsupportedFlag(flags.joined(separator: " "), reason: "messages in new/ carry no flags; use placement .cur")
            }
            return ""
        }
    }
}

/// Unique Maildir base names: `<secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>`.
enum MaildirNames {
    private static let counter = Locked<UInt64>(0)

    /// The host part with the characters Maildir reserves ('/' and ':') replaced, as the
    /// Maildir spec recommends.
    static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count - 1)
        let name = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return (name.isEmpty ? "localhost" : name)
            .replacingOccurrences(of: "/", with: "\\057").replacingOccurrences(of: ":", with: "\\072")
    }()

    static func unique(size: Int) -> String {
        var now = timeval()
        gettimeofday(&now, nil)
        let sequence = counter.withLock { value -> UInt64 in
            value += 1
            return value
        }
        return "\(now.tv_sec).M\(now.tv_usec)P\(getpid())Q\(sequence).\(hostName),S=\(size)"
    }
}

/// IMAP's modified UTF-7 (RFC 3501 §5.1.3), which Dovecot uses for mailbox names on disk
/// unless the `UTF-8` mail_location flag is set.
public enum FixtureModifiedUTF7 {
    public static func encode(_ name: String) -> String {
        var output = ""
        var pending: [UInt16] = []
        func flush() {
            guard !pending.isEmpty else { return }
            var bytes: [UInt8] = []
            for unit in pending { bytes += [UInt8(unit >> 8), UInt8(unit & 0xff)] }
            let base64 = Data(bytes).base64EncodedString()
                .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "/", with: ",")
            output += "&" + base64 + "-"
            pending.removeAll()
        }
        for scalar in name.unicodeScalars {
            if scalar.value >= 0x20 && scalar.value <= 0x7e {
                flush()
                output += scalar == "&" ? "&-" : String(scalar)
            } else {
                pending += Array(String(scalar).utf16)
            }
        }
        flush()
        return output
    }
}
