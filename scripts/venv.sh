#!/usr/bin/env bash
# Creates .venv and installs the project with its dev extra, again only when pyproject.toml
# changed. Sourced by run.sh and test.sh.
set -euo pipefail
VENV=${VENV:-.venv}
if [[ ! -f "$VENV/.installed" || pyproject.toml -nt "$VENV/.installed" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -e '.[dev]'
  touch "$VENV/.installed"
fi
