#!/usr/bin/env bash
# Runs every test of tugboat on a fresh machine: installs the pinned local AWS emulator into
# .venv (once) and Mosquitto (with apt, where it is missing), then builds and runs the unit,
# in-process and integration tests. The integration tests start their own emulator on a free
# loopback port and stop it at the end; MQTT tests use the broker on 127.0.0.1:1883 where one
# answers and a Mosquitto of their own otherwise (and for the broker-restart test); the agent's
# handler tests use the machine's PostgreSQL, MariaDB and Redis, or start their own; the
# console's tests use Debian's Chromium and playwright-core (scripts/browser-tools.sh).
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
# The agent's handler tests use PostgreSQL, MariaDB and Redis on 127.0.0.1's default ports where
# they run, otherwise servers they start from these packages' binaries.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1; }
missing=()
port_open 5432 || have initdb || missing+=(postgresql)
port_open 3306 || have mariadbd || missing+=(mariadb-server)
port_open 6379 || have redis-server || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (the agent's handler tests start servers of their own)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! { $sudo apt-get install -y "${missing[@]}" || { $sudo apt-get update && $sudo apt-get install -y "${missing[@]}"; }; }; then
    echo "could not install ${missing[*]}: the agent's handler tests will fail saying so" >&2
  fi
fi
# The console's tests drive Debian's headless Chromium through playwright-core.
if ! scripts/browser-tools.sh; then
  echo "could not install chromium or playwright-core: the console's tests will fail saying so" >&2
fi
cargo test --locked "$@"
# The tests that run `tugboat serve` again, over the shared journal (DynamoDB on the emulator):
# crash safety, shutdown, DLQ and redrive, traces, the workflows' end-to-end runs.
if [ $# -eq 0 ]; then
  echo "== again over the shared journal (TUGBOAT_TEST_JOURNAL=dynamodb)"
  TUGBOAT_TEST_JOURNAL=dynamodb cargo test --locked --test service --test ecs_start \
    --test telemetry --test cur_ingest --test spot_drain --test spot_history --test cli \
    --test migrate_and_send --test console
fi
