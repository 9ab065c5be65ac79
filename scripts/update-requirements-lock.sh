#!/usr/bin/env bash
# Rewrites deploy/requirements.lock: pyproject.toml's dependencies with the `postgres` extra,
# resolved in a throwaway virtual environment with the python3 on PATH (use the image's
# Python version, 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv" build' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet '.[postgres]'
{
  sed -n '1,/^# checks that/p' deploy/requirements.lock
  "$venv/bin/pip" freeze --exclude edge-bridge
} > deploy/requirements.lock.new
mv deploy/requirements.lock.new deploy/requirements.lock
echo "deploy/requirements.lock: $(grep -c '==' deploy/requirements.lock) pinned packages"
