"""A real `edge-bridge serve` in a subprocess, for integration and browser tests.

The process gets its own environment (database, broker URL, topic prefix, secret, port) and
logs to a file in the test's directory. `kill()` sends SIGKILL, `stop()` SIGTERM; `start()`
again reuses the port, so browsers can reconnect to the same URL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.broker import free_port


class ServerError(RuntimeError):
    """The bridge did not start or stop as asked; the message ends with its log."""


class BridgeServer:
    """One bridge process; `base_url` stays the same across restarts."""

    def __init__(self, directory: Path, env: dict[str, str], *, port: int | None = None) -> None:
        self.directory = directory
        self.env = dict(env)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "bridge.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, wait_ready: bool = False, timeout_seconds: float = 20.0) -> BridgeServer:
        env = {**os.environ, **self.env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "edge_ops.cli", "serve"],
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_for("/ready" if wait_ready else "/health", timeout_seconds)
        return self

    def _wait_for(self, path: str, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if not self.running:
                self._fail("exited during start-up")
            try:
                if httpx.get(self.base_url + path, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self._fail(f"{path} not 200 within {timeout_seconds} s")

    def wait_ready(self, timeout_seconds: float = 20.0) -> None:
        self._wait_for("/ready", timeout_seconds)

    def stop(self, timeout_seconds: float = 10.0) -> float:
        """SIGTERM and wait; returns how long the exit took."""
        if not self.running:
            return 0.0
        assert self._process is not None
        started = time.monotonic()
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
            self._fail(f"did not exit within {timeout_seconds} s of SIGTERM")
        return time.monotonic() - started

    def kill(self) -> None:
        if self.running:
            assert self._process is not None
            self._process.kill()
            self._process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _fail(self, reason: str) -> None:
        tail = self.log_text()[-4000:]
        msg = f"bridge {reason}; log:\n{tail}"
        raise ServerError(msg)
