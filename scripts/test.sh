#!/usr/bin/env bash
# Runs every test of tugboat on a fresh machine: installs the pinned local AWS emulator into
# .venv (once), then builds and runs the unit, in-process and integration tests. The
# integration tests start their own emulator on a free loopback port and stop it at the end;
# MQTT tests use the broker on 127.0.0.1:1883.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/local-aws.sh install
cargo test --locked "$@"
