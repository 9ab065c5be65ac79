#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite, on a free loopback port.
#
#   scripts/ci-postgres.sh start DIR   → initdb in DIR, start it, print the admin URL on stdout
#   scripts/ci-postgres.sh stop DIR    → stop it (DIR is left for the caller to remove)
#
# Installs Debian's `postgresql` when no server binaries are found. initdb and the server
# refuse to run as root, so under root both run as the `postgres` user (created by the
# package) and DIR is handed to it. The superuser `edge` gets a random password; the URL
# (postgresql+psycopg://edge:…@127.0.0.1:PORT/postgres) is what EDGE_TEST_POSTGRES_URL wants.
# Durability is off (fsync, synchronous_commit): the cluster is thrown away after the run.
set -euo pipefail

action="${1:?usage: $0 start|stop DIR}"
dir="${2:?usage: $0 start|stop DIR}"

pg_bin() {  # the newest installed server's bin directory, or nothing
  local dirs=(/usr/lib/postgresql/*/bin)
  [[ -d "${dirs[0]}" ]] && printf '%s\n' "${dirs[@]}" | sort -V | tail -n 1
  return 0
}

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$action" in
start)
  if [[ -z "$(pg_bin)" ]]; then
    echo "Installing missing system packages: postgresql" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
      postgresql >&2
  fi
  bin=$(pg_bin)
  mkdir -p "$dir"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner sh -c "umask 077; printf '%s\n' '$password' > '$dir/pwfile'"
  as_owner "$bin/initdb" -D "$dir/data" --username=edge --pwfile="$dir/pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pwfile"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    >&2 || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgresql+psycopg://edge:${password}@127.0.0.1:${port}/postgres"
  ;;
stop)
  bin=$(pg_bin)
  [[ -d "$dir/data" ]] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
