#!/usr/bin/env bash
# Builds in release mode and prints benchmark figures (see README "Benchmarks").
#   bash scripts/bench.sh [parser|fetch|maildir|state|sync|all] [options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
bash scripts/install-deps.sh
swift build -c release --product ferrymail-bench
exec /usr/bin/time -v .build/release/ferrymail-bench "$@"
