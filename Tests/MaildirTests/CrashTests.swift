import Foundation
import Testing
@testable import Maildir

/// Deterministic crash simulation: a delivery stops as if the process were
/// killed right after each step (descriptor closed by the "kernel", nothing
/// cleaned up). Whatever the step, `cur/` and `new/` must hold only complete
/// messages, and the folder must stay usable.
@Suite struct CrashSimulationTests {
    static let body = Array((0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })

    struct Variant: Sendable, CustomStringConvertible {
        let step: DeliveryStep
        let flags: MessageFlags
        let toNew: Bool
        var description: String { "\(step) \(flags) toNew:\(toNew)" }
    }

    static let variants: [Variant] = DeliveryStep.allCases.flatMap { step in
        [
            Variant(step: step, flags: .none, toNew: true),
            Variant(step: step, flags: MessageFlags(system: [.seen], keywords: ["$Forwarded"]), toNew: false),
        ]
    }

    @Test(arguments: variants)
    func crashAfterStepLeavesNoPartialMessage(_ variant: Variant) throws {
        let dir = try ScratchDirectory()
        let folder = try MaildirStore(root: dir.path).folder(named: "INBOX", create: true)
        let earlier = try deliver(folder, "an earlier message")

        let delivery = try? folder.beginDelivery(simulatingCrashAfter: variant.step)
        var crashed = delivery == nil
        if let delivery {
            do {
                var offset = 0
                while offset < Self.body.count {
                    let end = min(offset + 8192, Self.body.count)
                    try delivery.write(Self.body[offset..<end])
                    offset = end
                }
                try delivery.commit(flags: variant.flags, toNew: variant.toNew)
            } catch let crash as SimulatedCrash {
                #expect(crash.after == variant.step)
                crashed = true
            }
        }
        #expect(crashed, "the simulated crash must happen")

        let scan = try folder.scan()
        #expect(scan.issues.isEmpty)
        let visibleAfterRename = variant.step.rawValue >= DeliveryStep.renamed.rawValue
        #expect(scan.entries.count == (visibleAfterRename ? 2 : 1))
        for entry in scan.entries {
            let opened = try folder.openMessage(baseName: entry.baseName, hint: entry.fileName)
            let data = Array(try opened.fileHandle.readToEnd() ?? Data())
            #expect(entry.size == data.count, "S= must match the file: \(entry.fileName)")
            if entry.baseName == earlier.baseName {
                #expect(data == Array("an earlier message".utf8))
            } else {
                #expect(data == Self.body, "a visible message is complete")
                #expect(entry.flags == variant.flags)
            }
        }
        // Debris only ever sits in tmp/, and only until it is stale.
        let debris = directoryListing(dir.sub("tmp"))
        #expect(debris.count == (visibleAfterRename ? 0 : 1))
        #expect(try folder.cleanStaleTemporaryFiles(now: Date().addingTimeInterval(37 * 3600)) == debris.count)
        #expect(try folder.scan().entries.count == scan.entries.count)

        try deliver(folder, "after the crash")
        #expect(try folder.scan().entries.count == scan.entries.count + 1)
    }
}

/// A real crash: a child process delivers in a loop and is killed with
/// SIGKILL; afterwards every visible message must be complete. The child is
/// this test binary, re-run with an environment variable that turns the
/// `childDeliveryLoop` test into the delivery loop.
@Suite struct KillTests {
    static let childDirectoryVariable = "FERRYMAIL_MAILDIR_KILL_CHILD_DIR"
    static let messageBody = Array(repeating: Array("0123456789abcdef".utf8), count: 4096).flatMap { $0 } // 64 KiB

    @Test func childDeliveryLoop() throws {
        guard let root = ProcessInfo.processInfo.environment[Self.childDirectoryVariable] else { return }
        let folder = try MaildirStore(root: root).folder(named: "INBOX", create: true)
        while true {
            let delivery = try folder.beginDelivery()
            for offset in stride(from: 0, to: Self.messageBody.count, by: 4096) {
                try delivery.write(Self.messageBody[offset..<(offset + 4096)])
            }
            try delivery.commit(flags: MessageFlags(system: [.seen]), syncDirectory: false)
        }
    }

    @Test func sigkillDuringDeliveriesLeavesOnlyCompleteMessages() throws {
        // SwiftPM on Linux runs the tests from one `.xctest` executable that
        // accepts swift-testing's `--filter`.
        let binary = CommandLine.arguments[0]
        try #require(binary.hasSuffix(".xctest") && FileManager.default.isExecutableFile(atPath: binary),
                     "cannot re-run the test binary \(binary) as a child")
        let dir = try ScratchDirectory()
        var totalVisible = 0
        for round in 0..<4 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["--testing-library", "swift-testing", "--filter", "childDeliveryLoop"]
            var environment = ProcessInfo.processInfo.environment
            environment[Self.childDirectoryVariable] = dir.path
            process.environment = environment
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Wait until the child has delivered something, then kill it mid-flight.
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline && directoryListing(dir.sub("cur")).count <= totalVisible {
                usleep(20_000)
            }
            usleep(UInt32(10_000 + round * 7_000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(process.terminationReason == .uncaughtSignal)

            let folder = try MaildirStore(root: dir.path).folder(named: "INBOX")
            let scan = try folder.scan()
            #expect(scan.issues.isEmpty)
            #expect(scan.entries.count > totalVisible, "round \(round): the child delivered nothing")
            for entry in scan.entries {
                let opened = try folder.openMessage(baseName: entry.baseName, hint: entry.fileName)
                #expect(opened.size == Self.messageBody.count)
                #expect(entry.size == Self.messageBody.count)
            }
            totalVisible = scan.entries.count
        }
    }
}
