"""Settings: contract defaults, clear errors naming the variable, the generated JWT secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge_bridge.config import Settings, load_settings, redact_url
from edge_bridge.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file is read


def test_defaults_match_the_contract(tmp_path: Path) -> None:
    settings = load_settings(secret_file=tmp_path / "jwt_secret")

    assert settings.database_url == "sqlite:///./data/edge_bridge.db"
    assert settings.mqtt_url == "mqtt://127.0.0.1:1883"
    assert settings.mqtt_client_id == "edge-bridge"
    assert settings.mqtt_topic_prefix == "phoenix"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.jwt_access_ttl, settings.jwt_refresh_ttl) == (900, 3600)
    assert settings.sse_heartbeat_seconds == 30
    assert settings.sse_client_buffer == 1_048_576  # bytes (CONTRACT §8)
    assert settings.scan_debounce_seconds == 3
    assert settings.event_retention_seconds == 86400
    assert settings.processed_scan_retention_seconds == 7 * 24 * 3600
    assert settings.log_level == "INFO"


def test_missing_jwt_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    secret_file = tmp_path / "data" / "jwt_secret"

    first = load_settings(secret_file=secret_file).jwt_secret
    second = load_settings(secret_file=secret_file).jwt_secret

    assert first == second
    assert len(first) >= 32
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "abc"),
        ("MQTT_URL", "ftp://x"),
        ("SSE_CLIENT_BUFFER", "0"),
        ("SSE_CLIENT_BUFFER", "64"),  # the old event count: far too small as bytes
        ("SSE_CLIENT_BUFFER", "1 lightyear"),
        ("LOG_LEVEL", "LOUD"),
        ("DATABASE_URL", "not a url"),
    ],
)
def test_a_bad_value_stops_startup_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as caught:
        load_settings(secret_file=tmp_path / "jwt_secret")

    assert variable in str(caught.value)
    assert "\n" not in str(caught.value)


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("MQTT_URL", "mqtts://bridge:s3cret@broker.example:8884")

    settings = load_settings(secret_file=tmp_path / "jwt_secret")

    assert settings.port == 9001
    endpoint = settings.mqtt
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("broker.example", 8884, True)
    assert (endpoint.username, endpoint.password) == ("bridge", "s3cret")
    assert "s3cret" not in repr(endpoint)


def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=8123\n")

    assert load_settings(secret_file=tmp_path / "jwt_secret").port == 8123


def test_a_short_jwt_secret_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JWT_SECRET", "short")

    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings(secret_file=tmp_path / "jwt_secret")


def test_redact_url_hides_the_password_only() -> None:
    assert redact_url("mqtt://u:pw@h:1") == "mqtt://u:***@h:1"
    assert redact_url("mqtt://h:1") == "mqtt://h:1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("65536", 65536), ("64KiB", 65536), ("64k", 65536), ("1MiB", 1 << 20), ("2 MB", 2 << 20)],
)
def test_sse_client_buffer_is_read_as_a_size_in_bytes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, expected: int
) -> None:
    monkeypatch.setenv("SSE_CLIENT_BUFFER", text)

    settings = load_settings(secret_file=tmp_path / "jwt_secret")

    assert settings.sse_client_buffer == expected


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("CHANGE-ME-jwt-secret-of-at-least-32-characters", "CHANGE-ME"),
        ("Xq7-change-me-Lp2vR9sT4wY1zB6nM3kD8hF0jG5", "CHANGE-ME"),  # any case, anywhere
        ("ab" * 24, "distinct characters"),
        ("supersecret" * 3, "distinct characters"),
        ("correct horse battery staple now", "entropy"),
        ("Passwort2024!Passwort2024!Passwort", "entropy"),
        ("3f9a0c7e1b4d8a2f6e0c9b3a7d1f5e8c", "entropy"),  # 32 hex digits: ~125 bits here
    ],
)
def test_a_placeholder_or_low_entropy_jwt_secret_stops_startup_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str, reason: str
) -> None:
    monkeypatch.setenv("JWT_SECRET", secret)

    with pytest.raises(ConfigError) as caught:
        load_settings(secret_file=tmp_path / "jwt_secret")

    message = str(caught.value)
    assert message.startswith("Config JWT_SECRET is refused: ")
    assert reason in message
    assert secret not in message
    assert secret.lower() not in message.lower()


def test_a_random_url_safe_jwt_secret_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "tVq3-9hXkR2mZpL0wYc7_AeNf4sUbG8jDi6oTr1KvHx"  # secrets.token_urlsafe(32)
    monkeypatch.setenv("JWT_SECRET", secret)

    assert load_settings(secret_file=tmp_path / "jwt_secret").jwt_secret == secret


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_secret_file_readable_by_others_stops_startup_naming_the_path_and_the_fix(
    tmp_path: Path, mode: int
) -> None:
    secret_file = tmp_path / "data" / "jwt_secret"
    secret = load_settings(secret_file=secret_file).jwt_secret
    secret_file.chmod(mode)

    with pytest.raises(ConfigError) as caught:
        load_settings(secret_file=secret_file)

    assert str(secret_file) in str(caught.value)
    assert f"chmod 600 {secret_file}" in str(caught.value)
    assert secret not in str(caught.value)


def test_a_short_secret_file_stops_startup_without_showing_it(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt_secret"
    secret_file.write_text("Zx81-short-Qw\n")
    secret_file.chmod(0o600)

    with pytest.raises(ConfigError) as caught:
        load_settings(secret_file=secret_file)

    assert "JWT_SECRET file" in str(caught.value)
    assert "too short" in str(caught.value)
    assert "Zx81-short-Qw" not in str(caught.value)
