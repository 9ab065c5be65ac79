"""`python -m simulator` / `edge-sim`: run an afternoon, send one scan, generate load, make data.

Exit codes: `run` 0 when every scan was answered as predicted, 1 otherwise, 128 + the signal
number when SIGINT or SIGTERM stopped it (`run --loop` ends only so); `scan` 0 on a success
result (duplicate included), 1 on unknown_tag / no_active_group / rejected, 2 when no answer
came; `load` 0 when every scan was answered; 2 for unusable input everywhere.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simulator.afternoon import RunOptions, run_afternoon
from simulator.broker import DEFAULT_MQTT_URL, BrokerConfig, BrokerConfigError, load_credentials
from simulator.data import DataError, SimData, build_import_file, load_api_data, load_import_file
from simulator.display import Display, format_feedback, use_color
from simulator.load import LoadOptions, run_load
from simulator.oneshot import EXIT_TIMEOUT, exit_code_for, send_one_scan
from simulator.reader import ReaderOptions
from simulator.scenario import PlanOptions, ScenarioError, build_plan

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
            stream=sys.stderr,
        )
        return int(args.command(args))
    except (DataError, ScenarioError, BrokerConfigError, ValueError) as exc:
        print(f"edge-sim: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    data = _load_data(args)
    present = _read_model(args.initial_model) if args.initial_model else None
    broker = _broker(args)
    display = Display(color=False if args.no_color else None, quiet=args.quiet)
    options = RunOptions(
        speed=args.speed,
        connect_timeout_seconds=args.connect_timeout,
        reader=_reader_options(args),
    )
    ok = True
    with _stopped_by_signals() as stopped:
        for number in itertools.count() if args.loop else range(1):
            plan = build_plan(data, _plan_options(args, seed=args.seed + number), present=present)
            display.room_names = {d.id: d.room_name for d in plan.devices}
            if args.loop:
                print(f"Afternoon {number + 1} (seed {args.seed + number})", flush=True)
            report = run_afternoon(plan, broker, options=options, sink=display, stop=stopped)
            if stopped.is_set():
                print(f"edge-sim: stopped after {report.sent} scans", file=sys.stderr)
                return 128 + (stopped.signum or signal.SIGINT)
            display.show_summary(report)
            if args.model_out:
                _write_json(args.model_out, {"present": dict(report.present)})
            if args.summary_out:
                _write_json(args.summary_out, report.to_dict())
            ok = ok and report.ok
            present = report.present
    return 0 if ok else 1


def _plan_options(args: argparse.Namespace, *, seed: int) -> PlanOptions:
    return PlanOptions(
        devices=args.devices,
        students=args.students,
        duration_seconds=args.duration,
        rate=args.rate,
        seed=seed,
        debounce_seconds=args.debounce,
        flaky=args.flaky,
    )


class _StopEvent(threading.Event):
    """Set by SIGINT or SIGTERM; remembers which."""

    signum: int | None = None


@contextmanager
def _stopped_by_signals() -> Iterator[_StopEvent]:
    """An event that SIGINT and SIGTERM set (instead of killing the run), so the readers
    still say goodbye (retained `online: false`) before the process ends."""
    stopped = _StopEvent()

    def handle(signum: int, _frame: object) -> None:
        stopped.signum = signum
        stopped.set()

    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _scan(args: argparse.Namespace) -> int:
    feedback = send_one_scan(
        args.device,
        args.tag,
        _broker(args),
        timeout_seconds=args.timeout,
        options=_reader_options(args),
    )
    if feedback is None:
        print(f"{args.device}: no feedback within {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    color = use_color(sys.stdout, no_color=args.no_color)
    print(format_feedback(feedback, color=color))
    return exit_code_for(feedback.result)


def _load(args: argparse.Namespace) -> int:
    stats = run_load(
        _load_data(args),
        _broker(args),
        LoadOptions(
            devices=args.devices,
            rate=args.rate,
            count=args.count,
            seed=args.seed,
            timeout_seconds=args.timeout,
        ),
        reader_options=_reader_options(args),
    )
    print(json.dumps(stats, indent=2))
    return 0 if stats["acked"] == stats["sent"] else 1


def _make_data(args: argparse.Namespace) -> int:
    raw = build_import_file(
        rooms=args.rooms,
        students=args.students,
        seed=args.seed,
        closed_rooms=args.closed_rooms,
        password=args.staff_password,
    )
    if args.out:
        _write_json(args.out, raw)
    else:
        print(json.dumps(raw, indent=2, ensure_ascii=False))
    return 0


def _load_data(args: argparse.Namespace) -> SimData:
    if args.data:
        return load_import_file(args.data)
    if args.api:
        if not args.token:
            msg = "--api needs --token (an admin access token) or EDGE_SIM_TOKEN"
            raise DataError(msg)
        return load_api_data(args.api, args.token)
    msg = "give --data FILE (import file) or --api URL --token T"
    raise DataError(msg)


def _broker(args: argparse.Namespace) -> BrokerConfig:
    credentials = load_credentials(args.credentials) if args.credentials else None
    return BrokerConfig.from_url(
        args.mqtt_url,
        prefix=args.prefix,
        password=args.password,
        credentials=credentials,
        mqtt_version=4 if args.mqtt_version == "3.1.1" else 5,
    )


def _reader_options(args: argparse.Namespace) -> ReaderOptions:
    return ReaderOptions(
        resend_after_seconds=args.resend_after,
        max_resends=args.max_resends,
        buffer_size=getattr(args, "buffer_size", 100),
    )


def _read_model(path: str) -> dict[str, str]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"model file {path}: {exc}"
        raise DataError(msg) from None
    present = raw.get("present") if isinstance(raw, dict) else None
    if not isinstance(present, dict):
        msg = f'model file {path}: expected {{"present": {{student_id: room_id}}}}'
        raise DataError(msg)
    return {str(k): str(v) for k, v in present.items()}


def _write_json(path: str, body: Any) -> None:
    Path(path).write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=env.get("LOG_LEVEL", "WARNING"))

    mqtt = argparse.ArgumentParser(add_help=False)
    mqtt.add_argument("--mqtt-url", default=env.get("MQTT_URL", DEFAULT_MQTT_URL))
    mqtt.add_argument("--prefix", default=env.get("MQTT_TOPIC_PREFIX", "phoenix"))
    mqtt.add_argument("--mqtt-version", choices=["5", "3.1.1"], default="5")
    login = mqtt.add_mutually_exclusive_group()
    login.add_argument("--password", help="one password for every device")
    login.add_argument("--credentials", metavar="FILE", help='JSON {"device_id": "password"}')
    mqtt.add_argument("--resend-after", type=float, default=5.0, metavar="S")
    mqtt.add_argument("--max-resends", type=int, default=3)

    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("--data", metavar="FILE", help="import file (CONTRACT §7)")
    source.add_argument("--api", metavar="URL", help="running API, e.g. http://127.0.0.1:8000")
    source.add_argument("--token", default=env.get("EDGE_SIM_TOKEN"), help="admin access token")

    parser = argparse.ArgumentParser(prog="edge-sim", description="RFID reader emulator.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common, mqtt, source], help="a simulated afternoon")
    run.set_defaults(command=_run)
    run.add_argument("--devices", type=int, default=4)
    run.add_argument("--students", type=int, default=20)
    run.add_argument("--duration", type=float, default=300.0, metavar="S")
    run.add_argument("--rate", type=float, default=None, help="scans/s overall")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--flaky", type=float, default=0.0, metavar="P")
    run.add_argument("--speed", type=float, default=1.0, metavar="X")
    run.add_argument("--debounce", type=float, default=float(env.get("SCAN_DEBOUNCE_SECONDS", "3")))
    run.add_argument("--buffer-size", type=int, default=100)
    run.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    run.add_argument("--model-out", metavar="FILE", help='write {"present": {student: room}}')
    run.add_argument("--initial-model", metavar="FILE", help="who is present at the start")
    run.add_argument("--summary-out", metavar="FILE", help="write the summary as JSON")
    run.add_argument("--quiet", action="store_true", help="no line per answer")
    run.add_argument(
        "--loop",
        action="store_true",
        help="play afternoons until stopped (seed, seed+1, …; each starts where the last ended)",
    )
    run.add_argument("--no-color", action="store_true")

    scan = sub.add_parser("scan", parents=[common, mqtt], help="send one scan")
    scan.set_defaults(command=_scan)
    scan.add_argument("--device", required=True)
    scan.add_argument("--tag", required=True)
    scan.add_argument("--timeout", type=float, default=10.0, metavar="S")
    scan.add_argument("--no-color", action="store_true")

    load = sub.add_parser("load", parents=[common, mqtt, source], help="benchmark load")
    load.set_defaults(command=_load)
    load.add_argument("--devices", type=int, default=10)
    load.add_argument("--rate", type=float, default=0.0, help="scans/s overall, 0 = flat out")
    load.add_argument("--count", type=int, default=1000)
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--timeout", type=float, default=60.0, metavar="S")

    make = sub.add_parser("make-data", parents=[common], help="write a made-up import file")
    make.set_defaults(command=_make_data)
    make.add_argument("--rooms", type=int, default=4)
    make.add_argument("--students", type=int, default=24)
    make.add_argument("--seed", type=int, default=1)
    make.add_argument("--closed-rooms", type=int, default=1)
    make.add_argument("--staff-password", default="demo")
    make.add_argument("--out", metavar="FILE")
    return parser


if __name__ == "__main__":
    sys.exit(main())
