import Foundation

/// "Did you mean …?" for misspelt keys and keywords.
enum Suggestion {
    /// The candidate closest to `word` when it is plausibly a typo of it: edit
    /// distance (case-insensitive) at most 1 for short words and at most a third
    /// of the length for longer ones, so `pasword_command` finds
    /// `password_command` but `port` does not "find" `sort`.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let lowered = word.lowercased()
        let limit = max(1, min(3, word.count / 3))
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(lowered, candidate.lowercased())
            if distance <= limit, distance < best?.distance ?? .max {
                best = (candidate, distance)
            }
        }
        return best?.candidate
    }

    /// Damerau–Levenshtein (optimal string alignment): transpositions count as
    /// one edit, the commonest typo.
    static func editDistance(_ lhs: String, _ rhs: String) -> Int {
        let a = Array(lhs)
        let b = Array(rhs)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
                }
            }
        }
        return table[a.count][b.count]
    }
}

/// Turns configured paths into absolute, normalised ones.
///
/// `~` and `~/…` expand to the home directory; relative paths are taken
/// relative to the directory holding the configuration file (not the current
/// directory), so the daemon started from anywhere reads the same tree.
/// `~user` is refused rather than guessed.
struct PathResolver {
    let home: String
    let baseDirectory: String

    enum Failure: Error {
        case empty
        case otherUsersHome
    }

    func resolve(_ raw: String) throws(Failure) -> String {
        guard !raw.isEmpty else { throw .empty }
        let absolute: String
        if raw == "~" {
            absolute = home
        } else if raw.hasPrefix("~/") {
            absolute = home + "/" + raw.dropFirst(2)
        } else if raw.hasPrefix("~") {
            throw .otherUsersHome
        } else if raw.hasPrefix("/") {
            absolute = raw
        } else {
            absolute = baseDirectory + "/" + raw
        }
        return Self.normalize(absolute)
    }

    /// Removes `.`, `..`, empty components and a trailing slash, lexically:
    /// the directories need not exist yet.
    static func normalize(_ path: String) -> String {
        var components: [Substring] = []
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".": continue
            case "..": if !components.isEmpty { components.removeLast() }
            default: components.append(component)
            }
        }
        return "/" + components.joined(separator: "/")
    }

    /// Whether `inner` is `outer` or lies below it.
    static func contains(_ outer: String, _ inner: String) -> Bool {
        outer == inner || inner.hasPrefix(outer == "/" ? "/" : outer + "/")
    }

    /// `path` with symbolic links of its existing ancestors resolved, so two
    /// roots reached through a symlink are recognised as overlapping.
    static func physical(_ path: String) -> String {
        var existing = path
        var rest: [String] = []
        while existing != "/" && !FileManager.default.fileExists(atPath: existing) {
            rest.insert((existing as NSString).lastPathComponent, at: 0)
            existing = (existing as NSString).deletingLastPathComponent
        }
        guard let resolved = realpath(existing, nil) else { return path }
        defer { free(resolved) }
        let base = String(cString: resolved)
        return normalize(([base] + rest).joined(separator: "/"))
    }
}
