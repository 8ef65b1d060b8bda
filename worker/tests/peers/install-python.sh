#!/usr/bin/env bash
# Installs the Python test peers, pinned in requirements.txt, into .venv (gitignored).
# Later runs reuse it until requirements.txt changes. Safe to call from parallel tests.
set -euo pipefail
cd "$(dirname "$0")"
exec 9>.install-python.lock
flock 9
want=$(sha256sum requirements.txt | cut -d' ' -f1)
stamp=.venv/.installed-requirements-sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
echo "$want" > "$stamp"
