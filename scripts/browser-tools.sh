#!/usr/bin/env bash
# Installs what the console's browser tests drive: Debian's headless Chromium and, from npm,
# playwright-core (the driver only: it downloads no browser; the tests point it at
# /usr/bin/chromium). Idempotent; tests/console.rs fails naming what is missing without it.
#
#   scripts/browser-tools.sh        install (once), then print nothing
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "browser-tools: installing Debian's chromium (a minute or two, once)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >/dev/null \
    || { $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >/dev/null; }
fi
if ! command -v node >/dev/null 2>&1; then
  echo "browser-tools: node is missing (the console's browser tests drive Chromium from Node.js)" >&2
  exit 1
fi
lock=tests/browser/package-lock.json
stamp=tests/browser/node_modules/.tugboat-lock
if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
  echo "browser-tools: npm ci in tests/browser" >&2
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$lock" "$stamp"
fi
