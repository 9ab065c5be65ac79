"""Shared pieces of the benchmarks: a broker, a bridge, CPU and memory readings, JSON output.

The benchmarks start the same real processes as the integration tests (the repo's Mosquitto
config, `edge-bridge serve` in a subprocess) and print numbers; nothing here asserts timing.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_bridge.db import make_engine, migrate  # noqa: E402
from edge_ops.importer import import_data  # noqa: E402
from tests.support.broker import Broker, free_port  # noqa: E402
from tests.support.server import BridgeServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def process_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_broker(workdir: Path, *, prefix: str, users: dict[str, str]) -> Broker:
    directory = workdir / f"broker-{secrets.token_hex(3)}"
    directory.mkdir(parents=True)
    return Broker(directory, prefix=prefix, users=users).start()


def start_bridge(
    workdir: Path,
    *,
    broker: Broker,
    bridge_password: str,
    school: dict[str, Any],
    env: dict[str, str] | None = None,
) -> tuple[BridgeServer, str, str]:
    """Import the school into a fresh SQLite file and start `edge-bridge serve` on it."""
    directory = workdir / f"bridge-{secrets.token_hex(3)}"
    directory.mkdir(parents=True)
    database_url = f"sqlite:///{directory / 'bench.db'}"
    engine = make_engine(database_url)
    migrate(engine)
    import_data(engine, json.dumps(school))
    engine.dispose()
    secret = secrets.token_urlsafe(48)
    server = BridgeServer(
        directory,
        {
            "DATABASE_URL": database_url,
            "MQTT_URL": broker.url("edge-bridge", bridge_password),
            "MQTT_TOPIC_PREFIX": broker.prefix,
            "JWT_SECRET": secret,
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        },
        port=free_port(),
    )
    server.start(wait_ready=True)
    return server, database_url, secret


def server_pid(server: BridgeServer) -> int:
    assert server._process is not None
    return server._process.pid


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path
