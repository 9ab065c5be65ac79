"""Terminal output: each answer styled like the reader's LED and display, and the summary.

Green for a check-in, check-out, transfer or supervisor login; yellow for a duplicate; red for
an unknown card, a rejected scan or a room without an active group. Plain text when the
stream is not a terminal, with `--no-color`, or when `NO_COLOR` is set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TextIO

from edge_bridge.wire import ScanResult
from simulator.reader import Feedback
from simulator.report import AfternoonReport
from simulator.scenario import PlannedScan

_GREEN, _YELLOW, _RED, _BOLD, _RESET = "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[1m", "\x1b[0m"
_LED = {
    ScanResult.CHECKED_IN: (_GREEN, "ok"),
    ScanResult.CHECKED_OUT: (_GREEN, "ok"),
    ScanResult.TRANSFERRED: (_GREEN, "ok"),
    ScanResult.SUPERVISOR_AUTHENTICATED: (_GREEN, "ok"),
    ScanResult.DUPLICATE: (_YELLOW, "dup"),
    ScanResult.UNKNOWN_TAG: (_RED, "err"),
    ScanResult.NO_ACTIVE_GROUP: (_RED, "err"),
    ScanResult.REJECTED: (_RED, "err"),
}
_FALLBACK_MESSAGES = {
    ScanResult.UNKNOWN_TAG: "Karte unbekannt",
    ScanResult.NO_ACTIVE_GROUP: "Keine aktive Gruppe",
    ScanResult.DUPLICATE: "Schon erfasst",
    ScanResult.REJECTED: "Abgelehnt",
}
SUMMARY_MISMATCH_LINES = 5


def use_color(
    stream: TextIO, *, no_color: bool = False, env: Mapping[str, str] | None = None
) -> bool:
    """Colour only on a terminal, and never when asked not to."""
    env = os.environ if env is None else env
    if no_color or "NO_COLOR" in env:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def format_feedback(
    feedback: Feedback,
    *,
    room_name: str = "",
    expected: ScanResult | None = None,
    color: bool = False,
    now: datetime | None = None,
    width: int = 24,
) -> str:
    """One line per answer: time, reader, LED, display text, result (and a mismatch mark);
    the reader and its room fill a column `width` characters wide."""
    ansi, word = _LED.get(feedback.result, (_RED, "err"))
    text = feedback.message or _FALLBACK_MESSAGES.get(feedback.result, str(feedback.result))
    clock = (now or datetime.now()).strftime("%H:%M:%S")
    where = f"{feedback.device_id} {room_name}".strip()
    led = f"{ansi}●{_RESET} {ansi}{_BOLD}{text}{_RESET}" if color else f"[{word}] {text}"
    line = f"{clock} {where:<{width}} {led}  ({feedback.result})"
    if expected is not None and expected != feedback.result:
        mark = f"MISMATCH expected {expected}"
        line += f"  {_RED}{_BOLD}{mark}{_RESET}" if color else f"  {mark}"
    return line


def format_summary(report: AfternoonReport, *, color: bool = False) -> str:
    """The end-of-run summary: counts, results, latency, the first mismatches, the verdict."""
    results = " ".join(f"{k}={v}" for k, v in sorted(report.by_result.items())) or "-"
    expected = " ".join(f"{k}={v}" for k, v in sorted(report.expected_by_result.items())) or "-"
    latency = " ".join(f"{k}={v}" for k, v in report.latency_ms.items()) or "-"
    verdict = "OK" if report.ok else "FAILED"
    if color:
        verdict = f"{_GREEN if report.ok else _RED}{_BOLD}{verdict}{_RESET}"
    lines = [
        "Summary",
        f"  scans planned       {report.planned}",
        f"  scans sent          {report.sent}",
        f"  acknowledged        {report.acknowledged}",
        f"  unacknowledged      {report.unacknowledged}"
        f"  (still buffered {report.buffered}, dropped {report.dropped})",
        f"  resends             {report.resends}",
        f"  feedback by result  {results}",
        f"  expected by result  {expected}",
        f"  latency ms          {latency}",
        f"  present at the end  {len(report.present)} students",
        f"  mismatches          {len(report.mismatches)}",
    ]
    for m in report.mismatches[:SUMMARY_MISMATCH_LINES]:
        lines.append(
            f"    t={m.at_seconds:.1f}s {m.device_id} {m.subject} {m.kind}: "
            f"expected {m.expected}, got {m.received} ({m.message})"
        )
    if len(report.mismatches) > SUMMARY_MISMATCH_LINES:
        lines.append(f"    … and {len(report.mismatches) - SUMMARY_MISMATCH_LINES} more")
    lines.append(f"  elapsed             {report.elapsed_seconds:.1f} s")
    lines.append(f"  result              {verdict}")
    return "\n".join(lines)


class Display:
    """Prints answers as they arrive; a `FeedbackSink` for `simulator.afternoon`."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        color: bool | None = None,
        quiet: bool = False,
        room_names: Mapping[str, str] | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.color = use_color(self.stream) if color is None else color
        self.quiet = quiet
        self.room_names = dict(room_names or {})

    @property
    def room_names(self) -> dict[str, str]:
        """device id → room name; the reader column is as wide as the longest pair."""
        return self._room_names

    @room_names.setter
    def room_names(self, names: Mapping[str, str]) -> None:
        self._room_names = dict(names)
        self._width = max([24, *(len(f"{d} {r}") for d, r in self._room_names.items())])

    def show_feedback(self, feedback: Feedback, scan: PlannedScan | None) -> None:
        if self.quiet:
            return
        line = format_feedback(
            feedback,
            room_name=self.room_names.get(feedback.device_id, ""),
            expected=scan.expected if scan else None,
            color=self.color,
            width=self._width,
        )
        print(line, file=self.stream, flush=True)

    def show_summary(self, report: AfternoonReport) -> None:
        print(format_summary(report, color=self.color), file=self.stream, flush=True)
