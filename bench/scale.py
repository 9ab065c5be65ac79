"""Scale-out benchmark: 1 instance vs 2 instances on one PostgreSQL and one Mosquitto (issue 12).

    .venv/bin/python bench/scale.py [--database-url postgresql+psycopg://USER:PW@HOST:PORT/postgres]
                                    [--count 20000] [--readers 20] [--streams 1000]
                                    [--rate 50] [--seconds 10] [--paced-rate 500]
                                    [--paced-seconds 20] [--quick]

Without `--database-url` (an admin URL: the bench creates and drops its own databases on
it) a throwaway PostgreSQL cluster is started with scripts/ci-postgres.sh and stopped at the
end (fsync and synchronous_commit off: commits are cheaper than on a production server).
`--quick`: 3,000 scans, 200 streams, 5 s of fan-out at 40 events/s, 6 s paced (about 3
minutes); the default takes about 5 minutes on 2 cores.

For each topology (1 instance: plain subscription, today's set-up on PostgreSQL; 2
instances: MQTT_SHARED_GROUP=edge, each its own MQTT user = client id = INSTANCE_ID
`bridge-<i>`, tests/support/cluster.py), on a fresh database and a fresh broker:
1. Fan-out: `--streams` SSE streams (bench/sse_load_client.py, two processes; with two
   instances one process per instance, so half the browsers are on each), all of staff 2,
   the supervisor of the active group behind reader-102. Scans of distinct students on
   reader-102 at `--rate` for `--seconds`; every one is a `student_checkin` to every stream.
   Per delivery: publish → arrival at the browser. Which instance wrote the event is read
   from the broker's debug log (the instance the shared subscription handed the scan to),
   so each delivery is "same" (browser on the writing instance) or "other".
   Also deliveries/s and instance CPU per 1,000 deliveries.
2. Ingest: `--count` scans from `--readers` emulated readers as fast as they get feedback
   (simulator/load.py, as bench/ingest.py; INGEST_QUEUE_SIZE holds the whole burst): scans/s
   end to end, feedback latency, CPU per scan of the instances and of PostgreSQL, and
   PostgreSQL transactions per scan: pg_stat_database.xact_commit delta / scans, raw and net
   of the idle rate (the tails' polls) measured just before.
3. Paced ingest: `--paced-rate` scans/s (default 500, the city's pickup burst) for
   `--paced-seconds`: feedback latency, CPU and transactions per scan at that rate (batches
   are smaller than flat out, so this is the transactions-per-scan figure to plan with).
Numbers go to stdout and bench/results/scale.json. Nothing is asserted; the target printed
is the issue's: scan→browser p99 on the other instance ≤ 2× the same-instance p99.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from _harness import (
    ROOT,
    machine,
    percentile,
    process_cpu_seconds,
    self_cpu_seconds,
    server_pid,
    write_results,
)
from paho.mqtt.enums import CallbackAPIVersion
from sse_fanout import LoadClients

from edge_bridge.db import make_engine, migrate
from edge_bridge.tokens import issue_token
from edge_bridge.wire import Topics, format_ts
from edge_ops.importer import import_data
from simulator.broker import BrokerConfig
from simulator.data import build_import_file, data_from_import
from simulator.load import LoadOptions, run_load
from simulator.reader import ReaderOptions
from tests.support.broker import Broker
from tests.support.cluster import build_instances, instance_username
from tests.support.server import BridgeServer

FANOUT_STAFF = 2  # supervises active group 12 in room 2, behind reader-102
FANOUT_READER = "reader-102"
FIRST_FANOUT_STUDENT = 100_001
SHARED_GROUP = "edge"
TARGET_P99_RATIO = 2.0
_SENDING = re.compile(r"Sending PUBLISH to (\S+) \(d0, q\d, r\d, m\d+, '([^']+)'")


# --- PostgreSQL --------------------------------------------------------------------------------


@dataclass
class Postgres:
    """The server the bench runs on: an admin URL and, when we started it, its postmaster."""

    admin_url: str
    postmaster_pid: int | None = None

    def cpu_seconds(self) -> float | None:
        """CPU of the postmaster and its children (backends that exited are not counted)."""
        if self.postmaster_pid is None:
            return None
        pids = [self.postmaster_pid, *_children(self.postmaster_pid)]
        return sum(_cpu(pid) for pid in pids)


@contextlib.contextmanager
def postgres_server(database_url: str | None) -> Iterator[Postgres]:
    if database_url:
        yield Postgres(database_url)
        return
    # Not inside the 0700 work dir: under root the server runs as `postgres`, which must
    # reach its directory.
    directory = Path(tempfile.gettempdir()) / f"edge-bench-pg-{secrets.token_hex(4)}"
    script = ROOT / "scripts" / "ci-postgres.sh"
    started = subprocess.run(
        [str(script), "start", str(directory)], check=False, capture_output=True, text=True
    )
    if started.returncode != 0:
        msg = f"scripts/ci-postgres.sh start failed: {started.stderr[-2000:]}"
        raise RuntimeError(msg)
    url = started.stdout.strip().splitlines()[-1]
    pid_file = directory / "data" / "postmaster.pid"
    try:
        yield Postgres(url, int(pid_file.read_text().split()[0]))
    finally:
        subprocess.run([str(script), "stop", str(directory)], check=False, capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(admin_url: str, school: dict[str, Any]) -> Iterator[str]:
    """A database of its own on the server, migrated and with the school; dropped afterwards."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"edge_scale_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine)
    import_data(engine, json.dumps(school))
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def xact_commit(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.text(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
                )
            ).scalar_one()
        )


def _processed_rows(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM processed_scan")).scalar_one())


# --- processes ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _cpu(pid: int) -> float:
    try:
        return process_cpu_seconds(pid)
    except OSError:
        return 0.0


def _day_end() -> str:
    """Twelve hours away in the school's time zone: the bench never meets DAY_END."""
    return (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(hours=12)).strftime("%H:%M")


@dataclass
class Topology:
    """N bridge instances on one fresh database and one fresh broker (debug log on)."""

    count: int
    database_url: str
    school: dict[str, Any]
    workdir: Path
    queue_size: int = 10_000
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    broker: Broker | None = None
    instances: list[BridgeServer] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        usernames = [instance_username(i) for i in range(self.count)]
        readers = [d["id"] for d in self.school["devices"]]
        self.passwords = {name: secrets.token_urlsafe(12) for name in [*usernames, *readers]}
        directory = self.workdir / f"topology-{self.count}-{secrets.token_hex(3)}"
        # Debug logging: "Sending PUBLISH to bridge-<i> … '<topic>'" says which instance the
        # shared subscription handed each scan to.
        log_types = ["error", "warning", "notice", "information", "debug"]
        self.broker = Broker(
            directory / "broker",
            prefix=f"bench-{uuid.uuid4().hex[:6]}",
            users=self.passwords,
            bridge_usernames=usernames,
            options={"log_type": log_types},
        ).start()
        base_env = {
            "DATABASE_URL": self.database_url,
            "MQTT_TOPIC_PREFIX": self.broker.prefix,
            "JWT_SECRET": self.secret,
            "LOG_LEVEL": "WARNING",
            "DAY_END": _day_end(),
            "SSE_MAX_STREAMS_PER_STAFF": "100000",
            # The whole flat-out burst fits: the bench measures throughput, not load shedding
            # (a full queue drops a scan until its reader re-publishes).
            "INGEST_QUEUE_SIZE": str(self.queue_size),
        }
        self.instances = build_instances(
            directory,
            count=self.count,
            base_env=base_env,
            broker=self.broker,
            passwords=self.passwords,
            shared_group=SHARED_GROUP if self.count > 1 else "",
        )
        for server in self.instances:
            server.start(wait_ready=True)

    def pids(self) -> list[int]:
        return [server_pid(server) for server in self.instances]

    def cpu_seconds(self) -> list[float]:
        return [_cpu(pid) for pid in self.pids()]

    def broker_log_size(self) -> int:
        assert self.broker is not None
        return self.broker.log_path.stat().st_size

    def handed_to(self, topic: str, since: int) -> list[int]:
        """Instance index of each first delivery of a message on `topic`, in order."""
        assert self.broker is not None
        with self.broker.log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        return [
            int(match[1].rsplit("-", 1)[1])
            for match in _SENDING.finditer(text)
            if match[2] == topic and match[1].startswith("bridge-")
        ]

    def stop(self) -> None:
        for server in self.instances:
            try:
                server.stop(timeout_seconds=15)
            except Exception as exc:
                print(f"  stop failed: {str(exc)[-300:]}", flush=True)
                server.kill()
        if self.broker is not None:
            self.broker.stop()


# --- 1. fan-out ---------------------------------------------------------------------------------


def _request(port: int, token: str) -> str:
    lines = [
        "GET /api/sse/events HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Accept: text/event-stream",
        "Cache-Control: no-cache",
        f"Authorization: Bearer {token}",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def _connect(
    clients: LoadClients, topology: Topology, streams: int, token: str
) -> list[dict[str, Any]]:
    """Process i opens its share of the streams on instance i % N."""
    procs = len(clients.processes)
    shares = [streams // procs + (1 if i < streams % procs else 0) for i in range(procs)]
    ports = [topology.instances[i % topology.count].port for i in range(procs)]
    return clients.call(
        [
            {
                "cmd": "connect",
                "host": "127.0.0.1",
                "port": port,
                "request": _request(port, token),
                "marker": "event: connected",
                "count": share,
                "window": max(1, share),
                "timeout": 60,
            }
            for share, port in zip(shares, ports, strict=True)
        ]
    )


def _publisher(topology: Topology, device: str) -> mqtt.Client:
    assert topology.broker is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
    client.username_pw_set(device, topology.passwords[device])
    client.max_inflight_messages_set(1000)
    client.connect(topology.broker.host, topology.broker.port)
    client.loop_start()
    return client


def _drain(clients: LoadClients, expected: int, *, stall: float, deadline: float) -> str:
    seen, last_change = -1, time.time()
    while time.time() < deadline:
        deliveries = clients.progress()["deliveries"]
        if deliveries >= expected:
            return "complete"
        if deliveries != seen:
            seen, last_change = deliveries, time.time()
        elif time.time() - last_change > stall:
            return "stalled"
        time.sleep(0.2)
    return "deadline"


def _ms(values: list[float]) -> dict[str, float | None]:
    """n, p50, p99, max in ms; None without values (JSON has no NaN)."""
    ms = [value * 1000 for value in values]
    if not ms:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 0.50), 2),
        "p99": round(percentile(ms, 0.99), 2),
        "max": round(max(ms), 2),
    }


def fanout(
    topology: Topology, clients: LoadClients, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    token = issue_token(FANOUT_STAFF, school_id=1, secret=topology.secret, ttl_seconds=3600)
    answers = _connect(clients, topology, args.streams, token)
    ready = [answer["ready"] for answer in answers]
    print(f"  fan-out: {sum(ready)} streams ready (per load process {ready})", flush=True)
    assert topology.broker is not None
    topic = Topics(topology.broker.prefix).scan(FANOUT_READER)
    tags = [s["tag"] for s in topology.school["students"] if s["id"] >= FIRST_FANOUT_STUDENT]
    events = min(len(tags), round(args.rate * args.seconds))
    publisher = _publisher(topology, FANOUT_READER)
    clients.all({"cmd": "record", "on": True})
    log_offset = topology.broker_log_size()
    cpu_before, client_cpu_before = topology.cpu_seconds(), clients.cpu_seconds()
    sent_at: dict[str, float] = {}
    order: list[str] = []
    started = time.time()
    for seq in range(events):
        delay = started + seq / args.rate - time.time()
        if delay > 0:
            time.sleep(delay)
        student = str(FIRST_FANOUT_STUDENT + seq)
        body = {"scan_id": uuid.uuid4().hex, "tag": tags[seq], "ts": format_ts(datetime.now(UTC))}
        sent_at[student] = time.time()
        order.append(student)
        publisher.publish(topic, json.dumps(body), qos=1)
    last_publish = time.time()
    drain_end = _drain(
        clients, sum(ready) * events, stall=5.0, deadline=last_publish + args.drain_seconds
    )
    cpu = [after - before for before, after in zip(cpu_before, topology.cpu_seconds(), strict=True)]
    client_cpu = sum(clients.cpu_seconds()) - sum(client_cpu_before)
    clients.all({"cmd": "record", "on": False})
    publisher.disconnect()
    publisher.loop_stop()
    handed = topology.handed_to(topic, log_offset)
    writer = dict(zip(order, handed, strict=False))
    paths = [workdir / f"deliveries-{secrets.token_hex(4)}.json" for _ in clients.processes]
    clients.call([{"cmd": "dump", "path": str(path)} for path in paths])
    latency: dict[str, list[float]] = {"same": [], "other": [], "all": []}
    delivered, last_receive = 0, started
    for index, path in enumerate(paths):
        browser_on = index % topology.count
        for line, times in json.loads(path.read_text()).items():
            try:
                envelope = json.loads(line)
                student = envelope["data"]["student_id"]
            except (ValueError, KeyError, TypeError):
                continue
            if student not in sent_at or envelope.get("type") != "student_checkin":
                continue
            delivered += len(times)
            last_receive = max(last_receive, *times)
            values = [t - sent_at[student] for t in times]
            latency["all"].extend(values)
            if student in writer:
                latency["same" if writer[student] == browser_on else "other"].extend(values)
        path.unlink()
    clients.all({"cmd": "close"})
    window = max(last_receive - started, 1e-9)
    result = {
        "streams": sum(ready),
        "events": events,
        "rate": args.rate,
        "expected_deliveries": sum(ready) * events,
        "deliveries": delivered,
        "drain_end": drain_end,
        "scans_by_instance": [handed.count(i) for i in range(topology.count)],
        "scans_attributed": len(writer),
        "latency_ms_scan_to_browser": {kind: _ms(values) for kind, values in latency.items()},
        "deliveries_per_second": round(delivered / window),
        "instance_cpu_seconds": [round(value, 3) for value in cpu],
        "instance_cpu_ms_per_1000_deliveries": round(sum(cpu) / max(delivered, 1) * 1e6, 2),
        "load_client_cpu_seconds": round(client_cpu, 3),
    }
    same = result["latency_ms_scan_to_browser"]["same"]["p99"]
    other = result["latency_ms_scan_to_browser"]["other"]["p99"]
    if topology.count > 1 and same and other:
        result["p99_other_over_same"] = round(other / same, 3)
    _print_fanout(result)
    return result


def _print_fanout(r: dict[str, Any]) -> None:
    lat = r["latency_ms_scan_to_browser"]
    print(
        f"  fan-out: {r['events']} events at {r['rate']}/s to {r['streams']} streams:"
        f" delivered {r['deliveries']}/{r['expected_deliveries']} ({r['drain_end']});"
        f" scans per instance {r['scans_by_instance']}\n"
        f"    scan→browser all p50 {lat['all']['p50']} p99 {lat['all']['p99']} ms;"
        f" same instance p50 {lat['same']['p50']} p99 {lat['same']['p99']} (n={lat['same']['n']});"
        f" other instance p50 {lat['other']['p50']} p99 {lat['other']['p99']}"
        f" (n={lat['other']['n']})\n"
        f"    {r['deliveries_per_second']} deliveries/s; instance CPU {r['instance_cpu_seconds']} s"
        f" = {r['instance_cpu_ms_per_1000_deliveries']} ms per 1000 deliveries",
        flush=True,
    )
    if "p99_other_over_same" in r:
        print(
            f"    target p99 other ≤ {TARGET_P99_RATIO}× same: {r['p99_other_over_same']}×",
            flush=True,
        )


# --- 2. ingest ---------------------------------------------------------------------------------


class Transactions:
    """pg_stat_database.xact_commit of the topology's database, read once the counters settled.

    Backends flush their counters when idle, within ~10 s (PostgreSQL 15), so each reading
    waits `settle` seconds first. The idle rate (the tails' polls, pool pre-pings) is
    measured once, before any load, to report transactions per scan net of it too.
    """

    def __init__(self, database_url: str, settle: float) -> None:
        self.engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
        self.settle = settle
        first, first_at = self.read()
        self.last, self.last_at = self.read()
        self.idle_rate = (self.last - first) / (self.last_at - first_at)

    def read(self) -> tuple[int, float]:
        time.sleep(self.settle)
        return xact_commit(self.engine), time.monotonic()

    def since_last(self) -> tuple[int, float]:
        """Commits since the previous reading, and their count net of the idle rate."""
        now, now_at = self.read()
        raw = now - self.last
        net = raw - self.idle_rate * (now_at - self.last_at)
        self.last, self.last_at = now, now_at
        return raw, net

    def close(self) -> None:
        self.engine.dispose()


def ingest(
    topology: Topology,
    postgres: Postgres,
    transactions: Transactions,
    args: argparse.Namespace,
    *,
    count: int,
    rate: float,
) -> dict[str, Any]:
    """`count` scans from the emulated readers at `rate` per second (0: flat out)."""
    assert topology.broker is not None
    rows_before = _processed_rows(transactions.engine)
    cpu_before, pg_cpu_before = topology.cpu_seconds(), postgres.cpu_seconds()
    client_cpu_before = self_cpu_seconds()
    stats = run_load(
        data_from_import(topology.school),
        BrokerConfig.from_url(
            f"mqtt://{topology.broker.host}:{topology.broker.port}",
            prefix=topology.broker.prefix,
            credentials=topology.passwords,
        ),
        LoadOptions(devices=args.readers, rate=rate, count=count, timeout_seconds=600),
        # No resend storm during a flat-out burst (as bench/ingest.py), but a lost scan
        # comes back within the run; `resends` says whether that happened.
        reader_options=ReaderOptions(resend_after_seconds=30, max_resends=3),
    )
    cpu = [after - before for before, after in zip(cpu_before, topology.cpu_seconds(), strict=True)]
    pg_cpu_after = postgres.cpu_seconds()
    client_cpu = self_cpu_seconds() - client_cpu_before  # the emulated readers (this process)
    rows = _processed_rows(transactions.engine) - rows_before
    raw, net = transactions.since_last()
    scans = max(int(stats["acked"]), 1)
    pg_cpu = (
        round(pg_cpu_after - pg_cpu_before, 2)
        if pg_cpu_after is not None and pg_cpu_before is not None
        else None
    )
    result = {
        **stats,
        "offered_rate": rate or "flat out",
        "processed_scan_rows": int(rows),
        "instance_cpu_seconds": [round(value, 2) for value in cpu],
        "instance_cpu_ms_per_scan": round(sum(cpu) / scans * 1000, 3),
        "reader_emulation_cpu_seconds": round(client_cpu, 2),
        "postgres_cpu_seconds": pg_cpu,
        "postgres_cpu_ms_per_scan": None if pg_cpu is None else round(pg_cpu / scans * 1000, 3),
        "xact_commit_delta": raw,
        "idle_transactions_per_second": round(transactions.idle_rate, 2),
        "transactions_per_scan": round(raw / scans, 4),
        "transactions_per_scan_net_of_idle": round(net / scans, 4),
    }
    print(
        f"  ingest ({result['offered_rate']}): {result['acked']}/{result['sent']} scans"
        f" acknowledged, {result['scans_per_second']} scans/s end to end; feedback latency"
        f" {result['latency_ms']}; rows {result['processed_scan_rows']};"
        f" resends {result['resends']}\n"
        f"    instance CPU {result['instance_cpu_seconds']} s"
        f" ({result['instance_cpu_ms_per_scan']} ms/scan); PostgreSQL CPU {pg_cpu} s"
        f" ({result['postgres_cpu_ms_per_scan']} ms/scan); emulated readers' CPU"
        f" {result['reader_emulation_cpu_seconds']} s; transactions per scan"
        f" {result['transactions_per_scan']} (net of the idle"
        f" {result['idle_transactions_per_second']}/s:"
        f" {result['transactions_per_scan_net_of_idle']})",
        flush=True,
    )
    return result


# --- main --------------------------------------------------------------------------------------


def build_school(args: argparse.Namespace) -> dict[str, Any]:
    """bench/ingest.py's school (a reader per room) plus the fan-out phase's own students."""
    school = build_import_file(
        rooms=args.readers, students=2000, closed_rooms=0, password="bench-password"
    )
    events = round(args.rate * args.seconds)
    school["students"].extend(
        {
            "id": FIRST_FANOUT_STUDENT + seq,
            "first_name": "Fanout",
            "last_name": f"S{seq:05d}",
            "tag": "05%08X" % (0xB0000000 + seq),
            "ogs_group_id": 1,
        }
        for seq in range(events)
    )
    return school


def run_topology(
    count: int,
    postgres: Postgres,
    school: dict[str, Any],
    clients: LoadClients,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    print(f"[{count} instance(s)] load average {os.getloadavg()}", flush=True)
    with fresh_database(postgres.admin_url, school) as url:
        queue = max(args.count, round(args.paced_rate * args.paced_seconds)) + 1000
        topology = Topology(count, url, school, workdir, queue_size=queue)
        try:
            topology.start()
            result: dict[str, Any] = {"instances": count, "load_average_start": os.getloadavg()}
            result["fanout"] = fanout(topology, clients, args, workdir)
            transactions = Transactions(url, args.stats_settle_seconds)
            try:
                result["ingest"] = ingest(
                    topology, postgres, transactions, args, count=args.count, rate=0
                )
                result["ingest_paced"] = ingest(
                    topology,
                    postgres,
                    transactions,
                    args,
                    count=round(args.paced_rate * args.paced_seconds),
                    rate=args.paced_rate,
                )
            finally:
                transactions.close()
            result["load_average_end"] = os.getloadavg()
            return result
        finally:
            topology.stop()


def summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The capacity model's inputs, per instance."""
    out: dict[str, Any] = {}
    for name, run in runs.items():
        if "error" in run:
            continue
        count, fan, ing = run["instances"], run["fanout"], run["ingest"]
        cpu_per_delivery = fan["instance_cpu_ms_per_1000_deliveries"] / 1e6
        out[name] = {
            "scans_per_second": ing["scans_per_second"],
            "scans_per_second_per_instance": round(ing["scans_per_second"] / count, 1),
            "instance_cpu_ms_per_scan": ing["instance_cpu_ms_per_scan"],
            "scans_per_cpu_second": round(1000 / max(ing["instance_cpu_ms_per_scan"], 1e-9)),
            "deliveries_per_second_observed": fan["deliveries_per_second"],
            "deliveries_per_cpu_second": round(1 / max(cpu_per_delivery, 1e-12)),
            "transactions_per_scan": ing["transactions_per_scan"],
            "transactions_per_scan_net_of_idle": ing["transactions_per_scan_net_of_idle"],
            "paced_rate": run["ingest_paced"]["offered_rate"],
            "paced_scans_per_second": run["ingest_paced"]["scans_per_second"],
            "paced_feedback_latency_ms": run["ingest_paced"]["latency_ms"],
            "paced_instance_cpu_ms_per_scan": run["ingest_paced"]["instance_cpu_ms_per_scan"],
            "paced_transactions_per_scan": run["ingest_paced"]["transactions_per_scan"],
            "paced_transactions_per_scan_net_of_idle": run["ingest_paced"][
                "transactions_per_scan_net_of_idle"
            ],
            "p99_ms_same": fan["latency_ms_scan_to_browser"]["same"]["p99"],
            "p99_ms_other": fan["latency_ms_scan_to_browser"]["other"]["p99"],
            "p99_other_over_same": fan.get("p99_other_over_same"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL admin URL; default: a throwaway one")
    parser.add_argument("--count", type=int, default=20_000, help="ingest scans per topology")
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="fan-out scans per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="fan-out publishing time")
    parser.add_argument("--paced-rate", type=float, default=500.0, help="paced ingest, scans/s")
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--drain-seconds", type=float, default=30.0)
    parser.add_argument("--stats-settle-seconds", type=float, default=11.0)
    parser.add_argument("--topologies", default="1,2", help="instance counts, in order")
    parser.add_argument(
        "--quick", action="store_true", help="3000 scans, 200 streams, 5 s fan-out, 6 s paced"
    )
    args = parser.parse_args()
    if args.quick:
        args.count, args.streams, args.rate, args.seconds = 3000, 200, 40.0, 5.0
        args.paced_seconds = 6.0
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = Path(tempfile.mkdtemp(prefix="edge-bench-scale-"))
    results: dict[str, Any] = {"machine": machine(), "args": vars(args), "runs": {}}
    print(f"machine {results['machine']}; work dir {workdir}", flush=True)
    school = build_school(args)
    clients = LoadClients(2)
    try:
        with postgres_server(args.database_url) as postgres:
            for part in args.topologies.split(","):
                count = int(part)
                try:
                    results["runs"][str(count)] = run_topology(
                        count, postgres, school, clients, args, workdir
                    )
                except Exception as exc:
                    print(f"[{count} instance(s)] failed: {exc!r}"[:2000], flush=True)
                    results["runs"][str(count)] = {"error": repr(exc)[:2000]}
                    with contextlib.suppress(Exception):
                        clients.all({"cmd": "close"})
    finally:
        clients.exit()
    results["summary"] = summary(results["runs"])
    results["machine"]["load_average_end"] = os.getloadavg()
    print("summary:", json.dumps(results["summary"], indent=2), flush=True)
    print("written:", write_results("scale", results), flush=True)


if __name__ == "__main__":
    main()
