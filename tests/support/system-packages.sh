#!/usr/bin/env bash
# Debian packages the test suite needs that pip cannot provide: pgbouncer (tests/db/test_pgbouncer.py,
# tests/db/test_pool_tls.py) and chromium (tests/e2e, driven by Playwright; `playwright install`
# is never used). Idempotent; run by `make test`.
set -euo pipefail
need=()
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || need+=(pgbouncer)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${need[*]} (run: sudo apt-get install -y ${need[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${need[@]}" >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
