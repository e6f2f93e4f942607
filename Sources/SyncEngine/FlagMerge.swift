import SyncState

/// The three-way flag merge, per flag, between what the last sync agreed on
/// (`base`) and what each side has now.
///
/// Rules (copied into the README's "How sync works"):
/// - **Additions from either side win.** A flag absent at the last sync and
///   present on either side now is set on both.
/// - **Removals apply where the other side left the flag alone.** A flag
///   present at the last sync and missing on one side now is removed from
///   both — whether the other side still has it (it left it alone) or removed
///   it too. There is no per-flag conflict: a side can only add a flag the
///   base lacks and only remove one it has.
/// - **`\Deleted` is an ordinary flag** until a message is expunged.
/// - **`\Recent` is never synced**: it describes one IMAP session.
/// - **No base** (first sync, or a message re-paired by Message-ID): the
///   base is what both sides agree on, so the result is the union.
/// - **A side that cannot store keywords** neither adds nor removes them:
///   its keywords count as the base's, so the other side keeps its own.
/// When both sides changed a message's flags differently since the last sync,
/// the merged result is still determined by these rules; the engine logs it
/// as a conflict (warning, with both keys) so the user can check.
public enum FlagMerge {
    /// Merges one message's flags.
    public static func merge(base: MessageFlags, far: MessageFlags, near: MessageFlags) -> MessageFlags {
        var result: [String] = []
        for name in Set(base.names).union(far.names).union(near.names) {
            let inFar = far.contains(name), inNear = near.contains(name)
            if base.contains(name) {
                if inFar && inNear { result.append(name) }
            } else if inFar || inNear {
                result.append(name)
            }
        }
        return MessageFlags(result)
    }

    /// True for IMAP system flags (`\Seen`), false for keywords (`$Label1`).
    public static func isSystemFlag(_ name: String) -> Bool { name.hasPrefix("\\") }

    static func systemFlags(_ flags: MessageFlags) -> MessageFlags { MessageFlags(flags.names.filter(isSystemFlag)) }
    static func keywords(_ flags: MessageFlags) -> MessageFlags { MessageFlags(flags.names.filter { !isSystemFlag($0) }) }

    private static let canonicalSpellings = Set(canonicalSystemFlags.values)
    private static let canonicalSystemFlags: [String: String] = Dictionary(
        uniqueKeysWithValues: ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"].map { ($0.lowercased(), $0) })

    /// Spells system flags canonically (IMAP compares them case-insensitively)
    /// and drops `\Recent`, so two spellings never look like a change.
    public static func normalized(_ flags: MessageFlags) -> MessageFlags {
        // Nearly always spelled canonically already: no lower-casing then.
        if flags.names.allSatisfy({ !isSystemFlag($0) || canonicalSpellings.contains($0) }) { return flags }
        return MessageFlags(flags.names.compactMap { name -> String? in
            guard isSystemFlag(name) else { return name }
            let lower = name.lowercased()
            if lower == "\\recent" { return nil }
            return canonicalSystemFlags[lower] ?? name
        })
    }

    static func union(_ a: MessageFlags, _ b: MessageFlags) -> MessageFlags { MessageFlags(a.names + b.names) }
    static func intersection(_ a: MessageFlags, _ b: MessageFlags) -> MessageFlags { MessageFlags(a.names.filter(b.contains)) }
    static func subtracting(_ a: MessageFlags, _ b: MessageFlags) -> MessageFlags { MessageFlags(a.names.filter { !b.contains($0) }) }
}
