import Foundation
import Logging
@testable import Service
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A bound AF_UNIX datagram socket standing in for systemd's notify socket.
final class NotifySocket: Sendable {
    let fd: Int32
    /// `NOTIFY_SOCKET` value: a path, or `@name` for the abstract namespace.
    let address: String
    private let path: String?

    init(abstract: Bool = false) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno)!) }
        let name = "ferrymail-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var bytes: [UInt8]
        if abstract {
            address = "@" + name
            path = nil
            bytes = [0] + Array(name.utf8)
        } else {
            let file = "/tmp/" + name + ".sock"
            address = file
            path = file
            bytes = Array(file.utf8) + [0]
        }
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + bytes.count)
        let result = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard result == 0 else { throw POSIXError(.init(rawValue: errno)!) }
    }

    /// Every datagram received within `timeout`, or until `until` says stop.
    func receive(timeout: Duration, until done: ([String]) -> Bool = { _ in false }) -> [String] {
        var messages: [String] = []
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline, !done(messages) {
            var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let remaining = Int32(max(1, ReconnectBackoff.seconds(ContinuousClock.now.duration(to: deadline)) * 1000))
            guard poll(&pollFD, 1, remaining) > 0 else { continue }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 { messages.append(String(decoding: buffer[0..<count], as: UTF8.self)) }
        }
        return messages
    }

    deinit {
        close(fd)
        if let path { unlink(path) }
    }
}

@Suite struct SystemdNotifierTests {
    @Test(arguments: [false, true])
    func sendsStateChangesAsDatagrams(abstract: Bool) throws {
        let socket = try NotifySocket(abstract: abstract)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.address])
        #expect(notifier.isEnabled)
        try notifier.ready(status: "1 account, no sync yet, 0 errors")
        try notifier.status("1 account, last sync 12:03, 0 errors")
        try notifier.reloading()
        try notifier.watchdog()
        try notifier.stopping()
        let messages = socket.receive(timeout: .seconds(2)) { $0.count == 5 }
        #expect(messages.count == 5)
        #expect(messages.first == "READY=1\nSTATUS=1 account, no sync yet, 0 errors")
        #expect(messages[1] == "STATUS=1 account, last sync 12:03, 0 errors")
        let reload = messages[2].split(separator: "\n")
        #expect(reload.first == "RELOADING=1")
        #expect(reload.count == 2 && reload[1].hasPrefix("MONOTONIC_USEC=") && UInt64(reload[1].dropFirst(15)) != nil)
        #expect(messages[3] == "WATCHDOG=1")
        #expect(messages[4].hasPrefix("STOPPING=1"))
    }

    @Test func disabledWithoutNotifySocket() throws {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(notifier.watchdogInterval == nil)
        try notifier.ready(status: "ignored")
    }

    @Test func watchdogIntervalIsHalfOfWatchdogUsecAndOnlyForThisProcess() {
        let mine = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"])
        #expect(mine.watchdogInterval == .seconds(15))
        let other = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"])
        #expect(other.watchdogInterval == nil)
        let ours = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid())"])
        #expect(ours.watchdogInterval == .seconds(15))
    }

    @Test func aMissingSocketIsAnActionableError() {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify.sock"])
        #expect(throws: ServiceError.self) { try notifier.ready(status: "x") }
    }

    /// WATCHDOG_USEC = 200 ms → a ping every 100 ms.
    @Test func watchdogPingsAtHalfTheInterval() async throws {
        let socket = try NotifySocket()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.address, "WATCHDOG_USEC": "200000"])
        let interval = try #require(notifier.watchdogInterval)
        #expect(interval == .milliseconds(100))
        let service = WatchdogService(notifier: notifier, interval: interval, logger: Logger(label: "test"))
        let task = Task { try await service.run() }
        let start = ContinuousClock.now
        // The blocking receive runs on its own thread: on a 2-core machine the
        // cooperative pool has two threads, and parking one would starve the
        // watchdog task this test is watching.
        // Waits for three pings, up to 30 s: with the rest of the suite
        // running, the two cooperative threads the pings need were busy
        // enough that only two came in 15 s (CI, 2026-11-28).
        let messages = try await offloadBlocking { socket.receive(timeout: .seconds(30)) { $0.count >= 3 } }
        task.cancel()
        _ = try? await task.value
        let elapsed = start.duration(to: .now)
        #expect(messages.allSatisfy { $0 == "WATCHDOG=1" })
        // Repeated pings must come; their spacing is `interval`, checked above,
        // and not timed here (timings are flaky on shared 2-core machines).
        #expect(messages.count >= 2, "got \(messages.count) pings in \(elapsed)")
    }
}
