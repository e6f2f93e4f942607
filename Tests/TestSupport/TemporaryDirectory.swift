import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A fresh private directory (mode 0700, created with `mkdtemp`) that is removed again by
/// `remove()` or, as a safety net, when the object is deallocated.
///
/// Use it for anything a test writes to disk so parallel tests never share paths:
/// ```swift
/// let dir = try TemporaryDirectory()
/// defer { dir.remove() }
/// let db = dir.url.appendingPathComponent("state.sqlite")
/// ```
public final class TemporaryDirectory: Sendable {
    /// The directory's location.
    public let url: URL

    /// The directory's path, for APIs that take strings.
    public var path: String { url.path }

    /// Creates the directory under `parent` (default: `$TMPDIR`, falling back to /tmp).
    public init(prefix: String = "ferrymail-test", in parent: String? = nil) throws {
        url = try Self.create(prefix: prefix, in: parent)
    }

    /// Creates a fresh 0700 directory without tying its lifetime to an object; the caller removes it.
    public static func create(prefix: String, in parent: String? = nil) throws -> URL {
        let base = parent ?? ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let template = (base.hasSuffix("/") ? base : base + "/") + prefix + ".XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let created = bytes.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw FixtureError.fileSystem(operation: "mkdtemp", path: template, errno: errno)
        }
        return URL(fileURLWithPath: String(cString: created), isDirectory: true)
    }

    /// Deletes the directory and everything in it. Idempotent.
    public func remove() {
        try? FileManager.default.removeItem(at: url)
    }

    /// Runs `body` with a fresh directory that is removed afterwards, even if `body` throws.
    public static func with<Result>(prefix: String = "ferrymail-test",
                                    _ body: (URL) async throws -> Result) async throws -> Result {
        let directory = try TemporaryDirectory(prefix: prefix)
        defer { directory.remove() }
        return try await body(directory.url)
    }

    deinit {
        remove()
    }
}
