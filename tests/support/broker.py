"""A real Mosquitto for integration tests, started from the repository's mosquitto/mosquitto.conf.

The test broker runs the production file with only these lines replaced, so tests exercise
the semantics we ship (allow_anonymous false, use_username_as_clientid, queue limits, …):

- `listener 1883 127.0.0.1` → `listener <port> 127.0.0.1`, on the same line: options that
  follow a listener (use_username_as_clientid) belong to it in mosquitto 2.0.
- `password_file`, `acl_file` → files in the broker's directory: the `users` given here, and
  the ACL rendered from mosquitto/acl.template for the test's topic prefix.
- `persistence`, `persistence_location` → off, or on in `<directory>/data/`.
- `user` → the current user. Started as root, mosquitto drops to `mosquitto` before reading
  the password file, and that user cannot read a test's tmp_path.
- `log_dest` → stderr, appended to `<directory>/mosquitto.log` (kept across restarts).

`options={"autosave_interval": "1"}` replaces or adds any other directive.
`extra_config="listener 8883 …"` is appended verbatim, e.g. a second listener with its
own per-listener options (test_mqtt_tls.py adds the TLS listener this way).

The port is free, on loopback, and below the kernel's ephemeral range, so no outgoing
connection can take it while `restart()` has the broker down.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

from edge_ops.credentials import DEFAULT_BRIDGE_USERNAME, set_passwords, write_acl

REPO_CONFIG = Path(__file__).resolve().parents[2] / "mosquitto" / "mosquitto.conf"
READY_TIMEOUT_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 5.0
_REPLACED = {
    "listener",
    "port",
    "password_file",
    "acl_file",
    "persistence",
    "persistence_location",
    "user",
    "log_dest",
}


class BrokerError(RuntimeError):
    """The test broker did not start or stop as asked; the message ends with its log."""


class Broker:
    """One mosquitto process on a fixed loopback port: start, stop, kill, restart."""

    host = "127.0.0.1"

    def __init__(
        self,
        directory: Path,
        *,
        prefix: str,
        users: Mapping[str, str],
        bridge_username: str = DEFAULT_BRIDGE_USERNAME,
        bridge_usernames: list[str] | None = None,
        persistence: bool = False,
        options: Mapping[str, str | list[str]] | None = None,
        port: int | None = None,
        extra_config: str = "",
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.users = dict(users)  # change it, then restart(), to change who may log in
        self.bridge_usernames = list(bridge_usernames or [bridge_username])  # one per instance
        self.persistence = persistence
        self.options = dict(options or {})
        self.extra_config = extra_config
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            msg = "the broker has no port before its first start()"
            raise BrokerError(msg)
        return self._port

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def url(self, username: str, password: str) -> str:
        """`mqtt://user:pass@127.0.0.1:port`, for MQTT_URL."""
        credentials = f"{quote(username, safe='')}:{quote(password, safe='')}"
        return f"mqtt://{credentials}@{self.host}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> Broker:
        """Write the files, start mosquitto and return once it accepts connections."""
        if self.is_running:
            return self
        if self._port is None:
            self._port = free_port()
        self._write_files()
        with open(self.log_path, "ab") as log:
            log_offset = log.tell()
            self._process = subprocess.Popen(
                [_mosquitto(), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._wait_until_ready(log_offset)
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence database and exits."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(STOP_TIMEOUT_SECONDS)
        self._process = None

    def kill(self) -> None:
        """SIGKILL: a crash; state saved by the last autosave is all that survives."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(STOP_TIMEOUT_SECONDS)
        self._process = None

    def restart(self) -> Broker:
        """stop() then start() on the same port (after kill(), only the start)."""
        self.stop()
        return self.start()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _write_files(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        password_file = self.directory / "passwd"
        password_file.unlink(missing_ok=True)
        set_passwords(password_file, self.users)
        acl_file = self.directory / "acl"
        write_acl(acl_file, prefix=self.prefix, bridge_usernames=self.bridge_usernames)
        replacements = {
            "listener": [f"{self.port} {self.host}"],
            "password_file": [str(password_file)],
            "acl_file": [str(acl_file)],
            "persistence": ["true" if self.persistence else "false"],
            "persistence_location": [f"{self.directory / 'data'}/"] if self.persistence else [],
            "user": [pwd.getpwuid(os.geteuid()).pw_name],
            "log_dest": ["stderr"],
        }
        if self.persistence:
            (self.directory / "data").mkdir(exist_ok=True)
        for key, value in self.options.items():
            replacements[key] = [value] if isinstance(value, str) else list(value)
        config = render_test_config(REPO_CONFIG.read_text(), replacements)
        self.config_path.write_text(config + self.extra_config)

    def _wait_until_ready(self, log_offset: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                self._process = None
                self._fail("mosquitto exited during start-up")
            with suppress(OSError), socket.create_connection((self.host, self.port), 0.25):
                if b" running" in self._log_bytes()[log_offset:]:  # this start's line: ours
                    return
            time.sleep(0.02)
        self.kill()
        self._fail(f"mosquitto did not accept connections within {READY_TIMEOUT_SECONDS} s")

    def _log_bytes(self) -> bytes:
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def _fail(self, reason: str) -> None:
        tail = "\n".join(self.log_text().splitlines()[-20:])
        msg = f"{reason} (port {self._port}, config {self.config_path}); log:\n{tail}"
        raise BrokerError(msg)


def render_test_config(config: str, replacements: Mapping[str, list[str]]) -> str:
    """`config` with each replaced directive's lines swapped for its new values, in place.

    The first line of a directive takes all its new values; its other lines are dropped.
    Directives the file lacks are appended. Comments and other lines stay as they are.
    """
    lines: list[str] = []
    done: set[str] = set()
    for line in config.splitlines():
        words = line.split(maxsplit=1)
        key = words[0] if words and not words[0].startswith("#") else ""
        if key in replacements or key in _REPLACED:
            if key not in done:
                lines.extend(f"{key} {value}" for value in replacements.get(key, []))
                done.add(key)
            continue
        lines.append(line)
    for key, values in replacements.items():
        if key not in done:
            lines.extend(f"{key} {value}" for value in values)
    return "\n".join(lines) + "\n"


def free_port() -> int:
    """A loopback TCP port that is free now and outside the ephemeral range, if one is found."""
    low = _ephemeral_port_low()
    for _ in range(50):
        port = random.randint(10000, max(10001, low - 1))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unique_prefix() -> str:
    """A topic prefix no other test uses, e.g. `test-1f3a…`."""
    return f"test-{uuid.uuid4().hex[:12]}"


@contextmanager
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Yields `start_broker(prefix=…, users=…, **Broker options) -> Broker` (already started).

    Every broker gets its own new directory under tmp_path and is stopped on exit. Wrap it in a
    fixture: `with broker_factory(tmp_path) as start_broker: yield start_broker`.
    """
    brokers: list[Broker] = []

    def start_broker(*, prefix: str, users: Mapping[str, str], **options: object) -> Broker:
        tmp_path.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="mosquitto-", dir=tmp_path))
        broker = Broker(directory, prefix=prefix, users=users, **options)  # type: ignore[arg-type]
        brokers.append(broker)
        return broker.start()

    try:
        yield start_broker
    finally:
        for broker in brokers:
            broker.stop()


def _mosquitto() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        msg = "mosquitto not found on PATH or in /usr/sbin; install it: apt-get install mosquitto"
        raise BrokerError(msg)
    return found


def _ephemeral_port_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
