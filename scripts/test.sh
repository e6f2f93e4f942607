#!/usr/bin/env bash
# The project's test command (see README): installs system dependencies, builds everything
# including tests, runs the whole test suite, and a bounded fuzz smoke run when available.
# Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi

bash scripts/install-deps.sh

echo "==> swift build --build-tests"
swift build --build-tests

# The fuzz smoke runs before the test suite so the suite's summary is the last thing printed.
# Optional: scripts/fuzz.sh may be absent in a partial checkout. FUZZ_SMOKE=1 asks it for a
# short bounded run; the hard timeout turns a hang into a failure instead of eating CI's budget.
if [[ -f scripts/fuzz.sh ]]; then
    echo "==> fuzz smoke (scripts/fuzz.sh)"
    FUZZ_SECONDS=${FUZZ_SECONDS:-30} timeout --kill-after=30 900 bash scripts/fuzz.sh
fi

# The systemd units must pass `systemd-analyze verify` (exit 77: analyzer unavailable, skipped).
echo "==> systemd units (scripts/verify-systemd.sh)"
bash scripts/verify-systemd.sh || { status=$?; [[ $status -eq 77 ]] || exit "$status"; }

# Swift Testing already runs tests in parallel inside one process; `--parallel` would only
# re-parallelize XCTest cases across processes, which this project does not use.
echo "==> swift test"
swift test

