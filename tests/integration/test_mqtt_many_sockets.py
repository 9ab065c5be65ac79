"""A bridge holding thousands of streams reconnects to the broker on a descriptor ≥ 1024 and
loses no scan (issue 14).

paho's own network thread watches its socket with `select.select`, which raises for such a
descriptor; paho 2.2 takes the ValueError for a lost connection and reconnects, again on a
high descriptor, forever, without ever sending CONNECT and without a log line: ingest stops
and /ready stays 503. The streams are held by a separate process
(the "browsers"), so that this process's test readers keep low descriptors of their own.
While the broker is down, new streams take the descriptor the bridge's MQTT socket freed,
as browsers reconnecting do, so the bridge's reconnect lands above all of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories import school_document
from tests.integration.conftest import System
from tests.integration.test_ingest_durability import DEVICES, STUDENT_TAGS
from tests.support.scanstream import ScanStream, assert_exactly_one_effect_each

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAMS = 2_000
SELECT_LIMIT = 1024  # FD_SETSIZE: select.select raises for descriptors from here on

# The browsers: `open N` opens N more authenticated streams and answers once each has its
# `connected` frame; end of input closes them all.
_HOLDER = r"""
import os, resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, token = int(os.environ["PORT"]), os.environ["TOKEN"]
request = (
    f"GET /api/sse/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
).encode()
held = []
for line in sys.stdin:
    batch = []
    for _ in range(int(line.split()[1])):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(request)
        batch.append(sock)
    for sock in batch:
        seen = b""
        while b"connected" not in seen:
            chunk = sock.recv(65536)
            if not chunk:
                sys.exit("stream closed before its connected frame: " + seen[:200].decode())
            seen += chunk
    held += batch
    print("opened", len(held), flush=True)
"""


class Browsers:
    """A child process holding many open SSE streams."""

    def __init__(self, port: int, token: str) -> None:
        env = {**os.environ, "PORT": str(port), "TOKEN": token}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def open(self, count: int) -> int:
        """Open `count` more streams; returns how many are held (bounded by their timeouts)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"open {count}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer.startswith("opened"), f"the stream holder failed: {answer!r}"
        return int(answer.split()[1])

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def browsers() -> Iterator[Callable[[System], Browsers]]:
    started: list[Browsers] = []

    def start(system: System) -> Browsers:
        staff_id = school_document()["staff"][0]["id"]
        holder = Browsers(system.server.port, system.token(staff_id, ttl=3600))
        started.append(holder)
        return holder

    yield start
    for holder in started:
        holder.close()


def _broker_socket_fd(pid: int, broker_port: int) -> int | None:
    """The bridge's descriptor of its established connection to the broker, from /proc."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == broker_port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return int(entry.name)
    return None


def _wait_not_ready(system: System, timeout: float = 20.0) -> None:
    """Until /ready says 503: the bridge noticed the broker is gone and closed its socket."""
    deadline = time.monotonic() + timeout
    while httpx.get(system.base_url + "/ready", timeout=5).status_code == 200:
        assert time.monotonic() < deadline, "the bridge did not notice the broker stopping"
        time.sleep(0.05)  # polling another process's HTTP answer; bounded above


def test_with_thousands_of_streams_the_bridge_reconnects_on_a_high_descriptor_and_loses_no_scan(
    make_system: Callable[..., System], browsers: Callable[[System], Browsers]
) -> None:
    system = make_system(
        scan_debounce_seconds=0,
        persistence=True,
        env={"SSE_MAX_STREAMS_PER_STAFF": str(2 * STREAMS)},
    )
    readers = {device: system.reader(device) for device in DEVICES}
    scans = ScanStream(readers, STUDENT_TAGS, count=400, seed=14)
    holder = browsers(system)
    assert holder.open(STREAMS) == STREAMS
    scans.publish(0, 100)
    scans.wait_answered(100, timeout=60)

    system.broker.stop()
    _wait_not_ready(system)
    held = holder.open(100)  # browsers reconnecting take the descriptors freed meanwhile
    system.broker.start()
    scans.publish(100, 400)
    scans.wait_answered(400, timeout=90)

    system.server.wait_ready(timeout_seconds=30)
    fd = _broker_socket_fd(system.server._process.pid, system.broker.port)  # type: ignore[union-attr]
    assert held == STREAMS + 100
    assert fd is not None and fd >= SELECT_LIMIT, fd
    assert_exactly_one_effect_each(system.engine, scans)
