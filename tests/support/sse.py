"""A streaming SSE client for tests: a thread reads frames into a queue; waits are bounded."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Frame:
    """One SSE frame (or comment) as received."""

    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class SseStream:
    """Opens `GET url` with streaming and parses frames until closed; `next()` waits bounded."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        self.frames: queue.Queue[Frame | None] = queue.Queue()
        self.status_code: int | None = None
        self.headers: httpx.Headers | None = None
        self.body: bytes = b""
        self.ended = threading.Event()
        self._opened = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=None))
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(
            target=self._run, args=(url, headers or {}, params or {}), daemon=True
        )
        self._thread.start()
        if not self._opened.wait(10):
            msg = f"no response from {url} within 10 s"
            raise TimeoutError(msg)

    def _run(self, url: str, headers: dict[str, str], params: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers, params=params) as response:
                self._response = response
                self.status_code, self.headers = response.status_code, response.headers
                self._opened.set()
                if response.status_code != 200:
                    self.body = response.read()
                    return
                self._parse(response)
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self._opened.set()
            self.ended.set()
            self.frames.put(None)

    def _parse(self, response: httpx.Response) -> None:
        frame = Frame()
        for line in response.iter_lines():
            if self._stop.is_set():
                return
            if line == "":
                if frame != Frame():
                    self.frames.put(frame)
                frame = Frame()
            elif line.startswith(":"):
                frame.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "retry":
                    frame.retry = int(value)
                elif name in {"event", "data", "id"}:
                    setattr(frame, name, value)

    def next(self, timeout: float = 5.0) -> Frame:
        """The next frame; raises TimeoutError, or EOFError when the stream ended."""
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            msg = f"no SSE frame within {timeout} s"
            raise TimeoutError(msg) from None
        if frame is None:
            self.frames.put(None)
            msg = "the stream ended"
            raise EOFError(msg)
        return frame

    def next_event(self, timeout: float = 5.0) -> Frame:
        """The next frame that is an event (skips retry-only frames and comments)."""
        while True:
            frame = self.next(timeout)
            if frame.event is not None:
                return frame

    def close(self) -> None:
        """Close the connection now: shutting the socket down wakes the blocked reader."""
        self._stop.set()
        stream = self._response.extensions.get("network_stream") if self._response else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(5)

    def __enter__(self) -> SseStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
