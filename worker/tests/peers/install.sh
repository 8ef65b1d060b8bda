#!/usr/bin/env bash
# Installs the npm test peers, pinned by package-lock.json, into node_modules (gitignored).
# Later runs reuse them until the lock file changes. Safe to call from parallel tests.
set -euo pipefail
cd "$(dirname "$0")"
exec 9>.install.lock
flock 9
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.installed-lock-sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
