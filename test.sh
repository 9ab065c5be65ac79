#!/usr/bin/env bash
# Every test: installs what the tests need (Mosquitto, Chromium, Node, nginx from apt when
# missing, a virtual environment), then ruff, the JavaScript unit tests and pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/system-deps.sh test
scripts/venv.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
node --test tests/js/
.venv/bin/pytest "$@"
