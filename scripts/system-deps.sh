#!/usr/bin/env bash
# Installs the Debian packages a target needs, only when their command is missing.
# Usage: scripts/system-deps.sh run|test
set -euo pipefail

want=(python3-venv:python3-venv mosquitto:/usr/sbin/mosquitto)
if [[ "${1:-run}" == "test" ]]; then
  want+=(mosquitto-clients:mosquitto_pub chromium:chromium nodejs:node nginx:nginx openssl:openssl
         libnginx-mod-nchan:/usr/lib/nginx/modules/ngx_nchan_module.so)
fi

missing=()
for item in "${want[@]}"; do
  package="${item%%:*}" probe="${item#*:}"
  if [[ "$probe" == python3-venv ]]; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=("$package")
  elif [[ "$probe" == /* ]]; then
    [[ -e "$probe" ]] || missing+=("$package")
  else
    command -v "$probe" >/dev/null 2>&1 || missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  echo "Installing missing system packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The packaged broker must not hold port 1883 or our demo/tests' ports: we run our own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  echo "Note: the system mosquitto service is running; edge-bridge demo uses its own broker."
fi
