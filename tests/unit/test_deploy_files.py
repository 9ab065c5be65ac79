"""The deployment files agree with each other and with the rules of docs/operations.md.

compose.yaml holds no secret, and every secret it needs is named in .env.example; the
container's mosquitto.conf differs from mosquitto/mosquitto.conf only where a container must;
the image pins every dependency of pyproject.toml and runs as a non-root user. (`.ci/run`
also validates compose.yaml with docker-compose and lints the Dockerfile with hadolint.)
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from edge_bridge.wire import MAX_PAYLOAD_BYTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "deploy" / "requirements.lock"
CONTAINER_MOSQUITTO = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
REPO_MOSQUITTO = ROOT / "mosquitto" / "mosquitto.conf"
TLS_EXAMPLE = ROOT / "mosquitto" / "mosquitto-tls.conf.example"
NGINX_SITE = ROOT / "deploy" / "nginx.conf"
CERT_SCRIPT = ROOT / "scripts" / "make-mqtt-certs.sh"
# Where the container's broker config may differ from the TLS example: listener addresses,
# file locations, log target.
CONTAINER_SPECIFIC = {
    "listener",
    "password_file",
    "acl_file",
    "persistence_location",
    "log_dest",
    "cafile",
    "certfile",
    "keyfile",
}
# What the TLS example adds to mosquitto/mosquitto.conf: its listener.
TLS_LISTENER = {
    "listener",
    "use_username_as_clientid",
    "cafile",
    "certfile",
    "keyfile",
    "tls_version",
    "require_certificate",
}
_REQUIRED_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):\?")
_INTERPOLATION = re.compile(r"\$\{[^}]*\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _directives(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        words = line.split(maxsplit=1)
        if words and not words[0].startswith("#"):
            found.setdefault(words[0], []).append(words[1] if len(words) > 1 else "")
    return found


def _strings(node: object) -> list[str]:
    """Every string in a parsed YAML document (comments are gone by then)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [*_strings(key), *_strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def _url_passwords(value: str) -> list[str]:
    """The password part of a URL's user info, with each ${…} shown as `${}`."""
    if "://" not in value or "@" not in value:
        return []
    userinfo = _INTERPOLATION.sub("${}", value.split("://", 1)[1].rsplit("@", 1)[0])
    return [userinfo.split(":", 1)[1]] if ":" in userinfo else []


def _requirement_name(spec: str) -> str:
    return re.split(r"[\[<>=!~;\s]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_compose_file_holds_no_secret_and_env_example_names_every_required_one() -> None:
    services = _compose()["services"]

    secret_values = [
        (service, key, str(value))
        for service, spec in services.items()
        for key, value in (spec.get("environment") or {}).items()
        if any(word in key for word in ("PASSWORD", "SECRET"))
    ]
    url_passwords = [
        password
        for spec in services.values()
        for value in (spec.get("environment") or {}).values()
        for password in _url_passwords(str(value))
    ]
    required = {name for value in _strings(services) for name in _REQUIRED_VARIABLE.findall(value)}
    example = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }

    assert secret_values, "compose.yaml should pass secrets to its services"
    assert all(value.startswith("${") for _, _, value in secret_values), secret_values
    assert url_passwords
    assert set(url_passwords) == {"${}"}, url_passwords
    assert {"POSTGRES_PASSWORD", "MQTT_BRIDGE_PASSWORD", "JWT_SECRET"} <= required
    assert required <= example


def test_compose_bridge_waits_for_healthy_dependencies_and_reports_ready() -> None:
    services = _compose()["services"]
    bridge = services["bridge"]

    assert bridge["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "mosquitto": {"condition": "service_healthy"},
    }
    assert "/ready" in " ".join(bridge["healthcheck"]["test"])
    assert bridge["ports"] == ["127.0.0.1:${HTTP_PORT:-8000}:8000"]  # only a local proxy
    assert "healthcheck" in services["postgres"]
    assert "healthcheck" in services["mosquitto"]
    assert services["simulator"]["profiles"] == ["demo"]
    assert "profiles" not in bridge
    volumes = _compose()["volumes"]
    assert {"mosquitto-data", "postgres-data"} <= set(volumes)


def _differing(one: dict[str, list[str]], other: dict[str, list[str]]) -> set[str]:
    return {key for key in one.keys() | other.keys() if one.get(key) != other.get(key)}


def _listener_blocks(path: Path) -> list[list[str]]:
    """Each `listener` line with the directive lines that follow it up to the next one."""
    blocks: list[list[str]] = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("listener "):
            blocks.append([line])
        elif blocks and line.split()[0] in TLS_LISTENER:
            blocks[-1].append(line)
    return blocks


def test_the_containers_broker_config_differs_only_where_a_container_must() -> None:
    container = _directives(CONTAINER_MOSQUITTO)
    example = _directives(TLS_EXAMPLE)
    repository = _directives(REPO_MOSQUITTO)

    assert _differing(container, example) <= CONTAINER_SPECIFIC, _differing(container, example)
    assert _differing(example, repository) <= TLS_LISTENER, _differing(example, repository)
    assert container["listener"] == ["1883", "8883"]  # plain: every interface of the container
    assert example["listener"] == ["1883 127.0.0.1", "8883"]
    assert container["password_file"] == ["/mosquitto/config/passwd"]
    assert container["acl_file"] == ["/mosquitto/config/acl"]
    assert container["cafile"] == ["/mosquitto/deploy/certs/ca.crt"]
    assert container["certfile"] == ["/mosquitto/deploy/certs/broker.crt"]
    assert container["keyfile"] == ["/mosquitto/deploy/certs/broker.key"]


def test_every_listener_replaces_client_ids_by_usernames_and_the_tls_one_verifies() -> None:
    for path in (CONTAINER_MOSQUITTO, TLS_EXAMPLE):
        blocks = _listener_blocks(path)

        assert [block[1] for block in blocks] == ["use_username_as_clientid true"] * 2, path
        assert "tls_version tlsv1.2" in blocks[1], path
        assert "require_certificate false" in blocks[1], path


def test_compose_publishes_plain_mqtt_on_loopback_only_and_tls_for_readers() -> None:
    ports = _compose()["services"]["mosquitto"]["ports"]
    by_container_port = {str(port).rsplit(":", 1)[1]: str(port) for port in ports}

    assert set(by_container_port) == {"1883", "8883"}
    assert by_container_port["1883"].startswith("127.0.0.1:")  # never 0.0.0.0 or the LAN
    assert by_container_port["8883"] == "${MQTT_BIND:-0.0.0.0}:${MQTT_TLS_PORT:-8883}:8883"
    assert (
        "./deploy/mosquitto:/mosquitto/deploy:ro" in _compose()["services"]["mosquitto"]["volumes"]
    )  # the certificates from scripts/make-mqtt-certs.sh sit in deploy/mosquitto/certs/


def test_the_bridge_trusts_forwarded_headers_from_the_compose_gateway_only() -> None:
    compose = _compose()
    trusted = compose["services"]["bridge"]["environment"]["FORWARDED_ALLOW_IPS"]
    (network,) = compose["networks"]["default"]["ipam"]["config"]

    assert trusted != "*"
    assert trusted == network["gateway"] == "${EDGE_NETWORK_GATEWAY:-172.30.83.1}"
    assert network["subnet"] == "${EDGE_NETWORK_SUBNET:-172.30.83.0/24}"
    gateway = ipaddress.ip_address(trusted.split(":-", 1)[1].rstrip("}"))
    subnet = ipaddress.ip_network(network["subnet"].split(":-", 1)[1].rstrip("}"))
    assert gateway in subnet


def _top_level(nginx_site: str) -> list[str]:
    """The directives outside every `{ }` block of an nginx file."""
    depth, found = 0, []
    for raw in nginx_site.splitlines():
        line = raw.split("#", 1)[0].strip()
        if depth == 0 and line and not line.endswith("{"):
            found.append(line)
        depth += line.count("{") - line.count("}")
    return found


def test_nginx_limits_logins_per_ipv4_address_or_ipv6_64_and_not_refresh_or_logout() -> None:
    site = NGINX_SITE.read_text()
    login = site[site.index("location = /api/auth/login {") :].split("}", 1)[0]
    top = _top_level(site)
    zone = "limit_req_zone $edge_bridge_client zone=edge_bridge_login:10m rate=30r/m;"

    assert top.count(zone) == 1  # in the http context, outside every block
    assert "map $binary_remote_addr $edge_bridge_client {" in site  # IPv6 keyed by its /64
    assert '"~^(?s)(?<edge_bridge_ipv6_64>.{8}).{8}$" $edge_bridge_ipv6_64;' in site
    assert "limit_req zone=edge_bridge_login burst=60 nodelay;" in login
    assert "limit_req_status 429;" in login
    assert site.count("limit_req ") == 1  # refresh and logout: no zone
    assert "location /api/auth/" not in site


def test_nginx_keeps_stream_request_lines_out_of_its_error_log() -> None:
    site = NGINX_SITE.read_text()
    directives = [line.strip() for line in site.splitlines() if not line.lstrip().startswith("#")]
    sse = site[site.index("location /api/sse/ {") :].split("}", 1)[0]

    assert "error_log /var/log/nginx/edge-bridge.error.log crit;" in sse
    assert directives.count("error_log /var/log/nginx/edge-bridge.error.log error;") == 2
    assert "proxy_set_header X-Forwarded-Host $http_host;" in directives  # with the port


def test_the_cert_script_makes_a_ca_and_a_broker_certificate_for_the_given_names(
    tmp_path: Path,
) -> None:
    certs, ca = tmp_path / "certs", tmp_path / "ca"

    made = subprocess.run(
        [str(CERT_SCRIPT), str(certs), "broker.school.example", "10.0.5.2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MQTT_CA_DIR": str(ca)},
    )
    usage = subprocess.run(
        ["openssl", "x509", "-in", str(certs / "broker.crt"), "-noout", "-ext", "keyUsage"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(certs / "ca.crt"), str(certs / "broker.crt")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    names = subprocess.run(
        ["openssl", "x509", "-in", str(certs / "broker.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout

    assert made.returncode == 0, made.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "DNS:broker.school.example" in names and "IP Address:10.0.5.2" in names
    assert not (certs / "ca.key").exists()  # certs/ is mounted into the broker; the CA key is not
    assert stat.S_IMODE((ca / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((certs / "broker.key").stat().st_mode) == 0o640
    assert stat.S_IMODE(certs.stat().st_mode) & 0o005 == 0o005  # uid 1883 can enter it
    assert "Digital Signature" in usage and "Key Encipherment" not in usage  # an EC key
    assert "scripts/make-mqtt-certs.sh" in CONTAINER_MOSQUITTO.read_text()


def test_both_brokers_refuse_packets_far_beyond_the_contracts_payload_limit() -> None:
    # A scan topic is at most ~100 bytes: the bridge still sees (and refuses) a payload a
    # little over 4 KiB, while nothing much larger reaches it at all.
    for path in (REPO_MOSQUITTO, CONTAINER_MOSQUITTO):
        (limit,) = _directives(path)["max_packet_size"]

        assert MAX_PAYLOAD_BYTES + 1024 <= int(limit) <= 4 * MAX_PAYLOAD_BYTES, path


def test_the_image_pins_every_dependency_and_runs_unprivileged() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        _requirement_name(spec)
        for spec in [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    }
    pinned = {
        _requirement_name(line)
        for line in LOCK.read_text().splitlines()
        if line and not line.startswith("#")
    }
    dockerfile = DOCKERFILE.read_text()
    final_stage = dockerfile.split("\nFROM ")[-1]

    assert wanted <= pinned, wanted - pinned
    assert all("==" in line for line in LOCK.read_text().splitlines() if line[:1].isalnum())
    assert dockerfile.count("\nFROM ") == 2  # builder + final
    assert re.search(r"^USER [1-9][0-9]*:[1-9][0-9]*$", final_stage, re.M)
    assert 'ENTRYPOINT ["edge-bridge"]' in final_stage
    assert 'CMD ["serve"]' in final_stage
    assert "HOST=0.0.0.0" in final_stage
    for build_tool in ("gcc", "build-essential", "python3-dev", "pip install"):
        assert build_tool not in final_stage
