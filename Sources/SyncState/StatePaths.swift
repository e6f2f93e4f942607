import Foundation

/// Where the state lives on disk, following the XDG Base Directory spec: the
/// sync state is "state data" (it should survive restarts but is not worth
/// backing up like configuration), hence `$XDG_STATE_HOME`.
public enum StatePaths {
    /// `$XDG_STATE_HOME/ferrymail/state.sqlite`, or
    /// `$HOME/.local/state/ferrymail/state.sqlite` when `XDG_STATE_HOME` is
    /// unset, empty or relative (the spec says relative values are invalid and
    /// must be ignored).
    ///
    /// The environment is a parameter so callers and tests need not mutate the
    /// process environment.
    public static func defaultDatabasePath(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        let base: String
        if let xdg = environment["XDG_STATE_HOME"], xdg.hasPrefix("/") {
            base = xdg
        } else {
            let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            base = home + "/.local/state"
        }
        return trimmingTrailingSlashes(base) + "/ferrymail/state.sqlite"
    }

    /// The process-lock file that sits beside a database.
    public static func lockPath(forDatabase path: String) -> String {
        path + ".lock"
    }

    /// Creates `directory` and any missing parents with mode 0700, as the XDG
    /// spec asks, because the state names mailboxes and message ids that other
    /// local users have no business reading. Directories that already exist
    /// are left alone: the user may have chosen their permissions on purpose.
    static func createPrivateDirectory(_ directory: String) throws(StateError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return }
            throw .io(path: directory, operation: "creating state directory", errno: ENOTDIR)
        }
        let parent = (directory as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != directory {
            try createPrivateDirectory(parent)
        }
        if mkdir(directory, 0o700) != 0, errno != EEXIST {
            throw .io(path: directory, operation: "creating state directory", errno: errno)
        }
        // mkdir's mode is filtered by the umask; 0700 must hold whatever it is.
        _ = chmod(directory, 0o700)
    }

    /// Creates `path` if missing and forces mode 0600 on it, existing or not:
    /// the state is Ferrymail's own file and should never be group-readable.
    static func createPrivateFile(_ path: String) throws(StateError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 {
            throw .io(path: path, operation: "creating state database", errno: errno)
        }
        defer { close(fd) }
        if fchmod(fd, 0o600) != 0 {
            throw .io(path: path, operation: "restricting permissions of", errno: errno)
        }
    }

    private static func trimmingTrailingSlashes(_ path: String) -> String {
        var path = path
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        return path
    }
}
