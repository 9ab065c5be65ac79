"""The bridge's MQTT client alone: paho driven by the asyncio loop vs paho's network thread.

One Mosquitto (the repo's config) holds a backlog of QoS 1 scans for the bridge's persistent
session; the client then connects and drains it: each message goes through the client's
hand-over into the bounded queue, a consumer task on the loop acknowledges it and publishes a
QoS 1 feedback (what the ingest does per scan, without the database). Printed per variant:
messages/s over the drain, the whole process's CPU and the loop thread's CPU per 1,000
messages. The threaded variant is the client as it was before issue 14 (`git show
<rev>:edge_bridge/mqtt_client.py`), loaded from a temporary file. Each variant runs in a
subprocess of its own; nothing here asserts timing.

    .venv/bin/python bench/mqtt_driver.py --count 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import paho.mqtt.client as mqtt
from _harness import ROOT, self_cpu_seconds, start_broker, write_results
from paho.mqtt.enums import CallbackAPIVersion

from edge_bridge.config import load_settings
from edge_bridge.logthrottle import LogThrottle
from edge_bridge.metrics import Metrics
from edge_bridge.wire import Topics

PAYLOAD = b'{"scan_id":"1","tag":"04A1B2C3","ts":"2026-01-01T08:00:00Z"}'
FEEDBACK = b'{"scan_id":"1","result":"checked_in"}'


def _client_module(variant: str, revision: str, workdir: Path) -> ModuleType:
    if variant == "loop":
        import edge_bridge.mqtt_client as module

        return module
    source = subprocess.run(
        ["git", "show", f"{revision}:edge_bridge/mqtt_client.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = workdir / "mqtt_client_threaded.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("mqtt_client_threaded", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def _drain(module: ModuleType, settings: Any, count: int) -> dict[str, float]:
    """Connect, take `count` messages (ack + QoS 1 feedback each), disconnect."""
    client = module.MqttClient(
        settings, metrics=Metrics(), throttle=LogThrottle(logging.getLogger("bench"))
    )
    feedback = Topics(settings.mqtt_topic_prefix).feedback("reader-101")
    client.start(asyncio.get_running_loop())
    got = 0
    first_wall = first_cpu = first_loop = 0.0
    async with asyncio.timeout(300):
        while got < count:
            inbound = await client.queue.get()
            if inbound.qos != 1 or "/scan" not in inbound.topic:
                client.ack(inbound)
                continue
            if got == 0:
                first_wall, first_cpu, first_loop = (
                    time.perf_counter(),
                    self_cpu_seconds(),
                    time.thread_time(),
                )
            client.ack(inbound)
            client.publish(feedback, FEEDBACK)
            got += 1
    wall = time.perf_counter() - first_wall
    cpu = self_cpu_seconds() - first_cpu
    loop_cpu = time.thread_time() - first_loop
    await client.stop()
    return {
        "messages_per_second": round((count - 1) / wall) if count > 1 else 0,
        "process_cpu_ms_per_1000": round(1000 * cpu / count * 1000, 1),
        "loop_thread_cpu_ms_per_1000": round(1000 * loop_cpu / count * 1000, 1),
    }


def _child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        module = _client_module(args.variant, args.revision, Path(tmp))
        settings = load_settings(
            secret_file=Path(tmp) / "jwt",
            database_url=f"sqlite:///{tmp}/unused.db",
            mqtt_url=args.mqtt_url,
            mqtt_topic_prefix=args.prefix,
            port=0,
        )
        result = asyncio.run(_drain(module, settings, args.count))
    print(json.dumps(result), flush=True)


def _publish_backlog(host: str, port: int, password: str, prefix: str, count: int) -> None:
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="reader-101")
    publisher.username_pw_set("reader-101", password)
    publisher.max_inflight_messages_set(1000)
    publisher.connect(host, port)
    publisher.loop_start()
    topic = Topics(prefix).scan("reader-101")
    infos = [publisher.publish(topic, PAYLOAD, qos=1) for _ in range(count)]
    for info in infos:
        info.wait_for_publish(60)
    publisher.disconnect()
    publisher.loop_stop()


def _child_command(variant: str, url: str, prefix: str, count: int, revision: str) -> list[str]:
    return [
        *(sys.executable, __file__, "--child", "--variant", variant, "--mqtt-url", url),
        *("--prefix", prefix, "--count", str(count), "--revision", revision),
    ]


def _make_session(variant: str, url: str, prefix: str, revision: str, broker: Any) -> None:
    """Make the persistent session (and its subscription): one scan through it, published
    again each second until the child has it (its subscription may still be on its way)."""
    child = subprocess.Popen(_child_command(variant, url, prefix, 1, revision), text=True)
    deadline = time.monotonic() + 30
    while child.poll() is None and time.monotonic() < deadline:
        _publish_backlog(broker.host, broker.port, broker.users["reader-101"], prefix, 1)
        try:
            child.wait(1.0)
        except subprocess.TimeoutExpired:
            continue
    if child.poll() != 0:
        child.kill()
        msg = f"the session was not made (variant {variant})"
        raise RuntimeError(msg)


def _round(variant: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A fresh broker and session; the backlog is published, then drained by a new child."""
    passwords = {"edge-bridge": secrets.token_urlsafe(8), "reader-101": secrets.token_urlsafe(8)}
    prefix = f"bench-{secrets.token_hex(3)}"
    broker = start_broker(workdir, prefix=prefix, users=passwords)
    try:
        url = broker.url("edge-bridge", passwords["edge-bridge"])
        _make_session(variant, url, prefix, args.revision, broker)
        _publish_backlog(broker.host, broker.port, passwords["reader-101"], prefix, args.count)
        command = _child_command(variant, url, prefix, args.count, args.revision)
        out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--revision", default="HEAD", help="git revision of the threaded client")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=["loop", "thread"], default="loop")
    parser.add_argument("--mqtt-url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    results: dict[str, list[dict[str, Any]]] = {"thread": [], "loop": []}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            for variant in ("thread", "loop") if index % 2 == 0 else ("loop", "thread"):
                result = _round(variant, args, Path(tmp))
                results[variant].append(result)
                print(variant, result, flush=True)
    summary = {
        variant: {
            key: sorted(run[key] for run in runs)[len(runs) // 2] for key in runs[0]
        }  # medians
        for variant, runs in results.items()
    }
    print("median:", json.dumps(summary, indent=2))
    write_results("mqtt_driver", {"count": args.count, "runs": results, "median": summary})


if __name__ == "__main__":
    main()
