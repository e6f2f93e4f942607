#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The `sd_notify(3)` protocol, spoken directly: one `KEY=value\n…` datagram
/// per call to the AF_UNIX socket named by `NOTIFY_SOCKET`. No libsystemd,
/// so the binary runs (and is tested) on machines without it.
///
/// `NOTIFY_SOCKET` is a filesystem path or, starting with `@`, a name in the
/// abstract namespace (the `@` becomes a leading NUL byte and the address
/// length excludes any terminator, as systemd expects). A socket is opened per
/// message: messages are rare (start, reload, status changes, a watchdog ping
/// every few seconds), and this keeps the type stateless and `Sendable`.
///
/// When `NOTIFY_SOCKET` is unset every call is a no-op, so the daemon can call
/// it unconditionally.
public struct SystemdNotifier: Sendable {
    /// The socket address, nil when not run by systemd with `Type=notify`.
    public let socketPath: String?
    /// How often systemd wants `WATCHDOG=1`: half of `WATCHDOG_USEC`, as
    /// `sd_watchdog_enabled(3)` recommends, so one late ping is not fatal.
    /// nil when the watchdog is off or meant for another process (`WATCHDOG_PID`).
    public let watchdogInterval: Duration?

    public init(environment: [String: String]) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        var interval: Duration?
        if path != nil, let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 {
            let forUs = environment["WATCHDOG_PID"].flatMap { Int32($0) }.map { $0 == getpid() } ?? true
            if forUs { interval = .microseconds(usec / 2) }
        }
        watchdogInterval = interval
    }

    public var isEnabled: Bool { socketPath != nil }

    /// `READY=1`, with a first status line.
    public func ready(status: String) throws(ServiceError) {
        try send(["READY=1", "STATUS=" + status])
    }

    /// Free-form status shown by `systemctl status`.
    public func status(_ text: String) throws(ServiceError) {
        try send(["STATUS=" + text])
    }

    /// Start of a configuration reload. `MONOTONIC_USEC` is required by
    /// `Type=notify-reload` (systemd ≥ 253) to match the reload to this
    /// message; older systemd ignores it. Follow with `ready(status:)`.
    public func reloading() throws(ServiceError) {
        try send(["RELOADING=1", "MONOTONIC_USEC=\(Self.monotonicMicroseconds())"])
    }

    public func stopping() throws(ServiceError) {
        try send(["STOPPING=1", "STATUS=stopping"])
    }

    public func watchdog() throws(ServiceError) {
        try send(["WATCHDOG=1"])
    }

    /// Sends one datagram made of `assignments`, newline-separated.
    public func send(_ assignments: [String]) throws(ServiceError) {
        guard let socketPath else { return }
        let message = Array(assignments.joined(separator: "\n").utf8)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        if abstract { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity || (abstract && pathBytes.count <= capacity) else {
            throw .systemdNotify(socket: socketPath, message: "address longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in pathBytes.enumerated() { raw[index] = byte }
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
        // Abstract names are exactly as long as given; paths include their NUL.
        let length = socklen_t(pathOffset + pathBytes.count + (abstract ? 0 : 1))

        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .systemdNotify(socket: socketPath, message: "socket: \(ServiceError.errnoText(errno))") }
        defer { close(fd) }
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes { bytes in
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        guard sent == message.count else {
            throw .systemdNotify(socket: socketPath, message: "sendto: \(ServiceError.errnoText(errno))")
        }
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }
}
