#!/usr/bin/env bash
# Makes the certificates for the broker's TLS listener (port 8883) with openssl:
#
#   scripts/make-mqtt-certs.sh DIR HOSTNAME [EXTRA_NAME …]
#   e.g. scripts/make-mqtt-certs.sh deploy/mosquitto/certs broker.school.example 10.0.5.2
#
# DIR/ca.crt                 the CA's certificate, which readers trust (and the broker serves)
# DIR/broker.crt, broker.key the broker's certificate (2 years), signed by that CA, for
#                            HOSTNAME and every EXTRA_NAME (names or IP addresses readers use)
# CA_DIR/ca.key, ca.crt      a CA of your own (10 years); made once, reused on later runs
#
# CA_DIR is $MQTT_CA_DIR, by default mqtt-ca/ beside scripts/ (the checkout's top, outside
# deploy/mosquitto/, which compose mounts into the broker): the broker never needs the CA's
# key, and whoever has it can make certificates readers trust. Keep it there or move it off
# the box (then set MQTT_CA_DIR to where it is when you renew). An older run's DIR/ca.key is
# moved there.
#
# Readers verify the broker with ca.crt (copy it onto every reader); the bridge on the compose
# network uses plain MQTT and needs none. Run again before broker.crt expires: the CA stays,
# so readers keep trusting the new certificate. Keys are EC P-256, mode 0600 (ca.key) and 0640
# (broker.key); mosquitto in the container runs as uid 1883, so afterwards:
#   sudo chown 1883:1883 DIR/broker.key
# and `docker compose restart mosquitto`.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 DIR HOSTNAME [EXTRA_NAME ...]" >&2
  exit 2
fi
dir=$1
shift
ca_dir=${MQTT_CA_DIR:-$(cd "$(dirname "$0")/.." && pwd)/mqtt-ca}
command -v openssl >/dev/null || { echo "openssl not found: apt-get install openssl" >&2; exit 1; }

san=""
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
    san+="${san:+, }IP:${name}"
  else
    san+="${san:+, }DNS:${name}"
  fi
done

mkdir -p "$dir"  # before the umask: mosquitto (uid 1883) must enter it
umask 077
mkdir -p "$ca_dir"
curve=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

if [[ -f $dir/ca.key && ! -f $ca_dir/ca.key ]]; then  # the layout of older runs
  mv "$dir/ca.key" "$ca_dir/ca.key"
  [[ -f $dir/ca.crt ]] && cp "$dir/ca.crt" "$ca_dir/ca.crt"
  echo "moved $dir/ca.key to $ca_dir/ca.key: the broker does not need the CA's key"
elif [[ -f $dir/ca.key ]]; then
  echo "warning: $dir/ca.key is mounted into the broker; delete it (the CA key is in $ca_dir)" >&2
fi

if [[ ! -f $ca_dir/ca.crt || ! -f $ca_dir/ca.key ]]; then
  # openssl's own messages stay visible: a failure says why
  openssl req -x509 "${curve[@]}" -keyout "$ca_dir/ca.key" -out "$ca_dir/ca.crt" -days 3650 \
    -subj "/CN=edge-bridge MQTT CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
  echo "made a new CA: $ca_dir/ca.crt and its key $ca_dir/ca.key (keep the key safe)"
else
  echo "reusing the CA in $ca_dir"
fi
cp "$ca_dir/ca.crt" "$dir/ca.crt"

extensions=$(mktemp)
csr=$(mktemp)
trap 'rm -f "$extensions" "$csr"' EXIT
# EC keys sign (ECDHE); they encipher nothing, so no keyEncipherment.
cat >"$extensions" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${san}
EXT
openssl req "${curve[@]}" -keyout "$dir/broker.key" -out "$csr" -subj "/CN=$1"
openssl x509 -req -in "$csr" -CA "$ca_dir/ca.crt" -CAkey "$ca_dir/ca.key" -CAcreateserial \
  -out "$dir/broker.crt" -days 730 -extfile "$extensions"
chmod 0644 "$dir/ca.crt" "$ca_dir/ca.crt" "$dir/broker.crt"
chmod 0640 "$dir/broker.key"
chmod 0600 "$ca_dir/ca.key"
openssl verify -CAfile "$dir/ca.crt" "$dir/broker.crt" >/dev/null
echo "made $dir/broker.crt for ${san} (valid 730 days) and $dir/broker.key"
