#!/usr/bin/env bash
# Builds in release mode and prints benchmark figures (see README "Benchmarks").
#   bash scripts/bench.sh [parser|fetch|maildir|state|sync|archive|restore|all] [options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
bash scripts/install-deps.sh
# The same build as an installed ferrymail (README): a statically linked
# Swift runtime starts ~10 ms sooner, a fifth of a no-op sync.
swift build -c release --static-swift-stdlib --product ferrymail
swift build -c release --static-swift-stdlib --product ferrymail-bench
exec /usr/bin/time -v .build/release/ferrymail-bench "$@"
