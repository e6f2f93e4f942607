import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Cleans up test servers left behind by test processes that crashed or were killed before
/// their `DovecotServer` objects could stop them (deinit never ran).
///
/// Every server directory records its owner's pid; if that process is gone, the master listed
/// in run/master.pid is terminated and the directory removed. Runs once per test process.
enum StaleServerReaper {
    static let ownerFile = "owner.pid"

    static func reapOnce() {
        _ = reaped
    }

    private static let reaped: Bool = {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for entry in entries where entry.hasPrefix("ferrymail-dovecot.") {
            let dir = "/tmp/\(entry)"
            guard let ownerText = try? String(contentsOfFile: "\(dir)/\(ownerFile)", encoding: .utf8),
                  let owner = pid_t(ownerText.trimmingCharacters(in: .whitespacesAndNewlines)),
                  !processExists(owner),
                  ProcessInfo.processInfo.environment["FERRYMAIL_KEEP_DOVECOT"] == nil
            else { continue }
            if let masterText = try? String(contentsOfFile: "\(dir)/run/master.pid", encoding: .utf8),
               let master = pid_t(masterText.trimmingCharacters(in: .whitespacesAndNewlines)),
               let cmdline = try? String(contentsOfFile: "/proc/\(master)/cmdline", encoding: .utf8),
               cmdline.contains("\(dir)/dovecot.conf") {
                // Only a master whose command line names this very directory is signalled.
                kill(master, SIGTERM)
                for _ in 0..<100 where processExists(master) { usleep(20_000) }
                if processExists(master) { kill(master, SIGKILL) }
            }
            try? FileManager.default.removeItem(atPath: dir)
        }
        return true
    }()

    private static func processExists(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }
}
