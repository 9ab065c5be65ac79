"""edge_ops.credentials: ACL rendering, passwords via mosquitto_passwd, the credentials file.

These tests run the local `mosquitto_passwd` binary (a subprocess, no sockets) and check its
output by recomputing mosquitto 2.0's PBKDF2-SHA512 hashes (`user:$7$101$salt$hash`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import stat
import string
import subprocess
from pathlib import Path

import pytest

from edge_bridge.errors import EdgeBridgeError
from edge_ops import credentials
from edge_ops.credentials import (
    CredentialsError,
    delete_user,
    generate_password,
    provision,
    read_credentials_file,
    render_acl,
    set_password,
    set_passwords,
    write_acl,
)

REPO = Path(__file__).resolve().parents[2]
URL_SAFE = set(string.ascii_letters + string.digits + "-_")


def _entries(password_file: Path) -> dict[str, str]:
    lines = password_file.read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line)


def _matches(entry: str, password: str) -> bool:
    """True when a mosquitto 2.0 `$7$` (PBKDF2-SHA512) entry is the hash of `password`."""
    _, kind, iterations, salt, digest = entry.split("$")
    assert kind == "7"
    computed = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return base64.b64encode(computed).decode() == digest


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- ACL ---------------------------------------------------------------------------------


def test_checked_in_acl_is_the_template_rendered_for_the_defaults() -> None:
    rendered = render_acl(prefix="phoenix", bridge_username="edge-bridge")

    assert (REPO / "mosquitto" / "acl").read_text() == rendered


def test_rendered_acl_lets_readers_write_only_their_own_scan_and_status() -> None:
    rules = _rules(render_acl(prefix="school/ogs", bridge_username="bridge-1"))

    assert rules[None] == [
        "pattern write school/ogs/readers/%u/scan",
        "pattern write school/ogs/readers/%u/status",
        "pattern read school/ogs/readers/%u/feedback",
        "pattern read school/ogs/bridge/status",
        "pattern read school/ogs/bridge/+/status",
    ]


def test_rendered_acl_gives_the_bridge_user_every_reader_topic_and_its_status() -> None:
    rules = _rules(render_acl(prefix="school/ogs", bridge_username="bridge-1"))

    assert rules["bridge-1"] == [
        "topic read school/ogs/readers/+/scan",
        "topic read school/ogs/readers/+/status",
        "topic write school/ogs/readers/+/feedback",
        "topic readwrite school/ogs/bridge/status",
        "topic readwrite school/ogs/bridge/+/status",
    ]
    assert "{" not in render_acl(prefix="p", bridge_username="b")


def test_rendered_acl_gives_each_of_several_bridge_users_the_same_rights() -> None:
    rules = _rules(render_acl(prefix="city", bridge_usernames=["bridge-a", "bridge-b"]))

    assert rules["bridge-a"] == rules["bridge-b"]
    assert "topic read city/readers/+/scan" in rules["bridge-b"]
    assert "topic readwrite city/bridge/+/status" in rules["bridge-b"]
    assert rules[None] == _rules(render_acl(prefix="city", bridge_username="bridge-a"))[None]


def test_rendered_acl_refuses_a_bridge_username_that_could_widen_it() -> None:
    with pytest.raises(CredentialsError, match="MQTT username"):
        render_acl(prefix="city", bridge_usernames=["bridge-a", "b\nuser x"])


def test_rendered_acl_strips_slashes_around_the_prefix_like_the_topics_do() -> None:
    assert render_acl(prefix="/phoenix/", bridge_username="edge-bridge") == render_acl(
        prefix="phoenix", bridge_username="edge-bridge"
    )


@pytest.mark.parametrize("prefix", ["", "a/+/b", "a/#", "a b", "a\nuser x", "a//b"])
def test_prefix_that_could_widen_or_break_the_acl_is_refused(prefix: str) -> None:
    with pytest.raises(CredentialsError, match="topic prefix"):
        render_acl(prefix=prefix, bridge_username="edge-bridge")


def test_write_acl_replaces_the_file_with_a_readable_rendering(tmp_path: Path) -> None:
    path = tmp_path / "acl"
    path.write_text("old\n")

    write_acl(path, prefix="t1", bridge_username="edge-bridge")

    assert path.read_text() == render_acl(prefix="t1", bridge_username="edge-bridge")
    assert _mode(path) == 0o644


def _rules(acl: str) -> dict[str | None, list[str]]:
    """ACL rule lines grouped by the `user` line they follow (None: before any user)."""
    groups: dict[str | None, list[str]] = {None: []}
    current: str | None = None
    for line in acl.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("user "):
            current = line.split(maxsplit=1)[1]
            groups[current] = []
        else:
            groups[current].append(line)
    return groups


# --- passwords ---------------------------------------------------------------------------


def test_generated_passwords_are_long_url_safe_and_different() -> None:
    passwords = {generate_password() for _ in range(20)}

    assert len(passwords) == 20
    for password in passwords:
        assert len(password) >= 32
        assert set(password) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_set_password_creates_a_missing_password_file_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "conf" / "passwd"

    set_password(password_file, "reader-101", "s3cret-one")

    assert _mode(password_file) == 0o600
    entries = _entries(password_file)
    assert list(entries) == ["reader-101"]
    assert _matches(entries["reader-101"], "s3cret-one")


def test_set_password_replaces_one_password_and_keeps_the_other_users(tmp_path: Path) -> None:
    password_file = tmp_path / "passwd"
    set_passwords(password_file, {"reader-101": "first", "edge-bridge": "bridge-pw"})
    bridge_entry = _entries(password_file)["edge-bridge"]

    set_password(password_file, "reader-101", "second")

    entries = _entries(password_file)
    assert sorted(entries) == ["edge-bridge", "reader-101"]
    assert _matches(entries["reader-101"], "second")
    assert entries["edge-bridge"] == bridge_entry


def test_set_password_keeps_the_mode_of_an_existing_password_file(tmp_path: Path) -> None:
    password_file = tmp_path / "passwd"
    password_file.touch()
    password_file.chmod(0o640)

    set_password(password_file, "reader-101", "pw")

    assert _mode(password_file) == 0o640
    assert list(tmp_path.iterdir()) == [password_file]


def test_password_reaches_mosquitto_passwd_on_stdin_never_on_its_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    real_run = subprocess.run

    def spy(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(args))
        return real_run(args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(credentials.subprocess, "run", spy)

    set_password(tmp_path / "passwd", "reader-101", "very-secret-value")

    assert calls
    assert not any("very-secret-value" in arg for call in calls for arg in call)
    assert all("-b" not in call for call in calls)


@pytest.mark.parametrize("username", ["", "a:b", "a/b", "a+", "a#", "a b", "x" * 65])
def test_username_that_mosquitto_or_the_acl_cannot_hold_is_refused(
    tmp_path: Path, username: str
) -> None:
    password_file = tmp_path / "passwd"

    with pytest.raises(CredentialsError, match="MQTT username"):
        set_password(password_file, username, "pw")

    assert not password_file.exists()


def test_username_starting_with_a_dash_is_not_taken_for_an_option(tmp_path: Path) -> None:
    password_file = tmp_path / "passwd"

    set_password(password_file, "-c", "pw")

    assert _matches(_entries(password_file)["-c"], "pw")


def test_password_on_two_lines_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="one line"):
        set_password(tmp_path / "passwd", "reader-101", "a\nb")


def test_missing_mosquitto_passwd_is_a_clear_edge_bridge_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeBridgeError, match="mosquitto_passwd-missing not found"):
        set_password(tmp_path / "passwd", "reader-101", "pw", executable="mosquitto_passwd-missing")


def test_delete_user_removes_only_that_user_and_ignores_unknown_ones(tmp_path: Path) -> None:
    password_file = tmp_path / "passwd"
    set_passwords(password_file, {"reader-101": "a", "reader-102": "b"})

    delete_user(password_file, "reader-101")
    delete_user(password_file, "reader-999")

    assert list(_entries(password_file)) == ["reader-102"]


# --- provision and the credentials file --------------------------------------------------


def test_provision_creates_users_and_a_credentials_file_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "passwd"
    credentials_file = tmp_path / "data" / "reader_credentials.json"

    passwords = provision(
        password_file, ["reader-101", "reader-102"], credentials_file=credentials_file
    )

    assert sorted(passwords) == ["reader-101", "reader-102"]
    assert _mode(credentials_file) == 0o600
    assert json.loads(credentials_file.read_text()) == passwords
    entries = _entries(password_file)
    for username, password in passwords.items():
        assert _matches(entries[username], password)


def test_provision_again_rotates_the_passwords_and_keeps_other_readers_on_record(
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "passwd"
    credentials_file = tmp_path / "creds.json"
    first = provision(
        password_file, ["reader-101", "reader-102"], credentials_file=credentials_file
    )

    second = provision(password_file, ["reader-101"], credentials_file=credentials_file)

    assert second["reader-101"] != first["reader-101"]
    assert read_credentials_file(credentials_file) == {
        "reader-101": second["reader-101"],
        "reader-102": first["reader-102"],
    }
    entries = _entries(password_file)
    assert _matches(entries["reader-101"], second["reader-101"])
    assert _matches(entries["reader-102"], first["reader-102"])


def test_provision_without_a_credentials_file_only_returns_the_password(tmp_path: Path) -> None:
    passwords = provision(tmp_path / "passwd", ["edge-bridge"])

    assert list(passwords) == ["edge-bridge"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]


def test_provision_refuses_a_broken_credentials_file_and_changes_no_password(
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "passwd"
    set_password(password_file, "reader-101", "old")
    credentials_file = tmp_path / "creds.json"
    credentials_file.write_text("{not json")

    with pytest.raises(CredentialsError, match="not JSON"):
        provision(password_file, ["reader-101"], credentials_file=credentials_file)

    assert _matches(_entries(password_file)["reader-101"], "old")
    assert credentials_file.read_text() == "{not json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["creds.json", "passwd"]


def test_no_password_reaches_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    passwords = provision(
        tmp_path / "passwd", ["reader-101", "edge-bridge"], credentials_file=tmp_path / "c.json"
    )
    set_password(tmp_path / "passwd", "reader-102", "literal-secret")

    assert caplog.records
    for secret in [*passwords.values(), "literal-secret"]:
        assert secret not in caplog.text
