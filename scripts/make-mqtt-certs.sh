#!/usr/bin/env bash
# Makes the certificates for the broker's TLS listener (port 8883) with openssl:
#
#   scripts/make-mqtt-certs.sh DIR HOSTNAME [EXTRA_NAME …]
#   e.g. scripts/make-mqtt-certs.sh deploy/mosquitto/certs broker.school.example 10.0.5.2
#
# DIR/ca.crt, DIR/ca.key     a CA of your own (10 years); made once, reused on later runs
# DIR/broker.crt, broker.key the broker's certificate (2 years), signed by that CA, for
#                            HOSTNAME and every EXTRA_NAME (names or IP addresses readers use)
#
# Readers verify the broker with ca.crt (copy it onto every reader); the bridge on the compose
# network uses plain MQTT and needs none. Run again before broker.crt expires: the CA stays,
# so readers keep trusting the new certificate. Keys are EC P-256, mode 0600 (ca.key) and 0640
# (broker.key); mosquitto in the container runs as uid 1883, so afterwards:
#   sudo chown 1883:1883 DIR/broker.key
# and `docker compose restart mosquitto`. Keep ca.key safe (off the broker if you can):
# whoever has it can make certificates readers trust.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 DIR HOSTNAME [EXTRA_NAME ...]" >&2
  exit 2
fi
dir=$1
shift
command -v openssl >/dev/null || { echo "openssl not found: apt-get install openssl" >&2; exit 1; }

san=""
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
    san+="${san:+, }IP:${name}"
  else
    san+="${san:+, }DNS:${name}"
  fi
done

mkdir -p "$dir"
umask 077
curve=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

if [[ ! -f $dir/ca.crt || ! -f $dir/ca.key ]]; then
  openssl req -x509 "${curve[@]}" -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 3650 \
    -subj "/CN=edge-bridge MQTT CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "made a new CA: $dir/ca.crt (readers trust this file)"
else
  echo "reusing the CA in $dir"
fi

extensions=$(mktemp)
csr=$(mktemp)
trap 'rm -f "$extensions" "$csr"' EXIT
cat >"$extensions" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${san}
EOF
openssl req "${curve[@]}" -keyout "$dir/broker.key" -out "$csr" -subj "/CN=$1" 2>/dev/null
openssl x509 -req -in "$csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -out "$dir/broker.crt" -days 730 -extfile "$extensions" 2>/dev/null
chmod 0644 "$dir/ca.crt" "$dir/broker.crt"
chmod 0640 "$dir/broker.key"
chmod 0600 "$dir/ca.key"
openssl verify -CAfile "$dir/ca.crt" "$dir/broker.crt" >/dev/null
echo "made $dir/broker.crt for ${san} (valid 730 days) and $dir/broker.key"
