"""Terminal output of the simulator (simulator/display.py)."""

from __future__ import annotations

import io
from datetime import datetime

from edge_bridge.wire import ScanResult
from simulator.display import Display, format_feedback, format_summary, use_color
from simulator.reader import Feedback
from simulator.report import AfternoonReport, Mismatch
from simulator.scenario import ScanKind

NOON = datetime(2026, 11, 26, 13, 30, 0)


def make_feedback(result: ScanResult = ScanResult.CHECKED_IN, message: str = "Hallo Max!"):
    return Feedback(
        device_id="reader-101",
        scan_id="s1",
        result=result,
        message=message,
        student_name="Max Muster",
        latency_seconds=0.01,
        resends=0,
    )


def make_report(**changes: object) -> AfternoonReport:
    values: dict[str, object] = {
        "planned": 3,
        "sent": 3,
        "acknowledged": 3,
        "unacknowledged": 0,
        "buffered": 0,
        "dropped": 0,
        "resends": 1,
        "by_result": {"checked_in": 2, "duplicate": 1},
        "expected_by_result": {"checked_in": 2, "duplicate": 1},
        "mismatches": (),
        "present": {"456": "1", "457": "2"},
        "elapsed_seconds": 12.5,
        "latency_ms": {"p50": 3.0, "p99": 9.0},
    }
    values.update(changes)
    return AfternoonReport(**values)  # type: ignore[arg-type]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_feedback_line_without_color_has_no_ansi_codes() -> None:
    line = format_feedback(make_feedback(), room_name="Raum 101", color=False, now=NOON)

    assert "\x1b[" not in line
    assert line == "13:30:00 reader-101 Raum 101      [ok] Hallo Max!  (checked_in)"


def test_feedback_line_with_color_is_green_for_a_check_in() -> None:
    line = format_feedback(make_feedback(), color=True, now=NOON)

    assert "\x1b[32m" in line and "Hallo Max!" in line


def test_duplicate_is_yellow_and_unknown_card_is_red() -> None:
    duplicate = format_feedback(make_feedback(ScanResult.DUPLICATE, "Schon erfasst"), color=True)
    unknown = format_feedback(make_feedback(ScanResult.UNKNOWN_TAG, ""), color=True)

    assert "\x1b[33m" in duplicate
    assert "\x1b[31m" in unknown and "Karte unbekannt" in unknown


def test_unexpected_answer_is_marked_as_a_mismatch() -> None:
    line = format_feedback(make_feedback(), expected=ScanResult.CHECKED_OUT, now=NOON)

    assert line.endswith("MISMATCH expected checked_out")


def test_color_is_off_when_the_stream_is_not_a_terminal() -> None:
    assert use_color(io.StringIO(), env={}) is False
    assert use_color(_Tty(), env={}) is True


def test_color_is_off_with_no_color_flag_or_environment() -> None:
    assert use_color(_Tty(), no_color=True, env={}) is False
    assert use_color(_Tty(), env={"NO_COLOR": "1"}) is False


def test_display_writes_plain_lines_to_a_pipe_and_nothing_when_quiet() -> None:
    stream = io.StringIO()
    Display(stream).show_feedback(make_feedback(), None)
    quiet = io.StringIO()
    Display(quiet, quiet=True).show_feedback(make_feedback(), None)

    assert "[ok] Hallo Max!" in stream.getvalue() and "\x1b[" not in stream.getvalue()
    assert quiet.getvalue() == ""


def test_summary_lists_counts_results_and_the_verdict() -> None:
    text = format_summary(make_report())

    assert "scans sent          3" in text
    assert "acknowledged        3" in text
    assert "unacknowledged      0  (still buffered 0, dropped 0)" in text
    assert "feedback by result  checked_in=2 duplicate=1" in text
    assert "present at the end  2 students" in text
    assert text.endswith("result              OK")


def test_summary_lists_the_first_mismatches_and_fails() -> None:
    mismatches = tuple(
        Mismatch(
            scan_id=f"s{i}",
            device_id="reader-101",
            subject="student:456",
            kind=ScanKind.MOVE,
            at_seconds=float(i),
            expected=ScanResult.TRANSFERRED,
            received=ScanResult.DUPLICATE,
            message="Schon erfasst",
        )
        for i in range(7)
    )

    text = format_summary(make_report(mismatches=mismatches))

    assert "mismatches          7" in text
    assert "t=0.0s reader-101 student:456 move: expected transferred, got duplicate" in text
    assert "… and 2 more" in text
    assert text.endswith("FAILED")


def test_answers_line_up_even_when_a_reader_and_its_room_are_long() -> None:
    stream = io.StringIO()
    display = Display(stream, color=False, room_names={"reader-101": "Raum 101"})
    display.room_names = {"reader-101": "Raum 101", "reader-turnhalle": "Große Turnhalle"}

    display.show_feedback(make_feedback(), None)
    display.show_feedback(
        Feedback("reader-turnhalle", "s2", ScanResult.CHECKED_IN, "Hallo Emma!", None, 0.01, 0),
        None,
    )

    first, second = stream.getvalue().splitlines()
    assert first.index("[ok]") == second.index("[ok]")
