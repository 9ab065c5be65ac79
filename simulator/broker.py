"""Where the readers connect and how they log in: broker URL, topic prefix, device passwords."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edge_bridge.wire import Topics

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PREFIX = "phoenix"
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class BrokerConfigError(ValueError):
    """The broker URL or the credentials file is unusable."""


@dataclass(frozen=True)
class BrokerConfig:
    """How every emulated reader reaches the broker.

    Readers log in with username = client id = device id. The password comes from the
    credentials map, else `password`, else the URL's userinfo password, else none.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    prefix: str = DEFAULT_PREFIX
    password: str | None = None
    credentials: Mapping[str, str] = field(default_factory=dict)
    mqtt_version: int = 5
    keepalive_seconds: int = 30
    session_expiry_seconds: int = 86400

    @classmethod
    def from_url(
        cls,
        url: str = DEFAULT_MQTT_URL,
        *,
        prefix: str = DEFAULT_PREFIX,
        password: str | None = None,
        credentials: Mapping[str, str] | None = None,
        mqtt_version: int = 5,
    ) -> BrokerConfig:
        """Parse `mqtt://[user:pass@]host[:port]` or `mqtts://…` (TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS:
            msg = f"MQTT URL scheme must be mqtt or mqtts, got: {parts.scheme or url!r}"
            raise BrokerConfigError(msg)
        if not parts.hostname:
            msg = f"MQTT URL needs a host, got: {url!r}"
            raise BrokerConfigError(msg)
        if mqtt_version not in (4, 5):
            msg = f"MQTT version must be 5 or 4 (3.1.1), got: {mqtt_version}"
            raise BrokerConfigError(msg)
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError:
            msg = f"MQTT URL has a bad port: {parts.netloc.rsplit('@', 1)[-1]!r}"
            raise BrokerConfigError(msg) from None
        url_password = unquote(parts.password) if parts.password else None
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts",
            prefix=prefix,
            password=password if password is not None else url_password,
            credentials=dict(credentials or {}),
            mqtt_version=mqtt_version,
        )

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    def password_for(self, device_id: str) -> str | None:
        """The password reader `device_id` logs in with, or None."""
        return self.credentials.get(device_id, self.password)


def load_credentials(path: str | Path) -> dict[str, str]:
    """Read a `{device_id: password}` JSON file."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"credentials file {path}: {exc}"
        raise BrokerConfigError(msg) from None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        msg = f"credentials file {path}: must be a JSON object of device id → password strings"
        raise BrokerConfigError(msg)
    return raw
