#!/usr/bin/env bash
# Bounded fuzzing of IMAPCodec's ResponseParser.
#
# Uses libFuzzer (swift build -Xswiftc -sanitize=fuzzer) when the toolchain
# supports it; otherwise falls back to the seeded replay mode of the same
# executable in a release build. Fuzzing time is capped at FUZZ_SECONDS
# (default 55 s; building comes on top of that).
#
#   scripts/fuzz.sh                 # libFuzzer if available, else replay
#   FUZZ_MODE=replay scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-55}
FUZZ_MODE=${FUZZ_MODE:-auto}
FUZZ_SCRATCH=${FUZZ_SCRATCH:-.build-fuzz}
CORPUS=${FUZZ_CORPUS:-$FUZZ_SCRATCH/corpus}

if [ "$FUZZ_MODE" != "replay" ] && swift build -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING --product IMAPParserFuzz --scratch-path "$FUZZ_SCRATCH"; then
    mkdir -p "$CORPUS"
    echo "libFuzzer: fuzzing for ${FUZZ_SECONDS}s, corpus in $CORPUS"
    exec "$FUZZ_SCRATCH/debug/IMAPParserFuzz" -max_total_time="$FUZZ_SECONDS" -max_len=4096 -timeout=5 -rss_limit_mb=1024 "$CORPUS"
fi

echo "libFuzzer unavailable or disabled: running the seeded replay mode"
swift build -c release --product IMAPParserFuzz
# About 200k inputs per second on one core; stay well inside the time budget.
exec timeout "$FUZZ_SECONDS" "$(swift build -c release --show-bin-path)/IMAPParserFuzz" --iterations $((FUZZ_SECONDS * 100000)) --seed "${FUZZ_SEED:-$RANDOM}"
