"""Broker credentials: the ACL for a topic prefix, and passwords in Mosquitto's password file.

Passwords go to `mosquitto_passwd` on its standard input, not with `-b` on its command line,
where any local user could read them in the process list; mosquitto 2.0 reads both prompts
from stdin when it is a pipe. Passwords never reach a log line or an error message.

A change to the password file is made on a copy that replaces the file in one rename, so the
broker, which re-reads the file on SIGHUP, never sees half a rotation.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from edge_bridge.errors import EdgeBridgeError

logger = logging.getLogger(__name__)

ACL_TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "mosquitto" / "acl.template"
DEFAULT_BRIDGE_USERNAME = "edge-bridge"
PASSWORD_BYTES = 24  # token_urlsafe(24): 32 characters, 192 bits, safe inside an mqtt:// URL
MOSQUITTO_PASSWD_TIMEOUT_SECONDS = 30

# The same rule as a device id in the import file: %u in the ACL can never become a wildcard
# or an extra topic level, and the name cannot contain the password file's `:` separator.
_USERNAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_PLACEHOLDER = re.compile(r"\{[A-Za-z_]+\}")
_BRIDGE_BLOCK = "user {bridge_username}\n"  # the template's per-bridge block starts here


class CredentialsError(EdgeBridgeError):
    """The ACL, the password file or the readers' credentials file could not be written."""


def render_acl(
    *,
    prefix: str,
    bridge_username: str = DEFAULT_BRIDGE_USERNAME,
    bridge_usernames: Sequence[str] | None = None,
    template_path: Path = ACL_TEMPLATE_PATH,
) -> str:
    """The ACL file's text for one topic prefix and its bridge username(s) (mosquitto/acl.template).

    `bridge_usernames` (several instances, each its own MQTT user) repeats the template's
    bridge block, from its `user {bridge_username}` line to the end, once per name; without
    it the one `bridge_username` is rendered.
    """
    prefix = _check_prefix(prefix)
    names = list(dict.fromkeys(bridge_usernames or [bridge_username]))
    for name in names:
        _check_username(name)
    try:
        template = template_path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read the ACL template {template_path}: {exc.strerror}"
        raise CredentialsError(msg) from None
    head, marker, block = template.partition(_BRIDGE_BLOCK)
    blocks = [(marker + block).replace("{bridge_username}", name) for name in names]
    text = head.replace("{bridge_username}", "`, `".join(names)) + "\n".join(blocks)
    text = text.replace("{prefix}", prefix)
    if leftover := _PLACEHOLDER.search(text):
        msg = f"unknown placeholder {leftover.group()} in the ACL template {template_path}"
        raise CredentialsError(msg)
    return text


def write_acl(
    path: Path,
    *,
    prefix: str,
    bridge_username: str = DEFAULT_BRIDGE_USERNAME,
    bridge_usernames: Sequence[str] | None = None,
) -> None:
    """Render the ACL and replace the file at `path` with it in one rename (mode 0644)."""
    names = list(bridge_usernames or [bridge_username])
    _write_atomically(path, render_acl(prefix=prefix, bridge_usernames=names), 0o644)
    logger.info("ACL written path=%s prefix=%s bridge_usernames=%s", path, prefix, ",".join(names))


def generate_password() -> str:
    """A fresh random password of URL-safe characters (no percent-encoding needed in MQTT_URL)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def set_password(
    password_file: Path, username: str, password: str, *, executable: str | None = None
) -> None:
    """Add `username` to the password file, or replace its password; create the file if missing."""
    set_passwords(password_file, {username: password}, executable=executable)


def set_passwords(
    password_file: Path, passwords: Mapping[str, str], *, executable: str | None = None
) -> None:
    """`set_password` for several users, replacing the file once, after all of them succeeded."""
    _update_password_file(password_file, passwords, executable=executable)


def delete_user(password_file: Path, username: str, *, executable: str | None = None) -> None:
    """Remove `username` from the password file (a reader taken out of service); no-op if absent."""
    _check_username(username)
    tool = find_mosquitto_passwd(executable)
    if not _has_user(password_file, username):
        return
    with _edited_copy(password_file) as copy:
        _run(tool, ["-D", str(copy), username], stdin="", username=username)
    logger.info("MQTT user deleted username=%s password_file=%s", username, password_file)


def provision(
    password_file: Path,
    usernames: Iterable[str],
    *,
    credentials_file: Path | None = None,
    executable: str | None = None,
) -> dict[str, str]:
    """Give each username a new random password: creates new users, rotates existing ones.

    With `credentials_file`, the new passwords are merged into that JSON file
    (`{username: password}`, mode 0600) before the password file is replaced, so a failure
    in between leaves the new passwords on record; running it again repairs either state.
    Returns the new passwords. Connected clients stay connected; the broker checks the new
    passwords from the next CONNECT after it re-read the file (SIGHUP or restart).
    """
    names = list(dict.fromkeys(usernames))
    passwords = {name: generate_password() for name in names}
    _update_password_file(
        password_file,
        passwords,
        executable=executable,
        before_replace=lambda: _merge_credentials(credentials_file, passwords),
    )
    return passwords


def read_credentials_file(path: Path) -> dict[str, str]:
    """The `{username: password}` object of a credentials file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"cannot read the credentials file {path}: {exc.strerror}"
        raise CredentialsError(msg) from None
    except ValueError:
        msg = f"the credentials file {path} is not JSON; move it away to start a new one"
        raise CredentialsError(msg) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        msg = f"the credentials file {path} must hold one object of username: password strings"
        raise CredentialsError(msg)
    return data


def write_credentials_file(path: Path, passwords: Mapping[str, str]) -> None:
    """Replace `path` with `{username: password}` as JSON, readable by its owner only (0600)."""
    text = json.dumps(dict(sorted(passwords.items())), indent=2) + "\n"
    _write_atomically(path, text, 0o600)


def find_mosquitto_passwd(executable: str | None = None) -> str:
    """The path of `mosquitto_passwd` (or of `executable`), else a CredentialsError."""
    name = executable or "mosquitto_passwd"
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
    if found is None:
        msg = (
            f"{name} not found on PATH; install the mosquitto (or mosquitto-clients) package, "
            "e.g. `apt-get install mosquitto`"
        )
        raise CredentialsError(msg)
    return found


def _update_password_file(
    password_file: Path,
    passwords: Mapping[str, str],
    *,
    executable: str | None,
    before_replace: Callable[[], None] | None = None,
) -> None:
    for name, password in passwords.items():
        _check_username(name)
        _check_password(password)
    tool = find_mosquitto_passwd(executable)
    with _edited_copy(password_file) as copy:
        for name, password in passwords.items():
            _run(tool, [str(copy), name], stdin=f"{password}\n{password}\n", username=name)
        if before_replace is not None:
            before_replace()
    logger.info(
        "MQTT passwords set usernames=%s password_file=%s", ",".join(passwords), password_file
    )


def _merge_credentials(credentials_file: Path | None, passwords: Mapping[str, str]) -> None:
    if credentials_file is None:
        return
    known = read_credentials_file(credentials_file) if credentials_file.exists() else {}
    write_credentials_file(credentials_file, {**known, **passwords})
    logger.info("Credentials file written path=%s users=%d", credentials_file, len(passwords))


def _has_user(password_file: Path, username: str) -> bool:
    try:
        lines = password_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return False
    except OSError as exc:
        msg = f"cannot read the password file {password_file}: {exc.strerror}"
        raise CredentialsError(msg) from None
    return any(line.split(":", 1)[0] == username for line in lines)


@contextmanager
def _edited_copy(password_file: Path) -> Iterator[Path]:
    """A private copy of the password file (or a new empty one) that replaces it on success."""
    target = password_file.resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        msg = f"cannot write next to the password file {target}: {exc.strerror}"
        raise CredentialsError(msg) from None
    copy = Path(name)
    try:
        _fill_copy(fd, target)
        yield copy
        os.replace(copy, target)
    except OSError as exc:
        msg = f"cannot update the password file {target}: {exc.strerror}"
        raise CredentialsError(msg) from None
    finally:
        copy.unlink(missing_ok=True)


def _fill_copy(fd: int, target: Path) -> None:
    """Copy the password file's bytes, mode, owner and group; a new file gets mode 0600."""
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, 0o600)
        if not target.exists():
            return
        stat = target.stat()
        with open(target, "rb") as source:
            shutil.copyfileobj(source, out)
        os.fchmod(fd, stat.st_mode & 0o777)
        with suppress(PermissionError):  # keep the group (`mosquitto`) the broker reads it with
            os.fchown(fd, stat.st_uid, stat.st_gid)


def _run(tool: str, args: list[str], *, stdin: str, username: str) -> None:
    try:
        done = subprocess.run(
            [tool, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=MOSQUITTO_PASSWD_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"mosquitto_passwd did not run for username={username}: {exc}"
        raise CredentialsError(msg) from None
    if done.returncode != 0:
        reason = done.stderr.strip() or done.stdout.replace("Password:", "").strip()
        msg = f"mosquitto_passwd failed for username={username}: {reason or done.returncode}"
        raise CredentialsError(msg)


def _write_atomically(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(name, path)
    except OSError as exc:
        Path(name).unlink(missing_ok=True)
        msg = f"cannot write {path}: {exc.strerror}"
        raise CredentialsError(msg) from None


def _check_username(username: str) -> None:
    if not _USERNAME.match(username):
        msg = f"MQTT username must be 1-64 of A-Z a-z 0-9 . _ -, got: {username!r}"
        raise CredentialsError(msg)


def _check_password(password: str) -> None:
    if not password or any(ch in password for ch in "\r\n\0"):
        msg = "MQTT password must be non-empty and on one line"
        raise CredentialsError(msg)


def _check_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    if not _PREFIX.match(stripped):
        msg = f"topic prefix must be levels of A-Z a-z 0-9 . _ - joined by /, got: {prefix!r}"
        raise CredentialsError(msg)
    return stripped
