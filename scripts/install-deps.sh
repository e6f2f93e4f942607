#!/usr/bin/env bash
# Installs the system packages Ferrymail's build and tests need (Debian/Ubuntu).
#
# Idempotent and quiet when everything is present: apt is only touched if a package is
# missing. Safe to run as root (CI) or as a user with sudo.
#
#   dovecot-core, dovecot-imapd  real IMAP server for integration tests (Tests/TestSupport)
#   libsqlite3-dev               SQLite for the sync-state store (GRDB)
#   libssl-dev, openssl          TLS and test-certificate generation
#   zlib1g-dev                   COMPRESS=DEFLATE
#   isync                        mbsync, only for benchmark comparisons (optional)
set -euo pipefail

required=(dovecot-core dovecot-imapd libsqlite3-dev libssl-dev zlib1g-dev openssl)
optional=(isync time)

log() { printf 'install-deps: %s\n' "$*" >&2; }

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()
fi

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing_packages() {
    local pkg
    for pkg in "$@"; do
        is_installed "$pkg" || printf '%s\n' "$pkg"
    done
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    log "dpkg-query not found: this script supports Debian/Ubuntu only; install manually: ${required[*]}"
    exit 1
fi

mapfile -t missing < <(missing_packages "${required[@]}")
mapfile -t missing_optional < <(missing_packages "${optional[@]}")

if (( ${#missing[@]} + ${#missing_optional[@]} > 0 )); then
    if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        log "missing packages (${missing[*]} ${missing_optional[*]}) and not root and no sudo available"
        (( ${#missing[@]} == 0 )) || exit 1
    else
        log "installing: ${missing[*]} ${missing_optional[*]}"
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update -qq
        if (( ${#missing[@]} > 0 )); then
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
        fi
        if (( ${#missing_optional[@]} > 0 )); then
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing_optional[@]}" || log "optional packages failed to install (benchmarks only): ${missing_optional[*]}"
        fi

        # The package starts a system Dovecot on ports 143/993 where an init system exists.
        # Tests never use it (each starts a private instance), so stop and disable it.
        if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
            "${SUDO[@]}" systemctl disable --now dovecot.service >/dev/null 2>&1 || true
        fi
        if command -v service >/dev/null 2>&1; then
            "${SUDO[@]}" service dovecot stop >/dev/null 2>&1 || true
        fi
    fi
fi

# Swift toolchain: on these machines it lives in /opt/swift/usr/bin, which may not be on PATH.
if ! command -v swift >/dev/null 2>&1; then
    if [[ -x /opt/swift/usr/bin/swift ]]; then
        log "swift not on PATH; use: export PATH=/opt/swift/usr/bin:\$PATH (scripts/test.sh does this itself)"
    else
        log "swift not found on PATH or in /opt/swift/usr/bin; install a Swift 6.1+ toolchain"
        exit 1
    fi
fi
