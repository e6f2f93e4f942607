import Foundation
@testable import Service
import TestSupport
import Testing

/// The daemon benchmark against a private Dovecot. Off by default (it takes
/// about two minutes); run with
/// `FERRYMAIL_DAEMON_BENCH=1 swift test --filter DaemonBenchmarkTests`, and
/// `FERRYMAIL_DAEMON_BENCH_IDLE=300` for a five-minute idle period.
@Suite struct DaemonBenchmarkTests {
    static var enabled: Bool { ProcessInfo.processInfo.environment["FERRYMAIL_DAEMON_BENCH"] == "1" }

    @Test(.enabled(if: enabled), .timeLimit(.minutes(15)))
    func measure() async throws {
        let environment = ProcessInfo.processInfo.environment
        let idle = environment["FERRYMAIL_DAEMON_BENCH_IDLE"].flatMap(Int.init) ?? 60
        let fixture = try await DaemonFixture(DovecotServer.Options(users: [.alice]))
        // Stop explicitly: the process may exit before the fixture is released.
        defer { fixture.server.stop() }
        let config = try fixture.writeConfiguration(users: ["alice"])
        let benchmark = DaemonBenchmark(
            configurationPath: config, accountName: "alice",
            parameters: .init(samples: 60, idlePeriod: .seconds(idle), firstCycleCount: 100, secondCycleCount: 1000),
            logger: testLogger)
        let results = try await benchmark.run()
        print(results)
        #expect(results.appendToMaildir.count == 60)
        #expect(results.renameToServer.count == 60)
    }

    @Test func percentiles() {
        let values: [Duration] = (1...100).map { .milliseconds($0) }
        #expect(DaemonBenchmark.Results.percentile(values, 0.5) == .milliseconds(50))
        #expect(DaemonBenchmark.Results.percentile(values, 0.95) == .milliseconds(95))
        #expect(DaemonBenchmark.Results.percentile([], 0.5) == .zero)
    }

    @Test func maildirNameHelpers() {
        #expect(DaemonBenchmark.flags(of: "/m/cur/1.a.host:2,FS") == "FS")
        #expect(DaemonBenchmark.adding("S", to: "/m/cur/1.a.host:2,F") == "/m/cur/1.a.host:2,FS")
        #expect(DaemonBenchmark.adding("S", to: "/m/new/1.a.host") == "/m/cur/1.a.host:2,S")
        #expect(DaemonBenchmark.adding("S", to: "/m/cur/1.a.host:2,S") == "/m/cur/1.a.host:2,S")
    }
}
