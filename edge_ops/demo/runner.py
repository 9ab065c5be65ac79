"""`edge-bridge demo`: broker, bridge, demo school and simulated readers on one machine.

Everything lives in `./data/demo/` and starts fresh each time (database, broker state, reader
passwords); only the JWT secret is kept, so a browser that is still logged in stays so. The
bridge and the simulator run as child processes: the core never imports the web app or the
simulator (dependencies point one way), and each child's output is kept apart: the bridge's
and the broker's logs go to files, the simulator's readers answer on the terminal.

The simulator plays one afternoon after another (`--loop`), each continuing from who is still
there. The pace is set on the wall clock (`--rate` scans per second, about one every second or
two by default), whatever `--speed` is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_bridge.config import Settings, load_settings
from edge_bridge.db import make_engine, migrate
from edge_ops.credentials import DEFAULT_BRIDGE_USERNAME
from edge_ops.demo.mosquitto import DemoBroker
from edge_ops.demo.process import Child, DemoError
from edge_ops.importer import import_file

logger = logging.getLogger(__name__)

DEMO_DIR = Path("data") / "demo"
SCHOOL_FILE = Path(__file__).with_name("school.json")
DEFAULT_RATE = 0.8  # scans per second on the wall clock
DEMO_FLAKY = 0.04  # per scan: the chance its reader drops off just before it
READY_TIMEOUT_SECONDS = 30.0
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps its state, all under one directory."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / "edge_bridge.db"

    @property
    def secret(self) -> Path:
        return self.root / "jwt_secret"

    @property
    def broker(self) -> Path:
        return self.root / "mosquitto"

    @property
    def credentials(self) -> Path:
        return self.root / "reader-credentials.json"

    @property
    def bridge_log(self) -> Path:
        return self.root / "bridge.log"

    def reset(self) -> None:
        """Forget the last demo: database, broker state and logs (the JWT secret stays)."""
        self.broker.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.database}{suffix}").unlink(missing_ok=True)
        for path in (self.broker / "data" / "mosquitto.db", self.broker / "mosquitto.log"):
            path.unlink(missing_ok=True)
        self.bridge_log.unlink(missing_ok=True)


class _Stop(threading.Event):
    """Set by SIGINT (Ctrl-C) or SIGTERM."""


@contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    stop = _Stop()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Start everything, print the URL and logins, run until Ctrl-C or SIGTERM, stop it all."""
    _check_pace(args)
    paths = DemoPaths((Path.cwd() / DEMO_DIR).resolve())
    school = json.loads(SCHOOL_FILE.read_text(encoding="utf-8"))
    http_port = _http_port(settings)
    broker = DemoBroker(paths.broker, port=_mqtt_port(settings), prefix=settings.mqtt_topic_prefix)
    paths.reset()
    database_url = _prepare_database(paths)
    devices = [device["id"] for device in school.get("devices", [])]
    bridge_password = broker.provision(devices, credentials_file=paths.credentials)
    children: list[Child] = []
    with _stop_on_signals() as stop:
        try:
            children.append(broker.start())
            bridge = _start_bridge(
                settings,
                paths,
                broker=broker,
                password=bridge_password,
                database_url=database_url,
                port=http_port,
            )
            children.append(bridge)
            base_url = f"http://{_display_host(settings.host)}:{http_port}"
            if not _wait_ready(bridge, base_url, stop):
                return 0
            children.append(
                _start_simulator(settings, args, paths=paths, broker=broker, school=school)
            )
            # The simulator needs a moment to start, so its first line comes after these.
            banner = format_banner(
                school, base_url, broker=broker.address, prefix=broker.prefix, paths=paths
            )
            print(banner, flush=True)
            return _supervise(children, stop)
        finally:
            if children:
                print("\nStopping the demo …", file=sys.stderr, flush=True)
            for child in reversed(children):
                child.stop()
            if children:
                print("Demo stopped: simulator, bridge and broker are down.", file=sys.stderr)


def _check_pace(args: argparse.Namespace) -> None:
    for name in ("speed", "duration", "rate"):
        value = getattr(args, name, 1.0)
        if not value > 0:
            msg = f"--{name} must be positive, got: {value}"
            raise DemoError(msg)


def _prepare_database(paths: DemoPaths) -> str:
    url = f"sqlite:///{paths.database}"
    engine = make_engine(url)
    try:
        migrate(engine)
        import_file(engine, SCHOOL_FILE)
    finally:
        engine.dispose()
    return url


def _start_bridge(
    settings: Settings,
    paths: DemoPaths,
    *,
    broker: DemoBroker,
    password: str,
    database_url: str,
    port: int,
) -> Child:
    secret = load_settings(secret_file=paths.secret, jwt_secret="").jwt_secret
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MQTT_URL": broker.url(DEFAULT_BRIDGE_USERNAME, password),
        "MQTT_CLIENT_ID": DEFAULT_BRIDGE_USERNAME,
        "MQTT_TOPIC_PREFIX": settings.mqtt_topic_prefix,
        "HOST": settings.host,
        "PORT": str(port),
        "JWT_SECRET": secret,
        "LOG_LEVEL": settings.log_level,
        "SCAN_DEBOUNCE_SECONDS": f"{settings.scan_debounce_seconds:g}",
    }
    argv = [sys.executable, "-m", "edge_ops.cli", "serve"]
    return Child.start("bridge", argv, log_path=paths.bridge_log, env=env)


def _wait_ready(bridge: Child, base_url: str, stop: threading.Event) -> bool:
    """True once GET /ready answers 200; False if stopped meanwhile; DemoError on failure."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not stop.is_set():
        if not bridge.running:
            bridge.fail(f"exited during start-up with code {bridge.returncode}")
        if _answers_ok(f"{base_url}/ready"):
            return True
        if time.monotonic() > deadline:
            bridge.fail(f"was not ready within {READY_TIMEOUT_SECONDS:g} s")
        stop.wait(_POLL_SECONDS)
    return False


def _start_simulator(
    settings: Settings,
    args: argparse.Namespace,
    *,
    paths: DemoPaths,
    broker: DemoBroker,
    school: dict[str, Any],
) -> Child:
    speed = float(args.speed)
    rate = float(getattr(args, "rate", DEFAULT_RATE))
    active_devices = [d for d in school.get("devices", []) if d.get("active", True)]
    argv = [
        sys.executable,
        "-m",
        "simulator",
        "run",
        "--loop",
        "--data",
        str(SCHOOL_FILE),
        "--devices",
        str(len(active_devices)),
        "--students",
        str(len(school.get("students", []))),
        "--duration",
        f"{float(args.duration):g}",
        "--speed",
        f"{speed:g}",
        "--rate",
        f"{rate / speed:g}",
        "--seed",
        "1",
        "--debounce",
        f"{settings.scan_debounce_seconds:g}",
        # Now and then a reader drops off for a few seconds (its Last Will): the office
        # view shows it red, then back, and its scans arrive late with their read times.
        "--flaky",
        f"{DEMO_FLAKY:g}",
        "--mqtt-url",
        f"mqtt://{DemoBroker.host}:{broker.port}",
        "--prefix",
        settings.mqtt_topic_prefix,
        "--credentials",
        str(paths.credentials),
        "--log-level",
        "WARNING",
    ]
    return Child.start("simulator", argv, log_path=None)


def _answers_ok(url: str) -> bool:
    # urllib rather than httpx: no log line per poll; no proxy, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):  # URLError and HTTPError (503 while not ready) are OSErrors
        return False


def _supervise(children: list[Child], stop: threading.Event) -> int:
    """Wait for Ctrl-C or SIGTERM (0); a child that dies on its own ends the demo (1)."""
    while not stop.wait(_POLL_SECONDS):
        for child in children:
            if not child.running:
                where = f"; see {child.log_path}" if child.log_path else ""
                code = child.returncode
                print(
                    f"edge-bridge demo: the {child.name} exited (code {code}){where}",
                    file=sys.stderr,
                )
                return 1
    return 0


def format_banner(
    school: dict[str, Any], base_url: str, *, broker: str, prefix: str, paths: DemoPaths
) -> str:
    """What the demo prints once it runs: the URL, the logins (supervisors, then the office's
    admin), where things are."""
    rooms = {room["id"]: room["name"] for room in school.get("rooms", [])}
    supervised = {
        staff_id: f"{group['name']} ({rooms.get(group['room_id'], '?')})"
        for group in school.get("active_groups", [])
        for staff_id in group.get("supervisor_ids", [])
    }
    logins = [
        f"{staff['email']} / {staff['password']}".ljust(40) + supervised[staff["id"]]
        for staff in school.get("staff", [])
        if staff.get("password") and not staff.get("admin") and staff["id"] in supervised
    ]
    logins += [
        f"{staff['email']} / {staff['password']}".ljust(40) + "Büro: Anwesenheit, Leser, Räume"
        for staff in school.get("staff", [])
        if staff.get("password") and staff.get("admin")
    ]
    readers = sum(1 for d in school.get("devices", []) if d.get("active", True))
    here = _relative(paths.root)
    lines = [
        "",
        "edge-bridge demo: a school afternoon, live",
        "",
        f"  Dashboard   {base_url}/",
        *(f"  {'Logins' if i == 0 else '':<10}  {login}" for i, login in enumerate(logins)),
        "",
        f"  {readers} simulated readers, {len(school.get('students', []))} children; "
        f"Mosquitto on {broker} (topic prefix {prefix})",
        f"  Logs: {here}/bridge.log, {here}/mosquitto/mosquitto.log (demo data resets on start)",
        "  Ctrl-C stops everything.",
        "",
        "What the readers show:",
    ]
    return "\n".join(lines)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host


def _http_port(settings: Settings) -> int:
    """PORT when set (it must be free); else 8000, or any free port if 8000 is taken."""
    host = settings.host
    if "port" in settings.model_fields_set:
        if not _port_free(host, settings.port):
            msg = f"PORT {settings.port} on {host} is in use; free it or set PORT to another port"
            raise DemoError(msg)
        return settings.port
    if _port_free(host, settings.port):
        return settings.port
    port = _any_free_port(host)
    print(f"Port {settings.port} is in use; the dashboard uses port {port} instead.")
    return port


def _mqtt_port(settings: Settings) -> int:
    """The port of MQTT_URL when set (it must be free); else 1883, or any free port."""
    port = settings.mqtt.port
    if "mqtt_url" in settings.model_fields_set:
        if not _port_free(DemoBroker.host, port):
            msg = f"MQTT_URL port {port} is in use; the demo runs its own broker on it"
            raise DemoError(msg)
        return port
    return port if _port_free(DemoBroker.host, port) else _any_free_port(DemoBroker.host)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _any_free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
