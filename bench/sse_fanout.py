"""SSE fan-out benchmark: our hub and endpoint vs naive sse-starlette vs nginx + nchan.

    .venv/bin/python bench/sse_fanout.py [--n 1000,5000,10000] [--rate 50] [--seconds 10]
                                         [--targets ours,baseline,nchan] [--quick] [--big]
                                         [--connect-n 5000] [--client-procs 1]
                                         [--profile | --profile-native]

`--quick`: N=100 and 1,000 with 4 s of publishing, plus the 5,000-stream connect run (about
4 minutes for all three targets); `--big` adds N=10,000 to whatever runs. The default run
takes about 15 minutes on 2 cores. `--connect-n`: a connect-only run per target (fresh server,
that many authenticated streams, connect time and memory per idle stream; 0 skips it).
`--profile` runs `py-spy record` (Python stacks, all
threads, without pausing the process) on `ours` while it connects and while it publishes, and
prints where the time goes; `--profile-native` adds C frames (write(), the garbage collector)
but pauses the process for every sample, so its timings are not comparable.

For each N and each target, in one invocation:
1. Start the server fresh: `ours` is `edge-bridge serve` (SQLite, Mosquitto) on the fixture
   school plus bench students; `baseline` is bench/baseline_sse_server.py under uvicorn (FastAPI
   + sse-starlette, an `asyncio.Queue` per client); `nchan` is nginx with one worker and
   libnginx-mod-nchan (config from bench/nchan.conf.template).
2. Open N SSE streams from a separate load-client process (bench/sse_load_client.py, raw
   asyncio protocols on uvloop), at most `--connect-window` not yet ready at a time. Connect
   time runs from the first connect to the last `connected` frame (nchan: its `: hi` comment).
   For `ours` every stream is Frau Schmidt's (staff 1, supervisor of active group 124),
   authenticated with a bearer JWT.
3. Memory per idle connection: server RSS after N idle streams minus before, divided by N.
4. Publish M = rate × seconds events at a fixed rate. `ours` gets them through the real path:
   RFID scans of distinct students on reader-101 via MQTT, each a `student_checkin` to group
   124. `baseline` and `nchan` get a POST per event with an envelope of the same shape and size,
   from a thread pool so that a server that answers slowly cannot lower the rate.
5. Wait until every delivery arrived (or no progress for `--stall-seconds`, or
   `--drain-seconds` after the last publish: then "lost" includes late ones), then report:
   latency publish→delivery and stamp→delivery (the envelope's `timestamp`: for `ours` the
   server's commit time, ms precision, truncated) p50/p99/max; deliveries/s; lost and duplicate
   deliveries; server CPU seconds per 1,000 deliveries; load-client CPU; streams the server
   closed. For `ours`, also how long SIGTERM takes with the N streams still open.

The rate is capped at `--max-deliveries-per-second` / N, so N=5,000 and 10,000 run the same
50,000 deliveries/s as 1,000 × 50/s. Results: stdout and bench/results/sse_fanout.json.
Nothing is asserted; targets are printed next to the numbers. The machine is shared: the load
average is printed and stored with every run.
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
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from string import Template
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from _harness import (
    ROOT,
    machine,
    percentile,
    process_cpu_seconds,
    process_rss_bytes,
    server_pid,
    start_bridge,
    start_broker,
    write_results,
)
from paho.mqtt.enums import CallbackAPIVersion

from edge_bridge.tokens import issue_token
from edge_bridge.wire import Topics, format_ts
from tests.support.broker import Broker, free_port

BENCH = Path(__file__).resolve().parent
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
STAFF_ID = 1  # Frau Schmidt supervises active group 124 in room 1 (reader-101)
GROUP_ID = 124
READER = "reader-101"
FIRST_BENCH_STUDENT = 100_001
TARGETS = {"p99_ms_at_1000x50": 30.0, "bytes_per_idle_connection": 16 * 1024}


# --- servers ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in path.read_text().split()]
    except OSError:
        return []


def _envelope(seq: int, timestamp: str) -> str:
    """What `ours` sends for a bench student's check-in, for the references to carry."""
    body = {
        "type": "student_checkin",
        "active_group_id": str(GROUP_ID),
        "data": {
            "student_id": str(FIRST_BENCH_STUDENT + seq),
            "student_name": f"Bench S{seq:05d}",
            "room_id": "1",
            "room_name": "Raum 101",
            "activity_name": "Hausaufgaben",
            "source": "rfid",
            "ogs_group_id": "7",
        },
        "timestamp": timestamp,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class Target:
    """A server under test: where to connect, how to publish, which processes to measure."""

    name = ""
    marker = "event: connected"
    path = "/"
    headers: dict[str, str]

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.headers = {}

    def start(self, events: int) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def publish(self, seq: int) -> None:
        raise NotImplementedError

    def published(self) -> int:
        """Wait until every publish went out; how many failed."""
        poster = getattr(self, "poster", None)
        return poster.wait() if poster is not None else 0

    def stop(self) -> float | None:
        """Stop the server; seconds it took to exit after SIGTERM, if measured."""
        raise NotImplementedError

    def request(self) -> str:
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        return "\r\n".join(lines) + "\r\n\r\n"

    def cpu_seconds(self) -> float:
        return sum(_safe(process_cpu_seconds, pid) for pid in self.pids())

    def rss_bytes(self) -> int:
        return sum(_safe(process_rss_bytes, pid) for pid in self.pids())


def _safe(reading: Any, pid: int) -> Any:
    try:
        return reading(pid)
    except OSError:
        return 0


class Ours(Target):
    """`edge-bridge serve`: scans over MQTT → store → event log → hub → SSE."""

    name = "ours"
    path = "/api/sse/events"

    def start(self, events: int) -> None:
        school = json.loads((ROOT / "tests" / "fixtures" / "school.json").read_text())
        for seq in range(events):
            school["students"].append(
                {
                    "id": FIRST_BENCH_STUDENT + seq,
                    "first_name": "Bench",
                    "last_name": f"S{seq:05d}",
                    "tag": "05%08X" % (0xB0000000 + seq),
                    "ogs_group_id": 7,
                }
            )
        self.tags = [s["tag"] for s in school["students"][-events:]] if events else []
        users = {"edge-bridge": secrets.token_urlsafe(8), READER: secrets.token_urlsafe(8)}
        self.broker: Broker = start_broker(
            self.workdir, prefix=f"bench-{uuid.uuid4().hex[:6]}", users=users
        )
        self.server, _url, secret = start_bridge(
            self.workdir,
            broker=self.broker,
            bridge_password=users["edge-bridge"],
            school=school,
            # every stream is Frau Schmidt's: lift the per-staff limit (10 by default)
            env={"SSE_MAX_STREAMS_PER_STAFF": "100000"},
        )
        self.port = self.server.port
        token = issue_token(STAFF_ID, school_id=1, secret=secret, ttl_seconds=3600)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.topic = Topics(self.broker.prefix).scan(READER)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=READER, protocol=mqtt.MQTTv5)
        client.username_pw_set(READER, users[READER])
        client.max_inflight_messages_set(1000)
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        self.mqtt = client

    def pids(self) -> list[int]:
        return [server_pid(self.server)]

    def publish(self, seq: int) -> None:
        body = {"scan_id": uuid.uuid4().hex, "tag": self.tags[seq], "ts": format_ts(_utcnow())}
        self.mqtt.publish(self.topic, json.dumps(body), qos=1)

    def stop(self) -> float | None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()
        try:
            return self.server.stop(timeout_seconds=15)
        except Exception as exc:
            print(f"  ours: stop failed: {str(exc)[:300]}", flush=True)
            self.server.kill()
            return None
        finally:
            self.broker.stop()


class Baseline(Target):
    """bench/baseline_sse_server.py under uvicorn (uvloop + httptools, like ours)."""

    name = "baseline"
    path = "/events"

    def start(self, events: int) -> None:
        self.port = free_port()
        log = (self.workdir / f"baseline-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(BENCH),
                "baseline_sse_server:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backlog",
                "16384",
                "--log-level",
                "warning",
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "3",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        _wait_http(f"http://127.0.0.1:{self.port}/stats", self.process)
        self.poster = Poster(f"http://127.0.0.1:{self.port}/publish")

    def pids(self) -> list[int]:
        return [self.process.pid]

    def publish(self, seq: int) -> None:
        self.poster.post(_envelope(seq, format_ts(_utcnow())))

    def stop(self) -> float | None:
        self.poster.close()
        return _terminate(self.process)


class Nchan(Target):
    """nginx, one worker, nchan: `/sub` (EventSource) and `/pub` (POST one message)."""

    name = "nchan"
    path = "/sub"
    marker = ": hi"

    def start(self, events: int) -> None:
        self.port = free_port()
        directory = self.workdir / f"nchan-{self.port}"
        (directory / "tmp").mkdir(parents=True)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        config = Template((BENCH / "nchan.conf.template").read_text()).substitute(
            module=NCHAN_MODULE,
            user_line="user root;" if os.geteuid() == 0 else "",
            nofile=nofile,
            dir=directory,
            port=self.port,
            backlog=16384,
        )
        (directory / "nginx.conf").write_text(config)
        self.process = subprocess.Popen(
            [
                "nginx",
                "-c",
                str(directory / "nginx.conf"),
                "-p",
                str(directory),
                "-e",
                str(directory / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(directory / "stderr.log").open("ab"),
            stdin=subprocess.DEVNULL,
        )
        self.poster = Poster(f"http://127.0.0.1:{self.port}/pub")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                up = self.poster.http.get(self.poster.url).status_code < 500
                if up and _children(self.process.pid):
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        msg = f"nginx did not start: {(directory / 'error.log').read_text()[-2000:]}"
        raise RuntimeError(msg)

    def pids(self) -> list[int]:
        return [self.process.pid, *_children(self.process.pid)]

    def publish(self, seq: int) -> None:
        self.poster.post(_envelope(seq, format_ts(_utcnow())))

    def stop(self) -> float | None:
        self.poster.close()
        return _terminate(self.process, sig=signal.SIGQUIT)


class Poster:
    """POSTs from a thread pool, so a busy server cannot slow the publishing rate down."""

    def __init__(self, url: str, threads: int = 16) -> None:
        self.url = url
        self.http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=threads))
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="poster")
        self.pending: list[Future[None]] = []
        self.durations: list[float] = []  # submit → response, seconds

    def post(self, body: str) -> None:
        self.pending.append(self.pool.submit(self._post, body.encode(), time.time()))

    def _post(self, body: bytes, submitted: float) -> None:
        self.http.post(self.url, content=body).raise_for_status()
        self.durations.append(time.time() - submitted)

    def wait(self) -> int:
        """Wait for every POST; how many failed."""
        failed = sum(1 for future in self.pending if future.exception() is not None)
        self.pending.clear()
        return failed

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()


def _utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"{url}: server exited with {process.returncode}"
            raise RuntimeError(msg)
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    msg = f"{url} not up within {timeout} s"
    raise RuntimeError(msg)


def _terminate(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> float | None:
    started = time.monotonic()
    process.send_signal(sig)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        return None
    return time.monotonic() - started


# --- load client -----------------------------------------------------------------------------


class LoadClients:
    """`procs` bench/sse_load_client.py processes; commands go to all of them at once."""

    def __init__(self, procs: int) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(BENCH / "sse_load_client.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            for _ in range(procs)
        ]

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def cpu_seconds(self) -> list[float]:
        return [process_cpu_seconds(pid) for pid in self.pids()]

    def call(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for process, command in zip(self.processes, commands, strict=True):
            assert process.stdin is not None
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()
        answers = []
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                msg = f"load client {process.pid} exited ({process.poll()})"
                raise RuntimeError(msg)
            answer = json.loads(line)
            if "error" in answer:
                msg = f"load client {process.pid}: {answer['error']}"
                raise RuntimeError(msg)
            answers.append(answer)
        return answers

    def all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return self.call([command] * len(self.processes))

    def connect(self, target: Target, count: int, window: int) -> dict[str, Any]:
        procs = len(self.processes)
        shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
        base = {
            "cmd": "connect",
            "host": "127.0.0.1",
            "port": target.port,
            "request": target.request(),
            "marker": target.marker,
            "timeout": 60,
        }
        answers = self.call(
            [
                {**base, "count": share, "window": max(1, window * share // max(count, 1))}
                for share in shares
            ]
        )
        errors: Counter[str] = Counter()
        for answer in answers:
            errors.update(answer["errors"])
        last = [a["last_ready"] for a in answers if a["last_ready"] is not None]
        started = min(a["started"] for a in answers)
        return {
            "ready": sum(a["ready"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "errors": dict(errors),
            "first_failure": next((a["first_failure"] for a in answers if a["first_failure"]), ""),
            "seconds": round(max(last) - started, 3) if last else None,
        }

    def progress(self) -> dict[str, int]:
        answers = self.all({"cmd": "progress"})
        return {key: sum(a[key] for a in answers) for key in answers[0]}

    def dump(self, directory: Path) -> dict[str, list[float]]:
        paths = [directory / f"deliveries-{secrets.token_hex(4)}.json" for _ in self.processes]
        self.call([{"cmd": "dump", "path": str(path)} for path in paths])
        merged: dict[str, list[float]] = {}
        for path in paths:
            for line, times in json.loads(path.read_text()).items():
                merged.setdefault(line, []).extend(times)
            path.unlink()
        return merged

    def exit(self) -> None:
        for process in self.processes:
            with contextlib.suppress(OSError, ValueError):
                assert process.stdin is not None
                process.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


# --- one run ---------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    ms = [value * 1000 for value in values]
    return {
        "p50": round(percentile(ms, 0.50), 2),
        "p99": round(percentile(ms, 0.99), 2),
        "max": round(max(ms, default=float("nan")), 2),
    }


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _profile_start(pid: int, path: Path, *, native: bool) -> subprocess.Popen[bytes] | None:
    """py-spy record on `pid` until `_profile_stop` (collapsed stacks, all threads)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("  py-spy not found: pip install py-spy", flush=True)
        return None
    command = [py_spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
    # --native must pause the process to unwind C stacks; without it, sample without pausing.
    command += ["--threads", "-o", str(path), "--native" if native else "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _profile_stop(
    profile: subprocess.Popen[bytes] | None, path: Path, label: str, *, native: bool
) -> dict[str, Any] | None:
    if profile is None:
        return None
    profile.send_signal(signal.SIGINT)
    try:
        profile.wait(30)
    except subprocess.TimeoutExpired:
        profile.kill()
        return None
    if not path.exists():
        print(f"    py-spy ({label}) wrote nothing (exit {profile.returncode})", flush=True)
        return None
    # Native mode cannot tell idle threads from busy ones: count only the event loop's thread.
    summary = summarize_profile(path, thread="MainThread" if native else "")
    summary["path"] = str(path)
    summary["native"] = native
    _print_profile(summary, label)
    return summary


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def summarize_profile(path: Path, top: int = 20, thread: str = "") -> dict[str, Any]:
    """Self and inclusive shares per function from py-spy's collapsed (`raw`) stacks.

    With `thread`, only stacks of threads whose name contains it count (py-spy `--threads`).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for row in path.read_text().splitlines():
        stack, _, count_text = row.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if thread and not any(f.startswith("thread ") and thread in f for f in frames):
            continue
        total += count
        functions = []
        for frame in frames:
            if frame.startswith(("process ", "thread ")):
                if frame.startswith("thread "):
                    threads[frame] += count
                continue
            match = _FRAME.match(frame)
            name = frame
            if match:
                file = match["file"].split("site-packages/")[-1].split("/main/")[-1]
                name = f"{match['func']} ({file})"
            if not name.startswith("0x"):  # unresolved native address
                functions.append(name)
        if functions:
            own[functions[-1]] += count
            for name in set(functions):
                inclusive[name] += count

    def share(counter: Counter[str], skip_root: bool = False) -> list[tuple[str, float]]:
        rows = counter.most_common()
        if skip_root:  # the frames every sample shares (runpy, uvicorn.run, the loop) say nothing
            rows = [(name, n) for name, n in rows if n < 0.97 * total]
        return [(name, round(100 * n / total, 1)) for name, n in rows[:top]]

    return {
        "samples": total,
        "threads": share(threads),
        "self_percent": share(own),
        "inclusive_percent": share(inclusive, skip_root=True),
    }


def run_one(
    target: Target,
    clients: LoadClients,
    *,
    n: int,
    rate: float,
    events: int,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "target": target.name,
        "n": n,
        "rate": rate,
        "events": events,
        "load_average_start": os.getloadavg(),
    }
    print(f"[{target.name} N={n}] starting, load average {os.getloadavg()}", flush=True)
    target.start(events)
    stopped = False
    try:
        # Warm-up: the first streams load code paths lazily; keep that out of the RSS delta.
        warm_up = clients.connect(target, min(20, n), window=20)
        if not warm_up["ready"]:
            msg = f"warm-up streams failed: {warm_up['errors']} {warm_up['first_failure']!r}"
            raise RuntimeError(msg)
        clients.all({"cmd": "close"})
        time.sleep(1.0)
        rss_before = target.rss_bytes()
        profiling = (args.profile or args.profile_native) and target.name == "ours"
        native = args.profile_native
        profile_path = workdir / f"profile-{target.name}-{n}-connect.txt"
        profile = (
            _profile_start(target.pids()[0], profile_path, native=native) if profiling else None
        )
        connect = clients.connect(target, n, window=args.connect_window)
        result["connect"] = connect
        print(
            f"[{target.name} N={n}] {connect['ready']} streams ready in {connect['seconds']} s"
            f" (failed {connect['failed']} {connect['errors'] or ''})",
            flush=True,
        )
        if connect["failed"]:
            print(f"  first failure: {connect['first_failure'][:300]!r}", flush=True)
        if not connect["ready"]:
            msg = f"no stream became ready: {connect['errors']}"
            raise RuntimeError(msg)
        result["profile_connect"] = _profile_stop(profile, profile_path, "connect", native=native)
        cpu_idle_start = target.cpu_seconds()
        time.sleep(args.idle_seconds)
        idle_cpu = target.cpu_seconds() - cpu_idle_start
        rss_idle = target.rss_bytes()
        ready = connect["ready"]
        result["rss_before_bytes"] = rss_before
        result["rss_idle_bytes"] = rss_idle
        result["bytes_per_idle_connection"] = round((rss_idle - rss_before) / max(ready, 1))
        result["idle_cpu_seconds_per_second"] = round(idle_cpu / args.idle_seconds, 3)
        print(
            f"[{target.name} N={n}] RSS {rss_before / 2**20:.1f} → {rss_idle / 2**20:.1f} MiB:"
            f" {result['bytes_per_idle_connection'] / 1024:.1f} KiB per idle stream;"
            f" idle CPU {result['idle_cpu_seconds_per_second']} s/s",
            flush=True,
        )

        clients.all({"cmd": "record", "on": True})
        expected_total = ready * events
        profile_path = workdir / f"profile-{target.name}-{n}-publish.txt"
        profile = (
            _profile_start(target.pids()[0], profile_path, native=native) if profiling else None
        )
        cpu_server_0, cpu_client_0 = target.cpu_seconds(), clients.cpu_seconds()
        sent_at: dict[str, float] = {}
        publish_errors = 0
        started = time.time()
        for seq in range(events):
            delay = started + seq / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            sent_at[str(FIRST_BENCH_STUDENT + seq)] = time.time()
            try:
                target.publish(seq)
            except Exception as exc:
                publish_errors += 1
                if publish_errors == 1:
                    print(f"  publish failed: {exc!r}", flush=True)
        last_publish = time.time()
        publish_errors += target.published()
        poster = getattr(target, "poster", None)
        if poster is not None:
            result["publish_call_ms"] = _stats(poster.durations)
            print(f"  POST /publish took {result['publish_call_ms']} ms", flush=True)
            poster.durations.clear()
        result["publish_seconds"] = round(last_publish - started, 3)
        result["publish_errors"] = publish_errors

        # Drain: until everything arrived, nothing moved for a while, or the deadline.
        deadline = last_publish + args.drain_seconds
        seen, last_change = -1, time.time()
        progress = clients.progress()
        drain_end = "deadline"
        while time.time() < deadline:
            progress = clients.progress()
            if progress["deliveries"] >= expected_total:
                drain_end = "complete"
                break
            if progress["deliveries"] != seen:
                seen, last_change = progress["deliveries"], time.time()
            elif time.time() - last_change > args.stall_seconds:
                drain_end = "stalled"
                break
            time.sleep(0.2)
        drained = time.time()
        # "deadline": still arriving when we stopped waiting, so "lost" counts late ones too.
        result["drain_end"] = drain_end
        cpu_server = target.cpu_seconds() - cpu_server_0
        cpu_clients = [b - a for a, b in zip(cpu_client_0, clients.cpu_seconds(), strict=True)]
        clients.all({"cmd": "record", "on": False})
        result["profile_publish"] = _profile_stop(profile, profile_path, "publish", native=native)
        result["streams_closed_by_server"] = progress["lost_unexpectedly"]

        deliveries = clients.dump(workdir)
        per_event: dict[str, int] = {}
        publish_latency: list[float] = []
        stamp_latency: list[float] = []
        last_receive = started
        other_lines = 0
        for line, times in deliveries.items():
            try:
                envelope = json.loads(line)
                key = envelope["data"]["student_id"]
            except (ValueError, KeyError, TypeError):
                other_lines += len(times)
                continue
            if key not in sent_at or envelope.get("type") != "student_checkin":
                other_lines += len(times)
                continue
            per_event[key] = per_event.get(key, 0) + len(times)
            sent = sent_at[key]
            stamp = _parse_ts(envelope["timestamp"])
            publish_latency.extend(t - sent for t in times)
            stamp_latency.extend(t - stamp for t in times)
            last_receive = max(last_receive, max(times))
        delivered = sum(per_event.values())
        lost = sum(max(0, ready - per_event.get(key, 0)) for key in sent_at)
        duplicates = sum(max(0, count - ready) for count in per_event.values())
        window = max(last_receive - started, 1e-9)
        result.update(
            {
                "expected_deliveries": expected_total,
                "deliveries": delivered,
                "lost_deliveries": lost,
                "duplicate_deliveries": duplicates,
                "other_frames": other_lines,
                "events_never_seen": sum(1 for key in sent_at if key not in per_event),
                "latency_ms_publish_to_delivery": _stats(publish_latency),
                "latency_ms_stamp_to_delivery": _stats(stamp_latency),
                "deliveries_per_second": round(delivered / window),
                "seconds_behind_at_end": round(max(0.0, last_receive - last_publish), 3),
                "drain_wait_seconds": round(drained - last_publish, 3),
                "server_cpu_seconds": round(cpu_server, 3),
                "server_cpu_seconds_per_1000_deliveries": round(
                    cpu_server / max(delivered, 1) * 1000, 5
                ),
                "client_cpu_seconds": round(sum(cpu_clients), 3),
                # the busiest load-client process, as a share of one core
                "client_cpu_share_of_wall": round(
                    max(cpu_clients) / (max(last_receive, last_publish) - started), 3
                ),
                "load_average_end": os.getloadavg(),
            }
        )
        _print_run(result)
        if target.name == "ours":
            stopped = True
            result["shutdown_seconds_with_open_streams"] = target.stop()
            print(
                f"[ours N={n}] SIGTERM with {ready} open streams: exited in"
                f" {result['shutdown_seconds_with_open_streams']} s",
                flush=True,
            )
        clients.all({"cmd": "close"})
    finally:
        if not stopped:
            target.stop()
    return result


def _print_run(r: dict[str, Any]) -> None:
    pub, stamp = r["latency_ms_publish_to_delivery"], r["latency_ms_stamp_to_delivery"]
    print(
        f"[{r['target']} N={r['n']}] {r['events']} events at {r['rate']}/s:"
        f" delivered {r['deliveries']}/{r['expected_deliveries']}"
        f" lost {r['lost_deliveries']}"
        f"{' (drain deadline hit: includes late ones)' if r['drain_end'] == 'deadline' else ''}"
        f" dup {r['duplicate_deliveries']}"
        f" closed-by-server {r['streams_closed_by_server']}\n"
        f"    latency publish→delivery p50 {pub['p50']} p99 {pub['p99']} max {pub['max']} ms;"
        f" stamp→delivery p50 {stamp['p50']} p99 {stamp['p99']} max {stamp['max']} ms\n"
        f"    {r['deliveries_per_second']} deliveries/s, {r['seconds_behind_at_end']} s behind"
        f" at the end; server CPU {r['server_cpu_seconds']} s"
        f" = {r['server_cpu_seconds_per_1000_deliveries'] * 1000:.1f} ms per 1000 deliveries;"
        f" load client CPU {r['client_cpu_seconds']} s (busiest process"
        f" {r['client_cpu_share_of_wall']:.0%} of a core); load average {r['load_average_end']}",
        flush=True,
    )
    if r["streams_closed_by_server"]:
        print(
            f"    NOTE: the server closed {r['streams_closed_by_server']} streams (slow/behind);"
            " a browser would reconnect with Last-Event-ID and replay. Deliveries stop on"
            " closed streams, so CPU per delivery is inflated."
        )
    if r["client_cpu_share_of_wall"] > 0.8:
        print("    WARNING: the load client was near a full core; numbers are client-bound")


def _print_profile(profile: dict[str, Any], label: str) -> None:
    print(f"    py-spy ({label}): {profile['samples']} samples; threads {profile['threads'][:4]}")
    print("    self %:")
    for name, pct in profile["self_percent"][:15]:
        print(f"      {pct:5.1f}  {name}")
    print("    inclusive % (below the common root):")
    for name, pct in profile["inclusive_percent"]:
        print(f"      {pct:5.1f}  {name}")


# --- comparison ------------------------------------------------------------------------------


_COMPARED = [
    ("p50 ms", lambda r: r["latency_ms_publish_to_delivery"]["p50"]),
    ("p99 ms", lambda r: r["latency_ms_publish_to_delivery"]["p99"]),
    ("stamp p99 ms", lambda r: r["latency_ms_stamp_to_delivery"]["p99"]),
    ("deliveries/s", lambda r: r["deliveries_per_second"]),
    ("lost", lambda r: r["lost_deliveries"]),
    ("KiB/idle conn", lambda r: round(r["bytes_per_idle_connection"] / 1024, 2)),
    ("CPU ms/1000 del", lambda r: round(r["server_cpu_seconds_per_1000_deliveries"] * 1000, 2)),
    ("connect s", lambda r: r["connect"]["seconds"]),
    ("client CPU share", lambda r: r["client_cpu_share_of_wall"]),
]


def compare(runs: dict[str, dict[str, Any]], n: int) -> dict[str, Any]:
    """Print one table for N and return our ratios to the references."""
    names = [name for name in ("ours", "baseline", "nchan") if name in runs]
    print(f"\n=== N={n} ===")
    print(f"{'':18}" + "".join(f"{name:>12}" for name in names) + "  ours/baseline  ours/nchan")
    ratios: dict[str, Any] = {}
    for label, get in _COMPARED:
        values = {name: get(runs[name]) for name in names}
        row = f"{label:18}" + "".join(f"{values[name]!s:>12}" for name in names)
        for ref in ("baseline", "nchan"):
            if "ours" in values and ref in values:
                ours, other = values["ours"], values[ref]
                ratio = round(ours / other, 3) if other and ours is not None else None
                ratios.setdefault(f"ours/{ref}", {})[label] = ratio
                row += f"{ratio!s:>15}" if ref == "baseline" else f"{ratio!s:>12}"
        print(row)
    if "ours" in runs:
        ours = runs["ours"]
        p99 = ours["latency_ms_publish_to_delivery"]["p99"]
        print("targets (ours):")
        if n == 1000:
            print(
                f"  p99 < 30 ms with zero loss at 1000×50/s: p99 {p99} ms,"
                f" lost {ours['lost_deliveries']} (rate {ours['rate']}/s)"
            )
        print(f"  ≤ 16 KiB per idle connection: {ours['bytes_per_idle_connection'] / 1024:.1f} KiB")
        if "baseline" in runs:
            cpu_ratio = ratios.get("ours/baseline", {}).get("CPU ms/1000 del")
            print(f"  CPU per 1000 deliveries ≤ 1/3 of baseline: ratio {cpu_ratio}")
        print(
            f"  {n} streams held: {ours['connect']['ready']} ready, connected in"
            f" {ours['connect']['seconds']} s (5000 in < 2 s)"
        )
    return ratios


def connect_only(
    names: list[str],
    classes: dict[str, type[Target]],
    clients: LoadClients,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    """Per target, a fresh server and `--connect-n` streams (ours: authenticated with a
    bearer JWT): how long until all are ready, memory per idle stream, the ratios."""
    n = args.connect_n
    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        target = classes[name](workdir)
        try:
            target.start(1)
            clients.connect(target, min(20, n), window=20)
            clients.all({"cmd": "close"})
            time.sleep(1.0)
            rss_before = target.rss_bytes()
            cpu_client_0 = clients.cpu_seconds()
            connect = clients.connect(target, n, window=args.connect_window)
            cpu_clients = [b - a for a, b in zip(cpu_client_0, clients.cpu_seconds(), strict=True)]
            time.sleep(args.idle_seconds)
            ready = max(connect["ready"], 1)
            runs[name] = {
                "connect": connect,
                "bytes_per_idle_connection": round((target.rss_bytes() - rss_before) / ready),
                "client_cpu_seconds": round(sum(cpu_clients), 3),
            }
            print(
                f"[{name} connect-only N={n}] {connect['ready']} ready in"
                f" {connect['seconds']} s (failed {connect['failed']});"
                f" {runs[name]['bytes_per_idle_connection'] / 1024:.1f} KiB per idle stream;"
                f" load client CPU {runs[name]['client_cpu_seconds']} s",
                flush=True,
            )
            clients.all({"cmd": "close"})
        except Exception as exc:
            print(f"[{name} connect-only N={n}] failed: {exc!r}", flush=True)
            runs[name] = {"error": repr(exc)}
            with contextlib.suppress(Exception):
                clients.all({"cmd": "close"})
        finally:
            target.stop()
    ok = {name: run for name, run in runs.items() if "error" not in run}
    print(f"\n=== connect only, N={n} ===")
    ratios: dict[str, Any] = {}
    rows = [
        ("connect s", lambda r: r["connect"]["seconds"]),
        ("KiB/idle conn", lambda r: round(r["bytes_per_idle_connection"] / 1024, 2)),
        ("client CPU s", lambda r: r["client_cpu_seconds"]),
    ]
    order = [name for name in ("ours", "baseline", "nchan") if name in ok]
    print(f"{'':18}" + "".join(f"{name:>12}" for name in order) + "  ours/baseline  ours/nchan")
    for label, get in rows:
        values = {name: get(ok[name]) for name in order}
        row = f"{label:18}" + "".join(f"{values[name]!s:>12}" for name in order)
        for ref in ("baseline", "nchan"):
            if "ours" in values and ref in values:
                ours, other = values["ours"], values[ref]
                ratio = round(ours / other, 3) if other and ours is not None else None
                ratios.setdefault(f"ours/{ref}", {})[label] = ratio
                row += f"{ratio!s:>15}" if ref == "baseline" else f"{ratio!s:>12}"
        print(row)
    if "ours" in ok:
        print(f"  target: {n} authenticated streams in ≤ 2 s: {ok['ours']['connect']['seconds']} s")
    return {"n": n, "runs": runs, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="1000,5000,10000", help="comma-separated stream counts")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing time per run")
    parser.add_argument("--max-deliveries-per-second", type=float, default=50_000.0)
    parser.add_argument("--targets", default="ours,baseline,nchan")
    parser.add_argument("--client-procs", type=int, default=1, help="load-client processes")
    parser.add_argument("--connect-window", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    parser.add_argument("--drain-seconds", type=float, default=60.0)
    parser.add_argument("--stall-seconds", type=float, default=5.0)
    parser.add_argument("--profile", action="store_true", help="py-spy: ours, all threads")
    parser.add_argument(
        "--profile-native", action="store_true", help="py-spy --native: ours, event-loop thread"
    )
    parser.add_argument("--quick", action="store_true", help="N=100,1000, 4 s of publishing")
    parser.add_argument("--big", action="store_true", help="add N=10,000")
    parser.add_argument(
        "--connect-n", type=int, default=5000, help="connect-only run with this many streams"
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.seconds, args.drain_seconds = "100,1000", 4.0, 30.0
    ns = [int(part) for part in args.n.split(",") if part.strip()]
    if args.big and 10_000 not in ns:
        ns.append(10_000)
    names = [part.strip() for part in args.targets.split(",") if part.strip()]
    if "nchan" in names and (shutil.which("nginx") is None or not NCHAN_MODULE.exists()):
        print("nginx or libnginx-mod-nchan missing: skipping nchan", flush=True)
        names.remove("nchan")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if max(ns) + 100 > hard:
        print(f"WARNING: RLIMIT_NOFILE hard limit {hard} is below N={max(ns)}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="edge-bench-sse-"))
    results: dict[str, Any] = {"machine": machine(), "args": vars(args), "runs": {}, "ratios": {}}
    print(f"machine {results['machine']}; work dir {workdir}", flush=True)
    classes = {"ours": Ours, "baseline": Baseline, "nchan": Nchan}
    clients = LoadClients(args.client_procs)
    try:
        for n in ns:
            rate = min(args.rate, args.max_deliveries_per_second / n)
            events = max(1, round(rate * args.seconds))
            runs: dict[str, dict[str, Any]] = {}
            for name in names:
                try:
                    runs[name] = run_one(
                        classes[name](workdir),
                        clients,
                        n=n,
                        rate=rate,
                        events=events,
                        args=args,
                        workdir=workdir,
                    )
                except Exception as exc:
                    print(f"[{name} N={n}] failed: {exc!r}", flush=True)
                    runs[name] = {"error": repr(exc)}
                    with contextlib.suppress(Exception):
                        clients.all({"cmd": "close"})
            results["runs"][str(n)] = runs
            ok = {name: run for name, run in runs.items() if "error" not in run}
            results["ratios"][str(n)] = compare(ok, n)
        if args.connect_n:
            results["connect_only"] = connect_only(names, classes, clients, args, workdir)
    finally:
        clients.exit()
    results["machine"]["load_average_end"] = os.getloadavg()
    print("written:", write_results("sse_fanout", results), flush=True)


if __name__ == "__main__":
    main()
