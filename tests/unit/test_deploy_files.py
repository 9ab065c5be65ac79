"""The deployment files agree with each other and with the rules of docs/operations.md.

compose.yaml holds no secret, and every secret it needs is named in .env.example; the
container's mosquitto.conf differs from mosquitto/mosquitto.conf only where a container must;
the image pins every dependency of pyproject.toml and runs as a non-root user. (`.ci/run`
also validates compose.yaml with docker-compose and lints the Dockerfile with hadolint.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "deploy" / "requirements.lock"
CONTAINER_MOSQUITTO = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
REPO_MOSQUITTO = ROOT / "mosquitto" / "mosquitto.conf"
# Where the container's broker config may differ: listeners, file locations, log target.
CONTAINER_SPECIFIC = {"listener", "password_file", "acl_file", "persistence_location", "log_dest"}
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


def test_the_containers_broker_config_differs_only_where_a_container_must() -> None:
    container = _directives(CONTAINER_MOSQUITTO)
    repository = _directives(REPO_MOSQUITTO)

    differing = {
        key
        for key in container.keys() | repository.keys()
        if container.get(key) != repository.get(key)
    }

    assert differing <= CONTAINER_SPECIFIC, differing
    assert container["listener"] == ["1883"]  # every interface of the container
    assert container["password_file"] == ["/mosquitto/config/passwd"]
    assert container["acl_file"] == ["/mosquitto/config/acl"]


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
