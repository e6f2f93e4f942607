#!/usr/bin/env bash
# The README's first command: installs what is missing, builds Ferrymail, starts a
# private Dovecot on 127.0.0.1 with sample mail, and runs the real `ferrymail`
# commands against it. Pass --keep to keep the demo Maildir and state.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
bash scripts/install-deps.sh
echo "==> building ferrymail (first build takes a few minutes)"
swift build --product ferrymail
swift build --product ferrymail-demo
bin=$(swift build --show-bin-path)
exec "$bin/ferrymail-demo" --ferrymail "$bin/ferrymail" "$@"
