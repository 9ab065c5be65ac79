"""Ingest benchmark: end-to-end scans/s vs raw Mosquitto, scan→SSE latency, outage backlog.

    .venv/bin/python bench/ingest.py [--count 50000] [--readers 20] [--rate 200]
                                     [--latency-seconds 10] [--subscribers 100]
                                     [--outage-seconds 60]   # the issue's full spec: 600

1. Raw baseline: the same broker config, `--readers` plain paho publishers at QoS 1, one
   plain paho subscriber; messages/s until the subscriber has all of them.
2. End to end: `--count` scans from `--readers` emulated readers (the simulator's load
   generator) against `edge-bridge serve` on SQLite; scans/s until every scan has its
   feedback, then the processed-scan rows are counted. Printed as a ratio to (1).
3. Latency: `--subscribers` SSE streams open; scans at a fixed `--rate`; per delivery, the
   time from publishing the scan to the event arriving on a stream (p50/p99/max).
4. Outage: the bridge is stopped while readers publish 100 scans/s for `--outage-seconds`;
   then it restarts and we time until the backlog's rows are all committed; the drain rate
   after /ready gives the extrapolation to a 10-minute outage (60,000 scans at 100/s).
5. `--profile out.raw` (or .svg) records the bridge with py-spy during (2).
Numbers go to stdout and bench/results/ingest.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from _harness import (
    machine,
    percentile,
    process_cpu_seconds,
    self_cpu_seconds,
    server_pid,
    start_bridge,
    start_broker,
    write_results,
)
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text

from edge_bridge.tokens import issue_token
from edge_bridge.wire import Topics, format_ts
from simulator.broker import BrokerConfig
from simulator.data import build_import_file, data_from_import
from simulator.load import LoadOptions, run_load
from simulator.reader import ReaderOptions


def _client(client_id: str, username: str, password: str, broker: Any) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(100)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def raw_baseline(workdir: Path, *, count: int, readers: list[str]) -> dict[str, Any]:
    """Mosquitto alone: QoS 1 from the readers' accounts to one subscriber."""
    users = {name: secrets.token_urlsafe(8) for name in ["edge-bridge", *readers]}
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    broker = start_broker(workdir, prefix=prefix, users=users)
    topics = Topics(prefix)
    received = 0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(*_args: object) -> None:
        nonlocal received
        received += 1
        if received >= count:
            done.set()

    subscriber = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="edge-bridge", protocol=mqtt.MQTTv5
    )
    subscriber.username_pw_set("edge-bridge", users["edge-bridge"])
    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *_a: subscribed.set()
    subscriber.connect(broker.host, broker.port)
    subscriber.loop_start()
    subscriber.subscribe(topics.all_scans, qos=1)
    subscribed.wait(10)
    publishers = [_client(r, r, users[r], broker) for r in readers]
    payload = json.dumps({"scan_id": "x" * 32, "tag": "04A1B2C3D4", "ts": format_ts_now()})
    started = time.monotonic()
    for i in range(count):
        publisher = publishers[i % len(publishers)]
        publisher.publish(topics.scan(readers[i % len(readers)]), payload, qos=1)
    finished = done.wait(300)
    elapsed = time.monotonic() - started
    for client in [*publishers, subscriber]:
        client.disconnect()
        client.loop_stop()
    broker.stop()
    return {
        "messages": count,
        "received": received,
        "complete": finished,
        "seconds": round(elapsed, 3),
        "messages_per_second": round(received / elapsed, 1),
    }


def format_ts_now() -> str:
    from datetime import UTC, datetime

    return format_ts(datetime.now(UTC))


def _start_profiler(pid: int, output: str | None) -> subprocess.Popen[bytes] | None:
    """py-spy recording the bridge (stopped with SIGINT, which makes it write `output`)."""
    if not output:
        return None
    py_spy = Path(sys.executable).parent / "py-spy"
    fmt = "raw" if output.endswith(".raw") else "flamegraph"
    command = [str(py_spy), "record", "--pid", str(pid), "-r", "200", "-f", fmt, "-o", output]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)


def end_to_end(
    system: dict[str, Any], *, count: int, readers: int, profile: str | None = None
) -> dict[str, Any]:
    pid = server_pid(system["server"])
    profiler = _start_profiler(pid, profile)
    cpu_before = process_cpu_seconds(pid)
    client_cpu_before = self_cpu_seconds()
    # Readers normally re-publish after 5 s without feedback; a flat-out burst of tens of
    # thousands would turn that into a resend storm that measures the storm, not the bridge.
    stats = run_load(
        system["data"],
        system["broker_config"],
        LoadOptions(devices=readers, rate=0, count=count, timeout_seconds=600),
        reader_options=ReaderOptions(resend_after_seconds=300, max_resends=1),
    )
    _stop_profiler(profiler)
    rows = _count_rows(system["database_url"])
    stats["server_cpu_seconds"] = round(process_cpu_seconds(pid) - cpu_before, 2)
    stats["client_cpu_seconds"] = round(self_cpu_seconds() - client_cpu_before, 2)
    stats["processed_scan_rows"] = rows
    return stats


def _count_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM processed_scan")).scalar_one()
    engine.dispose()
    return int(rows)


async def _sse_reader(
    url: str,
    token: str,
    sent_at: dict[str, float],
    latencies: list[float],
    ready: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        ready.set()
        async for line in response.aiter_lines():
            if stop.is_set():
                return
            if line.startswith("data: ") and '"student_id"' in line:
                envelope = json.loads(line[6:])
                published = sent_at.get(envelope["data"]["student_id"])
                if published is not None:
                    latencies.append(time.monotonic() - published)


def latency(
    system: dict[str, Any], *, rate: float, seconds: float, subscribers: int
) -> dict[str, Any]:
    school, server, broker = system["school"], system["server"], system["broker"]
    staff = [s["id"] for s in school["staff"] if not s.get("admin")]
    students = school["students"][: int(rate * seconds)]
    devices = [d["id"] for d in school["devices"]]
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    publishers = {d: _client(d, d, system["passwords"][d], broker) for d in devices}
    topics = Topics(broker.prefix)

    async def run() -> None:
        stop = asyncio.Event()
        readies = [asyncio.Event() for _ in range(subscribers)]
        url = server.base_url + "/api/sse/events"
        tasks = [
            asyncio.create_task(
                _sse_reader(
                    url,
                    issue_token(
                        staff[i % len(staff)],
                        school_id=1,
                        secret=system["secret"],
                        ttl_seconds=3600,
                    ),
                    sent_at,
                    latencies,
                    readies[i],
                    stop,
                )
            )
            for i in range(subscribers)
        ]
        async with asyncio.timeout(30):
            await asyncio.gather(*(r.wait() for r in readies))
        started = time.monotonic()
        for i, student in enumerate(students):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            device = devices[i % len(devices)]
            sent_at[str(student["id"])] = time.monotonic()
            body = {"scan_id": uuid.uuid4().hex, "tag": student["tag"], "ts": format_ts_now()}
            publishers[device].publish(topics.scan(device), json.dumps(body), qos=1)
        await asyncio.sleep(2.0)  # let the last events arrive; this is a benchmark, not a test
        stop.set()
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, Exception)]
        if failures:
            print(f"{len(failures)} SSE readers failed, first: {failures[0]!r}", flush=True)

    asyncio.run(run())
    for client in publishers.values():
        client.disconnect()
        client.loop_stop()
    ms = [value * 1000 for value in latencies]
    return {
        "rate": rate,
        "scans": len(students),
        "subscribers": subscribers,
        "deliveries": len(ms),
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms, default=0), 2),
    }


def outage(system: dict[str, Any], *, seconds: float, rate: float = 100.0) -> dict[str, Any]:
    server, broker = system["server"], system["broker"]
    devices = [d["id"] for d in system["school"]["devices"]]
    tags = [s["tag"] for s in system["school"]["students"]]
    rows_before = _count_rows(system["database_url"])
    server.stop()
    publishers = {d: _client(d, d, system["passwords"][d], broker) for d in devices}
    topics = Topics(broker.prefix)
    total = int(seconds * rate)
    started = time.monotonic()
    for i in range(total):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        device = devices[i % len(devices)]
        body = {"scan_id": uuid.uuid4().hex, "tag": tags[i % len(tags)], "ts": format_ts_now()}
        publishers[device].publish(topics.scan(device), json.dumps(body), qos=1)
    for client in publishers.values():
        client.disconnect()
        client.loop_stop()
    restarted = time.monotonic()
    server.start(wait_ready=True)
    ready = time.monotonic() - restarted
    deadline = restarted + 600
    while _count_rows(system["database_url"]) < rows_before + total and time.monotonic() < deadline:
        time.sleep(0.05)
    drained = time.monotonic() - restarted
    rows = _count_rows(system["database_url"]) - rows_before
    # The drain rate after /ready, and what it makes of a 10-minute outage at the same rate
    # (the issue's case: 60,000 scans), start-up included.
    drain_rate = rows / max(drained - ready, 1e-3)
    return {
        "outage_seconds": seconds,
        "rate": rate,
        "scans_queued": total,
        "processed": rows,
        "seconds_to_ready": round(ready, 2),
        "seconds_to_drain_after_restart": round(drained, 2),
        "drain_scans_per_second": round(drain_rate, 1),
        "extrapolated_10_min_drain_seconds": round(ready + 600 * rate / drain_rate, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument(
        "--profile", help="py-spy output of the bridge during the flat-out run (.raw or .svg)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    school = build_import_file(
        rooms=args.readers, students=2000, closed_rooms=0, password="bench-password"
    )
    readers = [d["id"] for d in school["devices"]]
    results: dict[str, Any] = {"machine": machine(), "args": vars(args)}

    results["raw_broker"] = raw_baseline(workdir, count=args.count, readers=readers)
    print("raw mosquitto QoS 1:", results["raw_broker"], flush=True)

    passwords = {name: secrets.token_urlsafe(8) for name in ["edge-bridge", *readers]}
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    broker = start_broker(workdir, prefix=prefix, users=passwords)
    server, database_url, secret = start_bridge(
        workdir, broker=broker, bridge_password=passwords["edge-bridge"], school=school
    )
    system = {
        "school": school,
        "server": server,
        "broker": broker,
        "passwords": passwords,
        "database_url": database_url,
        "secret": secret,
        "data": data_from_import(school),
        "broker_config": BrokerConfig.from_url(
            f"mqtt://{broker.host}:{broker.port}", prefix=prefix, credentials=passwords
        ),
    }
    try:
        results["end_to_end"] = end_to_end(
            system, count=args.count, readers=args.readers, profile=args.profile
        )
        e2e, raw = results["end_to_end"], results["raw_broker"]
        results["ratio_end_to_end_vs_raw"] = round(
            e2e["scans_per_second"] / raw["messages_per_second"], 3
        )
        print("end to end:", e2e, flush=True)
        print("ratio ours/raw:", results["ratio_end_to_end_vs_raw"], flush=True)
        results["latency"] = latency(
            system, rate=args.rate, seconds=args.latency_seconds, subscribers=args.subscribers
        )
        print("scan→SSE latency:", results["latency"], flush=True)
        if args.outage_seconds > 0:
            results["outage"] = outage(system, seconds=args.outage_seconds)
            print("outage backlog:", results["outage"], flush=True)
    finally:
        server.stop()
        broker.stop()
    print("written:", write_results("ingest", results))


if __name__ == "__main__":
    main()
