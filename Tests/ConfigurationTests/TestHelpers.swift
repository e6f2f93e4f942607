import Foundation
import Testing

@testable import Configuration

/// A fixed environment so results do not depend on who runs the tests.
let testEnvironment = ["HOME": "/home/tester"]
let testSource = "/home/tester/.config/ferrymail/config.toml"

func parseConfig(_ text: String, environment: [String: String] = testEnvironment) throws -> FerrymailConfiguration {
    try FerrymailConfiguration.parse(text, source: testSource, environment: environment)
}

/// The issues of a configuration that must fail; records a test failure if it parses.
func issues(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> [ConfigurationIssue] {
    do {
        let configuration = try FerrymailConfiguration.parse(text, source: testSource, environment: testEnvironment)
        Issue.record("expected errors, got \(configuration)", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.issues
    }
}

/// The only issue of a configuration expected to have exactly one.
func singleIssue(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigurationIssue? {
    let found = issues(text, sourceLocation: sourceLocation)
    #expect(found.count == 1, "expected one issue, got: \(found.map(\.description))", sourceLocation: sourceLocation)
    return found.first
}

/// A valid minimal account body to build failing variants from.
let minimalAccount = """
    [[account]]
    name = "work"
    host = "imap.example.org"
    user = "me@example.org"
    password_command = "pass show work"
    maildir = "~/Mail/work"
    """

/// A fresh temporary directory, removed by the caller with `cleanUp`.
func makeTemporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "ferrymail-config-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func cleanUp(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}
