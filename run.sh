#!/usr/bin/env bash
# The whole system on this machine: installs what it needs (Mosquitto from apt when missing,
# a virtual environment), then `edge-bridge demo`: broker, bridge, demo data, simulator.
set -euo pipefail
cd "$(dirname "$0")"
scripts/system-deps.sh run
scripts/venv.sh
exec .venv/bin/edge-bridge demo "$@"
