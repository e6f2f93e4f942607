import Foundation
import TestSupport

// The README's first command ends here: a private Dovecot on 127.0.0.1 with
// sample mail, a configuration pointing Ferrymail at it, and the real
// `ferrymail` binary run against it — first sync, changes on both sides, a
// second sync that carries them across, and a third that has nothing to do.
//
//   ferrymail-demo --ferrymail PATH [--keep]

func argument(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

func banner(_ text: String) {
    print("\n\u{1B}[1m== \(text)\u{1B}[0m")
}

/// Runs ferrymail with the demo configuration, its output going straight to the terminal.
@discardableResult
func ferrymail(_ binary: String, _ arguments: [String]) throws -> Int32 {
    print("$ ferrymail \(arguments.joined(separator: " "))")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    // Our buffered lines first, so they and the child's output appear in order.
    fflush(nil)
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}

/// Folder → message count, read straight from the Maildir (not through Ferrymail).
func localSummary(_ root: String) -> [(String, Int)] {
    let fm = FileManager.default
    var result: [(String, Int)] = []
    func count(_ dir: String) -> Int {
        ["cur", "new"].reduce(0) { $0 + ((try? fm.contentsOfDirectory(atPath: dir + "/" + $1))?.count ?? 0) }
    }
    result.append(("INBOX", count(root)))
    for entry in ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted() where entry.hasPrefix(".") {
        // Maildir++ keeps the hierarchy in dots: `.Lists.swift-dev` is `Lists/swift-dev`.
        result.append((entry.dropFirst().replacingOccurrences(of: ".", with: "/"), count(root + "/" + entry)))
    }
    return result
}

guard let binary = argument("--ferrymail") else {
    print("usage: ferrymail-demo --ferrymail PATH-TO-FERRYMAIL [--keep]")
    exit(2)
}
let keep = CommandLine.arguments.contains("--keep")

do {
    banner("Starting a private Dovecot on 127.0.0.1 with sample mail")
    let server = try await DovecotServer.start(.init())
    defer { server.stop() }
    let alice = server.users[0]
    let bob = server.users[1]
    _ = try server.seedMaildir(user: alice.name, mailbox: "INBOX", messages: Corpus.messages(count: 40, size: 6_000), flags: [])
    _ = try server.seedMaildir(user: alice.name, mailbox: "INBOX", messages: Corpus.messages(count: 10, size: 3_000, startIndex: 40),
                               flags: ["\\Seen", "\\Flagged"])
    _ = try server.seedMaildir(user: alice.name, mailbox: "Lists/swift-dev",
                               messages: Corpus.messages(count: 15, size: 4_000, folder: "Lists/swift-dev"), flags: ["\\Seen"])
    _ = try server.seedMaildir(user: alice.name, mailbox: "Sent", messages: Corpus.messages(count: 5, folder: "Sent"), flags: ["\\Seen"])
    _ = try server.saveMessage(user: alice.name, mailbox: "Entwürfe", bytes: Corpus.message(index: 900, folder: "Entwürfe"),
                               flags: ["\\Draft", "$Label1"])
    print("Dovecot \(server.host):\(server.plainPort) (STARTTLS, self-signed CA \(server.caCertificatePath))")
    print("user \(alice.name): INBOX 50, Lists/swift-dev 15, Sent 5, Entwürfe 1 (with keyword $Label1)")

    let work = try TemporaryDirectory.create(prefix: "ferrymail-demo").path
    let passwordFile = work + "/password"
    let bobPasswordFile = work + "/bob-password"
    for (file, password) in [(passwordFile, alice.password), (bobPasswordFile, bob.password)] {
        guard FileManager.default.createFile(atPath: file, contents: Data((password + "\n").utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file])
        }
    }
    let maildir = work + "/Mail"
    let config = work + "/config.toml"
    let toml = """
        # Written by the Ferrymail demo; see config.example.toml for every key.
        [general]
        state = "\(work)/state.sqlite"

        [[account]]
        name = "demo"
        host = "\(server.host)"
        port = \(server.plainPort)
        security = "starttls"
        ca_file = "\(server.caCertificatePath)"
        user = "\(alice.name)"
        password_file = "\(passwordFile)"
        maildir = "\(maildir)"

        # A second, empty account on the same server: the demo restores the backup into it.
        [[account]]
        name = "new-server"
        host = "\(server.host)"
        port = \(server.plainPort)
        security = "starttls"
        ca_file = "\(server.caCertificatePath)"
        user = "\(bob.name)"
        password_file = "\(bobPasswordFile)"
        maildir = "\(work)/Mail-new-server"

        """
    try toml.write(toFile: config, atomically: true, encoding: .utf8)
    print("configuration: \(config)")

    banner("ferrymail check: log in, show capabilities and fast paths")
    try ferrymail(binary, ["check", "--config", config])

    banner("First sync: everything comes down")
    try ferrymail(binary, ["sync", "--config", config, "--account", "demo"])
    for (folder, count) in localSummary(maildir) { print("  local \(folder): \(count) messages") }

    banner("Changes on both sides")
    let newUID = try server.saveMessage(user: alice.name, mailbox: "INBOX", bytes: Corpus.message(index: 500), flags: [])
    print("server: a new message arrived in INBOX (UID \(newUID))")
    _ = try server.doveadm(["flags", "add", "-u", alice.name, "\\Answered", "mailbox", "INBOX", "uid", "1"])
    print("server: INBOX UID 1 marked \\Answered by another client")
    let inboxCur = maildir + "/cur"
    let files = try FileManager.default.contentsOfDirectory(atPath: inboxCur).sorted()
    if files.count >= 2 {
        let read = files[0]
        let renamed = read + "F"
        try FileManager.default.moveItem(atPath: inboxCur + "/" + read, toPath: inboxCur + "/" + renamed)
        print("local: \(read) flagged by a mail reader (renamed with F)")
        try FileManager.default.removeItem(atPath: inboxCur + "/" + files[1])
        print("local: \(files[1]) deleted by a mail reader")
    }

    banner("Second sync: the changes cross over")
    try ferrymail(binary, ["sync", "--config", config, "--account", "demo"])
    let serverFlags = try server.doveadm(["-f", "flow", "fetch", "-u", alice.name, "uid flags", "mailbox", "INBOX", "FLAGGED"])
    print("server now shows these INBOX messages \\Flagged:\n" + serverFlags)

    banner("Third sync: nothing left to do")
    try ferrymail(binary, ["sync", "--config", config, "--account", "demo"])

    banner("ferrymail status")
    try ferrymail(binary, ["status", "--config", config, "--account", "demo"])

    banner("Backup: one compressed archive of the account, then verify it")
    let archive = work + "/demo-backup.tar.gz"
    try ferrymail(binary, ["backup", "--config", config, "--account", "demo", "--output", archive])
    try ferrymail(binary, ["verify-archive", archive])

    banner("Restore the archive into an empty account (bob on the same server), twice")
    try ferrymail(binary, ["restore", "--config", config, "--to-account", "new-server", "--archive", archive])
    try ferrymail(binary, ["restore", "--config", config, "--to-account", "new-server", "--archive", archive])
    let restored = try server.doveadm(["mailbox", "status", "-u", bob.name, "-t", "messages", "*"])
    print("bob's account now holds \(restored.trimmingCharacters(in: .whitespacesAndNewlines)) messages in all folders")

    if keep {
        print("\nKept \(work) (Maildir in \(maildir)). Dovecot stops now.")
    } else {
        try? FileManager.default.removeItem(atPath: work)
        print("\nDemo finished; run with --keep to keep the Maildir and state for a look.")
    }
} catch {
    print("demo failed: \(error)")
    exit(1)
}
