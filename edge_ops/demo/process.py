"""The demo's child processes: start with output to a log file, stop politely, then firmly.

Children stay in the demo's process group, so Ctrl-C in a terminal reaches all of them at
once; the demo still stops each one itself, in order, and waits a bounded time. On Linux a
child also gets SIGTERM when the demo dies without cleaning up (PR_SET_PDEATHSIG), so even a
`kill -9` of the demo leaves no broker or simulator behind.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import NoReturn

from edge_bridge.errors import EdgeBridgeError

logger = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 8.0
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 15


class DemoError(EdgeBridgeError):
    """The demo could not start or keep running; the message says what to do."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. Not Linux: the demo's own cleanup has to do.
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One running child process with a name for messages and an optional log file."""

    def __init__(
        self, name: str, process: subprocess.Popen[bytes], *, log_path: Path | None
    ) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        """Start `argv`; stdout and stderr go to `log_path`, or to the demo's own if None."""
        log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                env=dict(env) if env is not None else None,
                preexec_fn=_die_with_parent,  # the demo starts children before any thread
            )
        except OSError as exc:
            msg = f"cannot start {name} ({argv[0]}): {exc.strerror}"
            raise DemoError(msg) from None
        finally:
            if log is not None:
                log.close()
        logger.info("Child process started name=%s pid=%d", name, process.pid)
        return cls(name, process, log_path=log_path)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM, wait up to `timeout_seconds`, then SIGKILL; always reaps the process."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "Child process did not stop in time, killing it name=%s pid=%d",
                    self.name,
                    self.process.pid,
                )
                self.process.kill()
        self.process.wait()

    def log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def fail(self, reason: str) -> NoReturn:
        tail = self.log_tail()
        where = f" (log: {self.log_path})" if self.log_path else ""
        msg = f"{self.name} {reason}{where}" + (f"; last lines:\n{tail}" if tail else "")
        raise DemoError(msg)
