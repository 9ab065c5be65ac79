"""Load client for `bench/sse_fanout.py`: thousands of SSE streams in one cheap process.

    python bench/sse_load_client.py      # driven by JSON lines on stdin, answers on stdout

One `asyncio.Protocol` per connection on uvloop (when installed), a raw HTTP/1.1 GET, and the
least parsing that still counts every delivery: each complete line starting with `data: ` is
looked up in one dict keyed by the line's bytes, and the receive time (`time.time()`) is
appended to that line's list. Chunked transfer encoding needs no decoding: chunk-size lines
never start with `data: `, and a server writes each frame as one chunk. The driver turns lines
into events and receive times into latencies; this process only counts.

Commands (one JSON object per line; every command gets one JSON answer line):
  {"cmd": "connect", "host", "port", "request", "marker", "count", "window"}
      open `count` streams, at most `window` of them not yet ready at a time; a stream is
      ready once `marker` (bytes as text) has arrived. Answers first/last ready times.
  {"cmd": "record", "on": true|false}   start (clearing what was recorded) or stop recording
  {"cmd": "progress"}                   deliveries recorded so far and open streams
  {"cmd": "dump", "path"}               write {line: [receive times]} as JSON to `path`
  {"cmd": "close"}                      close every stream and wait until they are gone
  {"cmd": "exit"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from typing import Any, cast

_now = time.time
_LAST_CHUNK = b"\r\n0\r\n\r\n"


class Client:
    """The shared state of every stream in this process."""

    def __init__(self) -> None:
        self.request = b""
        self.marker = b""
        self.recording = False
        self.recorded: dict[bytes, list[float]] = {}
        self.streams: set[Stream] = set()
        self.ready_times: list[float] = []
        self.lost_unexpectedly = 0
        self.closing = False
        self.all_closed = asyncio.Event()
        self.first_failure = ""


class Stream(asyncio.Protocol):
    """One SSE connection; `data_received` is the hot path, kept flat."""

    __slots__ = ("_buffer", "_client", "ended", "ready", "ready_future", "transport")

    def __init__(self, client: Client, ready_future: asyncio.Future[bool]) -> None:
        self._client = client
        self._buffer = b""
        self.ready = False
        self.ended = False
        self.ready_future: asyncio.Future[bool] | None = ready_future
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._client.streams.add(self)
        self.transport.write(self._client.request)

    def data_received(self, data: bytes) -> None:
        now = _now()
        client = self._client
        if self._buffer:
            data = self._buffer + data
        if not self.ready:
            if client.marker not in data:
                self._buffer = data
                if len(data) > 65536:  # not an event stream; let connection_lost report it
                    self._fail(data)
                return
            self.ready = True
            client.ready_times.append(now)
            if self.ready_future is not None and not self.ready_future.done():
                self.ready_future.set_result(True)
            self.ready_future = None
        cut = data.rfind(b"\n") + 1
        self._buffer = data[cut:]
        if data.endswith(b"0\r\n\r\n") and (data == b"0\r\n\r\n" or data.endswith(_LAST_CHUNK)):
            self._ended_by_server()  # the response ended; HTTP/1.1 keeps the connection
        if not client.recording:
            return
        recorded = client.recorded
        find = data.find
        pos = find(b"data: ", 0, cut)
        while pos >= 0:
            end = find(b"\n", pos, cut)
            line = data[pos + 6 : end - 1] if data[end - 1] == 13 else data[pos + 6 : end]
            times = recorded.get(line)
            if times is None:
                recorded[line] = [now]
            else:
                times.append(now)
            pos = find(b"data: ", end, cut)

    def _ended_by_server(self) -> None:
        self.ended = True
        if self.ready and not self._client.closing:
            self._client.lost_unexpectedly += 1
        if self.transport is not None:
            self.transport.close()

    def _fail(self, data: bytes) -> None:
        if not self._client.first_failure:
            self._client.first_failure = data[:300].decode(errors="replace")
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        client = self._client
        client.streams.discard(self)
        if not self.ready and not client.first_failure:
            client.first_failure = (
                self._buffer[:300].decode(errors="replace") or f"closed before ready: {exc!r}"
            )
        if self.ready_future is not None and not self.ready_future.done():
            self.ready_future.set_result(False)
        if self.ready and not self.ended and not client.closing:
            client.lost_unexpectedly += 1
        if client.closing and not client.streams:
            client.all_closed.set()


async def _connect(client: Client, command: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    client.request = command["request"].encode()
    client.marker = command["marker"].encode()
    client.ready_times.clear()
    window = asyncio.Semaphore(int(command["window"]))
    host, port = command["host"], int(command["port"])
    errors: dict[str, int] = {}

    async def one() -> bool:
        async with window:
            future: asyncio.Future[bool] = loop.create_future()
            try:
                transport, _ = await loop.create_connection(
                    lambda: Stream(client, future), host, port
                )
            except OSError as exc:
                key = type(exc).__name__ + ": " + str(exc)[:80]
                errors[key] = errors.get(key, 0) + 1
                return False
            try:
                async with asyncio.timeout(float(command.get("timeout", 60))):
                    return await future
            except TimeoutError:
                errors["not ready in time"] = errors.get("not ready in time", 0) + 1
                transport.close()  # a late stream must not receive events it is not counted for
                return False

    started = _now()
    outcomes = await asyncio.gather(*(one() for _ in range(int(command["count"]))))
    ready = sum(outcomes)
    return {
        "ready": ready,
        "failed": len(outcomes) - ready,
        "errors": errors,
        "first_failure": client.first_failure,
        "started": started,
        "first_ready": min(client.ready_times, default=None),
        "last_ready": max(client.ready_times, default=None),
    }


async def _close(client: Client) -> dict[str, Any]:
    client.closing = True
    client.all_closed.clear()
    for stream in list(client.streams):
        if stream.transport is not None:
            stream.transport.close()
    if client.streams:
        async with asyncio.timeout(30):
            await client.all_closed.wait()
    client.closing = False
    return {"open": len(client.streams)}


def _dump(recorded: dict[bytes, list[float]], path: str) -> int:
    lines = {line.decode(errors="replace"): times for line, times in recorded.items()}
    with open(path, "w") as out:
        json.dump(lines, out)
    return len(lines)


async def _handle(client: Client, command: dict[str, Any]) -> dict[str, Any]:
    match command["cmd"]:
        case "connect":
            return await _connect(client, command)
        case "record":
            client.recording = bool(command["on"])
            if client.recording:
                client.recorded = {}
                client.lost_unexpectedly = 0
            return {"recording": client.recording}
        case "progress":
            return {
                "deliveries": sum(len(times) for times in client.recorded.values()),
                "open": len(client.streams),
                "lost_unexpectedly": client.lost_unexpectedly,
            }
        case "dump":
            return {"lines": _dump(client.recorded, command["path"])}
        case "close":
            return await _close(client)
        case _:
            return {"error": f"unknown command {command['cmd']!r}"}


async def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    client = Client()
    out = os.fdopen(sys.stdout.fileno(), "w", buffering=1, closefd=False)
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "exit":
            break
        try:
            answer = await _handle(client, command)
        except Exception as exc:  # the driver prints it; the process stays usable
            answer = {"error": repr(exc)}
        out.write(json.dumps(answer) + "\n")
    await _close(client)


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(main())
