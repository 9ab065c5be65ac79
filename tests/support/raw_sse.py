"""SSE over a plain socket, for clients that must misbehave: never read, or hold many streams.

`RawSseClient` sends the GET and then reads only when asked, so the server's writes pile up
in the socket buffers (a deliberately slow client). On loopback the kernel would otherwise
absorb megabytes first: a small receive buffer and a small announced MSS, both set before
connecting, keep the window and the server's autotuned send buffer small (tens of KiB).
Responses are parsed with h11, so chunked framing and the end of the response are exact: a
connection the server drops mid-body (as after a send timeout) ends with `complete` False.
"""

from __future__ import annotations

import re
import socket
import time

import h11

_ID = re.compile(rb"^id: (\d+)$", re.MULTILINE)


class RawSseClient:
    """One `GET` on its own socket; `read_until_end()` drains it when the test chooses."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        receive_buffer_bytes: int | None = None,
        max_segment_bytes: int | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer_bytes is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        if max_segment_bytes is not None:  # a small MSS keeps the server's send buffer small
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, max_segment_bytes)
        self.sock.connect((host, port))
        self.status_code: int | None = None
        self.body = bytearray()
        self.ended = False
        self.complete = False  # the response ended with its final chunk
        self._connection = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="GET",
            target=path,
            headers=[("Host", f"{host}:{port}"), *(headers or {}).items()],
        )
        end = h11.EndOfMessage()
        self.sock.sendall(self._connection.send(request) + self._connection.send(end))

    def read_until(self, marker: bytes, timeout_seconds: float) -> bytes:
        """Read until `marker` is in the body; raise TimeoutError or EOFError otherwise."""
        deadline = time.monotonic() + timeout_seconds
        while marker not in self.body:
            if self.ended:
                msg = f"the stream ended before {marker!r} arrived"
                raise EOFError(msg)
            self._receive(deadline)
        return bytes(self.body)

    def read_until_end(self, timeout_seconds: float) -> bytes:
        """Read everything until the server ends the response; raise TimeoutError if it does not."""
        deadline = time.monotonic() + timeout_seconds
        while not self.ended:
            self._receive(deadline)
        return bytes(self.body)

    def event_ids(self) -> list[int]:
        """The ids of the complete event frames received so far, in order."""
        text = bytes(self.body).replace(b"\r\n", b"\n")
        complete = text.rpartition(b"\n\n")[0]
        return [int(match) for match in _ID.findall(complete)]

    def close(self) -> None:
        self.sock.close()

    def _receive(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            msg = "no end of the SSE response in time"
            raise TimeoutError(msg)
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            msg = "no data from the server in time"
            raise TimeoutError(msg) from None
        self._connection.receive_data(data)
        while True:
            try:
                event = self._connection.next_event()
            except h11.RemoteProtocolError:  # closed without the final chunk
                self.ended = True
                break
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Response):
                self.status_code = event.status_code
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                self.ended = True
                self.complete = isinstance(event, h11.EndOfMessage)
                break
        if not data:
            self.ended = True
