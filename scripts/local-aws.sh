#!/usr/bin/env bash
# Local AWS emulator (moto in server mode) for tugboat's tests and local demo.
#
#   scripts/local-aws.sh install        install the pinned moto[server] and awscli into .venv (once)
#   scripts/local-aws.sh start [PORT]   start it on 127.0.0.1 (no PORT = a free port); prints the endpoint
#   scripts/local-aws.sh stop           stop the emulator started by `start`
#   scripts/local-aws.sh aws ARGS...    run the real AWS CLI against it
#
# Everything lives under the project: .venv/ for Python packages, target/local-aws/ for the
# emulator's pid, endpoint and log. Nothing here talks to anything but loopback and PyPI.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TUGBOAT_VENV:-$root/.venv}"
state="$root/target/local-aws"
pins="moto[server]==5.2.5 awscli==1.46.3 cbor2==5.6.5"

# shellcheck source=scripts/venv.sh
. "$root/scripts/venv.sh"

install() { pinned_venv "$venv" "$pins" "local-aws: installing $pins into $venv (about a minute, once)"; }

start() {
  install
  mkdir -p "$state"
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    cat "$state/endpoint"
    return 0
  fi
  : > "$state/log"
  "$venv/bin/python" "$root/scripts/moto_launcher.py" --port "${1:-0}" \
    >"$state/ready" 2>>"$state/log" </dev/null &
  echo $! > "$state/pid"
  for _ in $(seq 1 300); do
    if grep -q '^TUGBOAT_MOTO_READY ' "$state/ready" 2>/dev/null; then
      awk '/^TUGBOAT_MOTO_READY /{print $2}' "$state/ready" | tee "$state/endpoint"
      return 0
    fi
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "local-aws: the emulator did not start; see $state/log" >&2
  exit 1
}

stop() {
  if [ -f "$state/pid" ]; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    rm -f "$state/pid" "$state/endpoint"
  fi
}

aws_cli() {
  install
  local endpoint="${AWS_ENDPOINT_URL:-$(cat "$state/endpoint")}"
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
    AWS_EC2_METADATA_DISABLED=true "$venv/bin/aws" --endpoint-url "$endpoint" "$@"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  install) install ;;
  start) start "$@" ;;
  stop) stop ;;
  aws) aws_cli "$@" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
