"""`edge-bridge demo` as a user runs it: a subprocess in an empty directory, then Ctrl-C.

The demo runs in a process group of its own, like a command started from a shell, so Ctrl-C
is `killpg(SIGINT)` and "everything it started is gone" is `killpg(pgid, 0)` failing.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from edge_bridge.config import Settings
from tests.support.broker import free_port, unique_prefix
from tests.support.sse import SseStream

pytestmark = pytest.mark.integration

START_TIMEOUT_SECONDS = 60.0
EVENT_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
LIVE_EVENTS = {"student_checkin", "student_checkout", "activity_update"}


def _edge_bridge() -> list[str]:
    script = Path(sys.executable).parent / "edge-bridge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edge_ops.cli"]


def _clean_env(**values: str) -> dict[str, str]:
    """This environment without any edge-bridge setting, plus `values`."""
    settings = {name.upper() for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items() if k not in settings} | values


class _Lines:
    """A pipe read line by line on a thread; `wait_for` is bounded."""

    def __init__(self, pipe: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                msg = f"output ended without {text!r}; got:\n" + "\n".join(self.seen)
                raise EOFError(msg)
            self.seen.append(line)
            if text in line:
                return line
        msg = f"no {text!r} within {timeout} s; got:\n" + "\n".join(self.seen)
        raise TimeoutError(msg)


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], _Lines, int]]:
    """`edge-bridge demo --duration 60` in tmp_path on free ports; killed if still running."""
    port = free_port()
    env = _clean_env(
        PORT=str(port),
        MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",
        MQTT_TOPIC_PREFIX=unique_prefix(),
    )
    with open(tmp_path / "demo.stderr", "w") as stderr:
        process = subprocess.Popen(
            [*_edge_bridge(), "demo", "--duration", "60"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        yield process, _Lines(process.stdout), port
    finally:
        if process.poll() is None or not _group_gone(process.pid, 0):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_the_demo_shows_live_events_and_ctrl_c_stops_everything_it_started(
    demo: tuple[subprocess.Popen[str], _Lines, int], tmp_path: Path
) -> None:
    process, output, port = demo
    dashboard = output.wait_for("Dashboard", START_TIMEOUT_SECONDS).split()[-1]
    logins = [output.wait_for("schmidt@example.org", 1), output.wait_for("yilmaz@example.org", 1)]
    base_url = dashboard.rstrip("/")

    with httpx.Client(base_url=base_url, timeout=10.0) as http:
        health = http.get("/health")
        login = http.post(
            "/api/auth/login", json={"email": "schmidt@example.org", "password": "schmidt-demo-1"}
        )
    token = login.json()["access_token"]
    with SseStream(
        base_url + "/api/sse/events", headers={"Authorization": f"Bearer {token}"}
    ) as stream:
        connected = stream.next_event()
        live = stream.next_event(EVENT_TIMEOUT_SECONDS)
    answer = output.wait_for("reader-101 Raum 101", EVENT_TIMEOUT_SECONDS)

    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the demo's terminal
    exit_code = process.wait(STOP_TIMEOUT_SECONDS)

    assert dashboard == f"http://127.0.0.1:{port}/"
    assert "schmidt-demo-1" in logins[0] and "Raum 101" in logins[0]
    assert "yilmaz-demo-2" in logins[1]
    assert health.status_code == 200
    assert login.status_code == 200
    assert (connected.event, connected.json["subscribed_groups"]) == ("connected", ["124"])
    assert live.event in LIVE_EVENTS
    assert live.json["active_group_id"] == "124"
    assert re.fullmatch(r"\d\d:\d\d:\d\d reader-101 Raum 101 +\[(ok|dup|err)\] .+ \(\w+\)", answer)
    assert exit_code == 0
    assert _group_gone(process.pid, STOP_TIMEOUT_SECONDS)
    assert "Demo stopped" in (tmp_path / "demo.stderr").read_text()
    assert (tmp_path / "data" / "demo" / "edge_bridge.db").exists()
