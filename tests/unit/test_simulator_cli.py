"""The `edge-sim` command line without a broker (simulator/__main__.py, oneshot.py, broker.py)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

import simulator.__main__ as simulator_main
from edge_bridge.wire import ScanResult
from simulator.__main__ import main
from simulator.broker import BrokerConfig, BrokerConfigError, load_credentials
from simulator.data import SimData
from simulator.oneshot import exit_code_for
from simulator.report import build_report
from simulator.scenario import Plan, PlanOptions


@pytest.mark.parametrize(
    "result",
    [
        ScanResult.CHECKED_IN,
        ScanResult.CHECKED_OUT,
        ScanResult.TRANSFERRED,
        ScanResult.SUPERVISOR_AUTHENTICATED,
        ScanResult.DUPLICATE,
    ],
)
def test_scan_exits_0_on_a_success_result(result: ScanResult) -> None:
    assert exit_code_for(result) == 0


@pytest.mark.parametrize(
    "result", [ScanResult.UNKNOWN_TAG, ScanResult.NO_ACTIVE_GROUP, ScanResult.REJECTED]
)
def test_scan_exits_1_when_the_scan_is_refused(result: ScanResult) -> None:
    assert exit_code_for(result) == 1


def test_scan_exits_2_when_no_feedback_arrives() -> None:
    assert exit_code_for(None) == 2


def test_every_result_has_an_exit_code() -> None:
    assert {exit_code_for(r) for r in ScanResult} == {0, 1}


def test_broker_url_gives_host_port_tls_and_a_fallback_password() -> None:
    broker = BrokerConfig.from_url("mqtts://user:s%40cret@broker.example:8884", prefix="p")

    assert (broker.host, broker.port, broker.tls, broker.prefix) == (
        "broker.example",
        8884,
        True,
        "p",
    )
    assert broker.password_for("reader-101") == "s@cret"


def test_credentials_file_wins_over_the_common_password(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"reader-101": "one"}), encoding="utf-8")

    broker = BrokerConfig.from_url(
        "mqtt://127.0.0.1", password="all", credentials=load_credentials(path)
    )

    assert broker.port == 1883
    assert broker.password_for("reader-101") == "one"
    assert broker.password_for("reader-102") == "all"


def test_bad_broker_url_is_refused() -> None:
    with pytest.raises(BrokerConfigError, match="scheme must be mqtt or mqtts"):
        BrokerConfig.from_url("http://127.0.0.1")


def test_run_without_data_exits_2_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--duration", "1"])

    assert code == 2
    assert "--data FILE" in capsys.readouterr().err


def test_run_with_a_broken_data_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "school.json"
    path.write_text(json.dumps({"students": [{"id": 1, "tag": "nope"}]}), encoding="utf-8")

    code = main(["run", "--data", str(path)])

    assert code == 2
    assert "students[0].tag" in capsys.readouterr().err


def test_make_data_writes_an_import_file(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"

    code = main(["make-data", "--rooms", "2", "--students", "3", "--out", str(out)])

    raw = json.loads(out.read_text(encoding="utf-8"))
    assert code == 0
    assert [d["id"] for d in raw["devices"]] == ["reader-101", "reader-102"]
    assert len(raw["students"]) == 3


def test_scan_needs_a_device_and_a_tag() -> None:
    with pytest.raises(SystemExit) as info:
        main(["scan", "--tag", "04A1B2C3D4"])

    assert info.value.code == 2


def test_run_loop_plays_afternoon_after_afternoon_until_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "school.json"
    main(
        ["make-data", "--rooms", "2", "--students", "4", "--closed-rooms", "0", "--out", str(data)]
    )
    plans: list[tuple[int, dict[str, str], dict[str, str]]] = []  # seed, start, end
    real_build_plan = simulator_main.build_plan

    def recording_build_plan(data: SimData, options: PlanOptions, *, present: Any = None) -> Plan:
        plan = real_build_plan(data, options, present=present)
        plans.append((options.seed, dict(present or {}), dict(plan.present)))
        return plan

    def fake_run(plan: Plan, broker: object, *, stop: threading.Event, **_: object) -> Any:
        if len(plans) == 3:
            stop.set()  # as SIGINT or SIGTERM would
        return build_report(plan, sent={}, received={}, reader_stats={}, elapsed_seconds=0.0)

    monkeypatch.setattr(simulator_main, "build_plan", recording_build_plan)
    monkeypatch.setattr(simulator_main, "run_afternoon", fake_run)

    code = main(["run", "--loop", "--seed", "5", "--duration", "60", "--data", str(data)])

    out = capsys.readouterr()
    assert code == 128 + signal.SIGINT
    assert [seed for seed, _, _ in plans] == [5, 6, 7]
    assert [start for _, start, _ in plans] == [{}, plans[0][2], plans[1][2]]
    assert "Afternoon 1 (seed 5)" in out.out
    assert "Afternoon 3 (seed 7)" in out.out
    assert "stopped after 0 scans" in out.err
