#!/usr/bin/env bash
# Runs every test of tugboat on a fresh machine: installs the pinned local AWS emulator into
# .venv (once) and Mosquitto (with apt, where it is missing), then builds and runs the unit,
# in-process and integration tests. The integration tests start their own emulator on a free
# loopback port and stop it at the end; MQTT tests use the broker on 127.0.0.1:1883 where one
# answers and a Mosquitto of their own otherwise (and for the broker-restart test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/local-aws.sh install
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  echo "== installing mosquitto (the MQTT tests start brokers of their own)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! { $sudo apt-get install -y mosquitto || { $sudo apt-get update && $sudo apt-get install -y mosquitto; }; }; then
    echo "could not install mosquitto: the MQTT tests will fail saying so (install it with your package manager)" >&2
  fi
fi
cargo test --locked "$@"
