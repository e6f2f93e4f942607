import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Small blocking socket helpers for port selection and readiness probing on loopback.
enum LoopbackNetwork {
    /// Asks the kernel for a currently free TCP port on `host` by binding port 0.
    ///
    /// The port is released again before Dovecot binds it, so another process can in principle
    /// grab it in between; `DovecotServer` detects that from Dovecot's log and retries.
    static func freePort(host: String) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FixtureError.fileSystem(operation: "socket", path: host, errno: errno) }
        defer { close(fd) }
        var address = try socketAddress(host: host, port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw FixtureError.fileSystem(operation: "bind", path: "\(host):0", errno: errno) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw FixtureError.fileSystem(operation: "getsockname", path: host, errno: errno) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Connects to `host:port`; returns the connected fd or nil if nothing accepts.
    static func connect(host: String, port: Int, receiveTimeout: Double) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, var address = try? socketAddress(host: host, port: port) else {
            if fd >= 0 { close(fd) }
            return nil
        }
        var timeout = timeval(tv_sec: Int(receiveTimeout), tv_usec: Int((receiveTimeout.truncatingRemainder(dividingBy: 1)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Reads CRLF-terminated lines from `fd` until `accept` returns true for one of them, the peer
    /// closes, or a receive times out. Returns the accepted line, or nil plus what was read.
    static func readLine(from fd: Int32, until accept: (String) -> Bool) -> (line: String?, transcript: String) {
        var pending: [UInt8] = []
        var transcript = ""
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return (nil, transcript) }
            pending.append(contentsOf: buffer[0..<count])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                pending.removeSubrange(...newline)
                transcript += line + "\n"
                if accept(line) { return (line, transcript) }
            }
        }
    }

    static func send(_ text: String, to fd: Int32) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private static func socketAddress(host: String, port: Int) throws -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw FixtureError.unexpectedOutput(command: "inet_pton", output: host)
        }
        return address
    }
}
