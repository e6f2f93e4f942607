#!/usr/bin/env bash
# Checks the systemd units in systemd/ with `systemd-analyze --user verify`.
#
# verify refuses units whose ExecStart binary is missing, so when
# ~/.local/bin/ferrymail (the units' ExecStart, %h/.local/bin/ferrymail) does
# not exist, a temporary symlink to the freshly built binary (or /bin/true)
# stands in for the duration of the check and is removed afterwards.
# Templates are verified through instance names (ferrymail@example.service…).
#
# Exit status: 0 all units verified, 1 a unit has problems, 77 skipped
# because systemd-analyze is unavailable and cannot be installed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
units="$root/systemd"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "verify-systemd: installing systemd for systemd-analyze" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd >/dev/null || true
    fi
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify-systemd: SKIPPED: systemd-analyze is not installed and could not be installed (apt-get install systemd)" >&2
    exit 77
fi

binary="$HOME/.local/bin/ferrymail"
created_link=""
cleanup() {
    if [ -n "$created_link" ]; then rm -f "$created_link"; fi
    if [ -n "${work:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
if [ ! -e "$binary" ]; then
    target=/bin/true
    for candidate in "$root/.build/release/ferrymail" "$root/.build/debug/ferrymail"; do
        if [ -x "$candidate" ]; then target="$candidate"; break; fi
    done
    mkdir -p "$(dirname "$binary")"
    ln -s "$target" "$binary"
    created_link="$binary"
    echo "verify-systemd: temporary $binary -> $target for the ExecStart check" >&2
fi

work="$(mktemp -d)"
mkdir -m 0700 "$work/runtime"
cp "$units"/*.service "$units"/*.timer "$work"/
# Instances of the templates, as users would enable them.
cp "$units/ferrymail@.service" "$work/ferrymail@example.service"
cp "$units/ferrymail-backup@.service" "$work/ferrymail-backup@example.service"
cp "$units/ferrymail-backup@.timer" "$work/ferrymail-backup@example.timer"

status=0
for unit in ferrymail.service ferrymail@example.service ferrymail-backup@example.service ferrymail-backup@example.timer; do
    # verify prints problems on stderr and may still exit 0 for warnings: treat any output as failure.
    if output="$(cd "$work" && XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$work/runtime}" systemd-analyze --user verify "$work/$unit" 2>&1)" && [ -z "$output" ]; then
        echo "verify-systemd: $unit OK"
    else
        echo "verify-systemd: $unit FAILED:" >&2
        echo "$output" >&2
        status=1
    fi
done
exit $status
