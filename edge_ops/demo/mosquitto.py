"""The demo's own Mosquitto, run from the repository's mosquitto/mosquitto.conf.

The demo keeps every line of the shipped file (allow_anonymous false, use_username_as_clientid,
queue limits, autosave, …) and replaces only what must point into the demo's directory:

- `listener 1883 127.0.0.1` → `listener <port> 127.0.0.1`, on the same line, because
  `use_username_as_clientid` below it belongs to that listener;
- `password_file`, `acl_file` → the demo's files (the ACL rendered for the topic prefix);
- `persistence_location` → `<directory>/data/` (persistence stays on, as in production);
- `user` → the current user: started as root, mosquitto would otherwise drop to `mosquitto`
  before reading files that user cannot read; as any other user the line has no effect;
- `log_dest` → stderr, which the demo sends to `<directory>/mosquitto.log`.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from edge_ops.credentials import DEFAULT_BRIDGE_USERNAME, provision, write_acl
from edge_ops.demo.process import Child, DemoError

logger = logging.getLogger(__name__)

REPO_MOSQUITTO_DIR = Path(__file__).resolve().parents[2] / "mosquitto"
READY_TIMEOUT_SECONDS = 10.0
HOST = "127.0.0.1"


def find_mosquitto() -> str:
    """The mosquitto executable, or a DemoError that says how to install it."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        msg = (
            "mosquitto not found (looked on PATH and in /usr/sbin). Install it with "
            "`scripts/system-deps.sh run` (what `make run` does) "
            "or `sudo apt-get install mosquitto`"
        )
        raise DemoError(msg)
    return found


def repo_config() -> Path:
    """The shipped mosquitto.conf of this checkout."""
    path = REPO_MOSQUITTO_DIR / "mosquitto.conf"
    if not path.is_file():
        msg = (
            f"the broker configuration {path} is missing; run the demo from a checkout of "
            "edge-bridge (pip install -e .)"
        )
        raise DemoError(msg)
    return path


def render_config(config: str, replacements: Mapping[str, str]) -> str:
    """`config` with the first line of each replaced directive swapped, later ones dropped,
    and directives the file lacks appended; comments and every other line stay."""
    lines: list[str] = []
    done: set[str] = set()
    for line in config.splitlines():
        words = line.split(maxsplit=1)
        key = words[0] if words and not words[0].startswith("#") else ""
        if key in replacements:
            if key not in done:
                lines.append(f"{key} {replacements[key]}")
                done.add(key)
            continue
        lines.append(line)
    lines.extend(f"{key} {value}" for key, value in replacements.items() if key not in done)
    return "\n".join(lines) + "\n"


class DemoBroker:
    """Writes the broker's files into `directory` and runs mosquitto on `port`."""

    host = HOST

    def __init__(self, directory: Path, *, port: int, prefix: str) -> None:
        self.directory = directory
        self.port = port
        self.prefix = prefix
        self.executable = find_mosquitto()
        self.child: Child | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, username: str, password: str) -> str:
        return f"mqtt://{username}:{password}@{self.host}:{self.port}"

    def provision(self, device_ids: list[str], *, credentials_file: Path) -> str:
        """New passwords for every reader (into `credentials_file`) and for the bridge;
        returns the bridge's password. Also writes the ACL for the topic prefix."""
        password_file = self.directory / "passwd"
        password_file.unlink(missing_ok=True)
        credentials_file.unlink(missing_ok=True)
        provision(password_file, device_ids, credentials_file=credentials_file)
        bridge = provision(password_file, [DEFAULT_BRIDGE_USERNAME])[DEFAULT_BRIDGE_USERNAME]
        write_acl(self.directory / "acl", prefix=self.prefix)
        return bridge

    def start(self) -> Child:
        """Render the config, start mosquitto, and return once it accepts connections."""
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "mosquitto.conf"
        config.write_text(
            render_config(
                repo_config().read_text(encoding="utf-8"),
                {
                    "listener": f"{self.port} {HOST}",
                    "password_file": str(self.directory / "passwd"),
                    "acl_file": str(self.directory / "acl"),
                    "persistence_location": f"{data}/",
                    "user": pwd.getpwuid(os.geteuid()).pw_name,
                    "log_dest": "stderr",
                },
            ),
            encoding="utf-8",
        )
        self.child = Child.start(
            "mosquitto", [self.executable, "-c", str(config)], log_path=self.log_path
        )
        self._wait_until_ready(self.child)
        logger.info("Demo broker running port=%d prefix=%s", self.port, self.prefix)
        return self.child

    def _wait_until_ready(self, child: Child) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not child.running:
                child.fail("exited during start-up")
            try:
                with socket.create_connection((HOST, self.port), 0.25):
                    return
            except OSError:
                time.sleep(0.05)
        child.stop()
        child.fail(
            f"did not accept connections on port {self.port} within {READY_TIMEOUT_SECONDS} s"
        )
