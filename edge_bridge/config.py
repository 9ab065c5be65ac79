"""Settings: every variable of CONTRACT §2, read from the environment and `.env`.

Build them once (`load_settings()` in the CLI, or a fixture) and pass them down. A bad value
stops start-up with one line naming the variable and the value.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import socket
import stat
from collections import Counter
from datetime import time
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge_bridge.errors import ConfigError
from edge_bridge.tuning import SSE_SEND_TIMEOUT_SECONDS

logger = logging.getLogger(__name__)

DEFAULT_SECRET_FILE = Path("data/jwt_secret")
# JWT_SECRET rules (README "Security"): at least this long, without the placeholder of
# .env.example, with this many distinct characters and this many bits by a Shannon estimate
# (length x the entropy of its own character frequencies). `secrets.token_urlsafe(32)`,
# `openssl rand -base64 32` and `openssl rand -hex 32` pass with a wide margin; a 32-character
# hex string (128 bits at best, ~120 by the estimate) and any word or repeated pattern fail.
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT_CHARS = 10
MIN_SECRET_ENTROPY_BITS = 128.0
SECRET_PLACEHOLDER = "change-me"
# Below this, SSE_CLIENT_BUFFER is most likely an old event count (it used to be 64 events).
MIN_SSE_CLIENT_BUFFER_BYTES = 16_384
_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
}
_TOPIC_LEVEL = re.compile(r"^[^/+#\s\x00]{1,64}$")
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Runtime configuration; field names are the contract's variables in lower case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", validate_default=True)

    database_url: str = "sqlite:///./data/edge_bridge.db"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_client_id: str = Field(default="edge-bridge", min_length=1, max_length=64)
    mqtt_ca_file: str | None = None  # CA bundle for mqtts:// (default: the system's)
    mqtt_topic_prefix: str = Field(default="phoenix", min_length=1)
    # Several instances (CONTRACT §8): scans through `$share/<group>/…`; empty: plain subscription.
    mqtt_shared_group: str = ""
    instance_id: str = ""  # empty: `<hostname>:<port>`; in every log line and metric
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    jwt_secret: str = ""
    jwt_access_ttl: int = Field(default=900, gt=0)
    jwt_refresh_ttl: int = Field(default=3600, gt=0)
    sse_heartbeat_seconds: float = Field(default=30, gt=0)
    # Bytes of events a stream may hold unsent before it counts as slow (CONTRACT §8).
    sse_client_buffer: int = 1_048_576
    # A send to a stream that waits longer than this closes it: its client stopped reading.
    sse_send_timeout_seconds: float = Field(default=SSE_SEND_TIMEOUT_SECONDS, gt=0)
    sse_max_streams_per_staff: int = Field(default=10, ge=1)  # the oldest is closed beyond
    sse_max_streams: int = Field(default=20_000, ge=1)  # in this process; beyond: 503
    sse_replay_limit: int = Field(
        default=2_000, ge=1
    )  # missed events one replay sends, else resync
    scan_debounce_seconds: float = Field(default=3, ge=0)
    event_retention_seconds: int = Field(default=86400, gt=0)
    # How long a `(device_id, scan_id)` answers redeliveries from its first result (the
    # broker's session expiry: no redelivery can come later).
    processed_scan_retention_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    ingest_queue_size: int = Field(default=10_000, ge=1)  # messages waiting for the worker
    # The school's time zone: "today", the attendance record and DAY_END are local to it.
    school_timezone: str = "Europe/Berlin"
    day_end: time = time(18, 0)  # open visits are closed then (auto_checkout), local time
    log_level: LogLevel = "INFO"

    @field_validator("school_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, "Europe"
            msg = "must be an IANA time zone such as Europe/Berlin"
            raise ValueError(msg) from None
        return value

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.school_timezone)

    @field_validator("sse_client_buffer", mode="before")
    @classmethod
    def _parse_byte_size(cls, value: object) -> object:
        return parse_byte_size(value) if isinstance(value, str) else value

    @field_validator("sse_client_buffer")
    @classmethod
    def _check_buffer_bytes(cls, value: int) -> int:
        if value < MIN_SSE_CLIENT_BUFFER_BYTES:
            msg = (
                f"is a size in bytes (it used to count events), at least "
                f"{MIN_SSE_CLIENT_BUFFER_BYTES}; e.g. 1MiB"
            )
            raise ValueError(msg)
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            msg = "must look like mqtt://[user:pass@]host[:port] or mqtts://…"
            raise ValueError(msg)
        _ = parts.port  # raises ValueError on a bad port
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if "://" not in value:
            msg = "must be an SQLAlchemy URL such as sqlite:///./data/edge_bridge.db"
            raise ValueError(msg)
        return value

    @field_validator("mqtt_shared_group", "instance_id")
    @classmethod
    def _check_topic_level(cls, value: str) -> str:
        if value and not _TOPIC_LEVEL.match(value):
            msg = "must be 1-64 characters without / + # or spaces (it is one MQTT topic level)"
            raise ValueError(msg)
        return value

    @property
    def instance(self) -> str:
        """INSTANCE_ID, or `<hostname>:<port>` when it is not set."""
        return self.instance_id or f"{socket.gethostname()}:{self.port}"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def mqtt(self) -> MqttEndpoint:
        return MqttEndpoint.parse(self.mqtt_url)

    @property
    def sqlite_path(self) -> Path | None:
        """The database file for SQLite URLs, else None."""
        if not self.database_url.startswith("sqlite"):
            return None
        path = self.database_url.split(":///", 1)[-1]
        return None if path in {"", ":memory:"} else Path(path)


class MqttEndpoint:
    """Broker address and credentials parsed from `MQTT_URL`."""

    def __init__(
        self, host: str, port: int, *, tls: bool, username: str | None, password: str | None
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.username, self.password = username, password

    @classmethod
    def parse(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __repr__(self) -> str:  # never shows the password
        return f"MqttEndpoint(host={self.host!r}, port={self.port}, tls={self.tls})"


def parse_byte_size(value: str) -> int:
    """`65536`, `64KiB`, `1MiB` (also `k`, `KB`, `m`, `MB`; powers of 1024) → bytes."""
    text = value.strip().lower().replace(" ", "")
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(digits) :]
    if not digits.isdecimal() or unit not in _BYTE_UNITS:
        msg = f"must be a size in bytes such as 1048576 or 1MiB, got: {value!r}"
        raise ValueError(msg)
    return int(digits) * _BYTE_UNITS[unit]


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "?"
    value = first.get("input")
    if "SECRET" in name:
        shown = "<hidden>"
    elif "URL" in name and isinstance(value, str):
        shown = repr(redact_url(value))
    else:
        shown = repr(value)
    return f"Config {name} has value {shown}: {first['msg']}"


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, for logs and error messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def load_settings(*, secret_file: Path = DEFAULT_SECRET_FILE, **overrides: object) -> Settings:
    """Build settings from the environment, `.env` and overrides; fill in a missing JWT secret.

    A weak `JWT_SECRET` (or secret file) stops start-up with a ConfigError that names it and
    says why, never showing the value.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    if not settings.jwt_secret:
        settings.jwt_secret = _load_or_create_secret(secret_file)
    elif problem := secret_weakness(settings.jwt_secret):
        msg = (
            f"Config JWT_SECRET is refused: {problem}; generate one with "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
        raise ConfigError(msg)
    return settings


def secret_entropy_bits(secret: str) -> float:
    """Shannon estimate of the whole string: length x entropy of its character frequencies."""
    if not secret:
        return 0.0
    counts = Counter(secret).values()
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts)
    return per_char * len(secret)


def secret_weakness(secret: str) -> str | None:
    """Why `secret` is too weak to sign tokens with, or None when it is fine."""
    if SECRET_PLACEHOLDER in secret.lower():
        return "it still contains the CHANGE-ME placeholder of .env.example"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"too short: use at least {MIN_SECRET_LENGTH} characters"
    if len(set(secret)) < MIN_SECRET_DISTINCT_CHARS:
        return f"too few distinct characters (fewer than {MIN_SECRET_DISTINCT_CHARS})"
    if secret_entropy_bits(secret) < MIN_SECRET_ENTROPY_BITS:
        return (
            f"too little entropy (below {MIN_SECRET_ENTROPY_BITS:.0f} bits by a Shannon estimate)"
        )
    return None


def _load_or_create_secret(path: Path) -> str:
    if path.exists():
        return _read_secret_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    logger.warning("JWT_SECRET not set: generated a new one path=%s", path)
    return secret


def _read_secret_file(path: Path) -> str:
    """The generated secret, refused when others may read it or it is too short or weak."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        msg = (
            f"Config JWT_SECRET file {path} is readable by group or others (mode {mode:04o}): "
            f"run `chmod 600 {path}`"
        )
        raise ConfigError(msg)
    secret = path.read_text().strip()
    if problem := secret_weakness(secret):
        msg = (
            f"Config JWT_SECRET file {path} is refused: {problem}; delete it to have a new "
            "one generated (everyone logs in again) or set JWT_SECRET"
        )
        raise ConfigError(msg)
    return secret
