import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A deliberately dumb, blocking, plaintext IMAP connection for poking a test server
/// independently of Ferrymail's own client (fixture smoke tests, "another client changed the
/// mailbox" scenarios). It only frames lines; literals and TLS are not handled.
///
/// Not `Sendable`: use it from one task.
public final class RawIMAPConnection {
    /// The first line the server sent.
    public let greeting: String
    private let fd: Int32
    private var pending: [UInt8] = []
    private var tagCounter = 0
    private var closed = false

    /// Connects and reads the greeting. `timeout` bounds every single read.
    public init(host: String, port: Int, timeout: Double = 10) throws {
        guard let fd = LoopbackNetwork.connect(host: host, port: port, receiveTimeout: timeout) else {
            throw FixtureError.connectionFailed(host: host, port: port, errno: errno)
        }
        self.fd = fd
        var greeting = ""
        // Skip Dovecot's interim "Waiting for authentication process" lines.
        repeat {
            do {
                greeting = try Self.readLine(fd: fd, pending: &pending, waitingFor: "the greeting")
            } catch {
                Glibc.close(fd)
                throw error
            }
        } while greeting.contains("Waiting for authentication")
        self.greeting = greeting
    }

    /// Sends one line (CRLF is appended).
    public func send(_ line: String) {
        LoopbackNetwork.send(line + "\r\n", to: fd)
    }

    /// Reads one line (without CRLF).
    public func readLine() throws -> String {
        try Self.readLine(fd: fd, pending: &pending, waitingFor: "a line")
    }

    /// Sends `command` with a fresh tag and returns every line up to and including the tagged
    /// completion. Check the last line for "OK"/"NO"/"BAD" yourself, or use `ok(_:)`.
    public func command(_ command: String) throws -> [String] {
        tagCounter += 1
        let tag = "t\(tagCounter)"
        send("\(tag) \(command)")
        var lines: [String] = []
        while true {
            let line = try Self.readLine(fd: fd, pending: &pending, waitingFor: "completion of \(tag) \(command.prefix(40))")
            lines.append(line)
            if line.hasPrefix(tag + " ") { return lines }
        }
    }

    /// Like `command`, but throws unless the tagged completion is OK.
    @discardableResult
    public func ok(_ command: String) throws -> [String] {
        let lines = try self.command(command)
        guard let last = lines.last, last.split(separator: " ").dropFirst().first == "OK" else {
            throw FixtureError.unexpectedOutput(command: "IMAP \(command.prefix(60))", output: lines.joined(separator: "\n"))
        }
        return lines
    }

    /// Capabilities from an untagged `* CAPABILITY` line or a `[CAPABILITY …]` response code
    /// (the last one found in `lines`).
    public static func capabilities(in lines: [String]) -> [String] {
        for line in lines.reversed() {
            if line.hasPrefix("* CAPABILITY ") {
                return line.dropFirst("* CAPABILITY ".count).split(separator: " ").map(String.init)
            }
            if let start = line.range(of: "[CAPABILITY "), let end = line[start.upperBound...].firstIndex(of: "]") {
                return line[start.upperBound..<end].split(separator: " ").map(String.init)
            }
        }
        return []
    }

    /// Closes the socket. Idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    deinit { close() }

    private static func readLine(fd: Int32, pending: inout [UInt8], waitingFor: String) throws -> String {
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                var end = newline
                if end > pending.startIndex && pending[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                let line = String(decoding: pending[pending.startIndex..<end], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 {
                throw FixtureError.connectionClosed(waitingFor: waitingFor, transcript: String(decoding: pending, as: UTF8.self))
            }
            pending.append(contentsOf: buffer[0..<count])
        }
    }
}
