"""paho-mqtt driven by the asyncio loop: no network thread, no `select.select`.

paho's `loop_start()` watches its socket with `select.select`, which raises for a descriptor
numbered 1024 or higher; paho 2.2 takes that for a lost connection and reconnects, again on
a high descriptor, forever. A bridge holding thousands of streams gets there after its first
broker restart. Here paho's external-loop hooks (`on_socket_open` / `on_socket_close` /
`on_socket_register_write` / `on_socket_unregister_write`, as in paho's
examples/loop_asyncio.py) put the socket under `loop.add_reader` / `add_writer`, and a
driver task calls `loop_misc()` every second (keepalive) and reconnects after a drop with
the 1 s → 30 s backoff (paho's `reconnect_delay_set` only applies to its own loops).

The blocking part of a (re)connect (DNS, TCP connect, TLS handshake) runs in a worker thread,
as aiomqtt does (`empicano/aiomqtt: aiomqtt/client.py`); everything else runs on the loop,
paho's callbacks included. An exception escaping paho leaves its packet parser half-way (it
would hand the same packet over again): the step is logged and counted, and the connection is
given up; the driver reconnects and the broker redelivers what was not acknowledged.

Backpressure: `pause_reading()` stops watching the socket (TCP flow control then holds the
broker back), `resume_reading()` watches it again. A new connection always starts reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edge_bridge.tuning import (
    MQTT_MISC_INTERVAL_SECONDS,
    MQTT_RECONNECT_MAX_SECONDS,
    MQTT_RECONNECT_MIN_SECONDS,
)

logger = logging.getLogger(__name__)
_SUCCESS = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS


class LoopDriver:
    """Runs one paho client (already `connect_async`-configured) on the running loop.

    `on_failure(step)` is called when a step raised; `on_broken()` when the connection is
    given up without paho's `on_disconnect` (the owner marks itself disconnected).
    """

    def __init__(
        self,
        client: mqtt.Client,
        *,
        on_failure: Callable[[str], None],
        on_broken: Callable[[], None],
    ) -> None:
        self.client = client
        self._on_failure = on_failure
        self._on_broken = on_broken
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # the socket closed, or stop(): the driver looks at once
        self._stopping = False
        self._backoff = 0.0  # the wait before the next connect attempt
        self._broken = False  # a step raised: the socket is no longer read; reconnect
        self._connecting = False  # reconnect() runs in a worker thread
        self._held: list[tuple[str, bytes]] = []  # QoS 1 publishes made meanwhile
        self._paused = False  # the socket is not read: the owner's queue is full
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._task = loop.create_task(self._drive(), name="mqtt-driver")

    @property
    def paused(self) -> bool:
        return self._paused

    def pause_reading(self) -> None:
        """Stop reading the socket until `resume_reading()`; writes (acks, feedback) go on.

        paho sends keepalive pings meanwhile, but cannot read the answers: a pause longer
        than the keepalive (the worker stuck) ends in a reconnect, and the broker redelivers.
        """
        sock = self.client.socket()
        if self._paused or sock is None or self._loop is None:
            return
        self._paused = True
        self._loop.remove_reader(sock)

    def resume_reading(self) -> None:
        """Read the socket again (after `pause_reading()`)."""
        if not self._paused:
            return
        self._paused = False
        sock = self.client.socket()
        if sock is None or self._loop is None or self._broken:
            return
        self._loop.add_reader(sock, self._on_readable)
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._loop.call_soon(self._on_readable)  # decrypted already: the selector is blind

    def connected(self) -> None:
        """An accepted CONNACK: the next drop waits the shortest backoff again."""
        self._backoff = float(MQTT_RECONNECT_MIN_SECONDS)

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1; paho keeps it across a reconnect. While `reconnect()` runs in its thread
        the message waits here: paho's queues must not be touched from two threads."""
        if self._connecting:
            self._held.append((topic, payload))
            return
        self.client.publish(topic, payload, qos=1)

    async def stop(self) -> None:
        """Disconnect (the writer sends DISCONNECT, paho closes the socket), end the driver."""
        self._stopping = True
        self._wake.set()
        self.client.disconnect()
        try:
            await until(lambda: self.client.socket() is None, 1.0)
        except TimeoutError:
            self._abandon()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --- the driver task ---

    async def _drive(self) -> None:
        """Connect; then `loop_misc()` every second; after a drop, reconnect with backoff."""
        while not self._stopping:
            self._wake.clear()
            try:
                if self._broken or self.client.socket() is None:
                    await self._pause(self._backoff)
                    if self._stopping:
                        return
                    self._backoff = min(
                        max(self._backoff * 2, MQTT_RECONNECT_MIN_SECONDS),
                        MQTT_RECONNECT_MAX_SECONDS,
                    )
                    await self._open()
                else:
                    self._step("misc", self.client.loop_misc)
                    await self._pause(MQTT_MISC_INTERVAL_SECONDS)
            except Exception:  # the driver never dies: log, count, go on
                self._on_failure("driver")
                logger.exception("MQTT driver step failed")
                await self._pause(MQTT_RECONNECT_MIN_SECONDS)

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less: `stop()` and a closed socket wake the driver."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _open(self) -> None:
        """One connect attempt; the socket is watched by the loop once it is there."""
        self._broken = False
        self._connecting = True
        try:
            await asyncio.to_thread(self.client.reconnect)  # closes a broken socket first
        except (OSError, ValueError) as exc:  # ssl.SSLError and socket errors are OSErrors
            self._release_held()
            logger.warning(
                "MQTT connect failed broker=%s:%s reason=%s retry_in=%.0fs",
                self.client.host,
                self.client.port,
                exc,
                self._backoff,
            )
            return
        sock = self.client.socket()
        if sock is not None:
            self._watch(sock)
        self._release_held()

    def _release_held(self) -> None:
        self._connecting = False
        held, self._held = self._held, []
        for topic, payload in held:
            self.client.publish(topic, payload, qos=1)

    def _watch(self, sock: socket.socket | ssl.SSLSocket) -> None:
        assert self._loop is not None
        self._paused = False  # a new connection starts reading (its CONNACK, first of all)
        self._loop.add_reader(sock, self._on_readable)
        if self.client.want_write():  # the CONNECT queued by reconnect()
            self._loop.add_writer(sock, self._on_writable)

    # --- socket readiness, on the loop ---

    def _on_readable(self) -> None:
        self._step("read", self._read)

    def _read(self) -> None:
        rc = self.client.loop_read()
        # TLS: records already decrypted wait in the SSL object, where the selector cannot
        # see them; read them now or they wait for the next bytes from the broker.
        sock = self.client.socket()
        while (
            rc == _SUCCESS
            and not self._paused
            and isinstance(sock, ssl.SSLSocket)
            and sock.pending()
        ):
            rc = self.client.loop_read()
            sock = self.client.socket()

    def _on_writable(self) -> None:
        self._step("write", self._write)

    def _write(self) -> None:
        self.client.loop_write()
        sock = self.client.socket()
        if sock is not None and not self.client.want_write():
            assert self._loop is not None
            self._loop.remove_writer(sock)  # never spin on a writable socket with nothing to say

    def _step(self, name: str, step: Callable[[], object]) -> None:
        """Run a paho step; if it raises: log, count, give the connection up."""
        try:
            step()
        except Exception:
            self._on_failure(name)
            logger.exception("MQTT %s failed; reconnecting", name)
            self._abandon()

    def _abandon(self) -> None:
        """Stop watching the socket and mark the connection broken; `reconnect()` closes it."""
        self._broken = True
        self._on_broken()
        sock = self.client.socket()
        if sock is not None and self._loop is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        self._wake.set()

    # --- paho's socket hooks: on the loop, except during a (re)connect ---
    # paho-mqtt calls these from the worker thread running `reconnect()` (see `_open`) too:
    # there they do nothing, and `_watch` registers the new socket once the thread is done.

    def _on_loop(self) -> bool:
        return self._loop is not None and threading.get_ident() == self._loop_thread

    def _on_socket_open(self, _client: mqtt.Client, _userdata: object, sock: object) -> None:
        if self._on_loop():  # pragma: no cover - paho opens sockets only in reconnect()
            self._watch(sock)  # type: ignore[arg-type]

    def _on_socket_close(self, _client: mqtt.Client, _userdata: object, sock: object) -> None:
        if self._on_loop():
            assert self._loop is not None
            self._loop.remove_reader(sock)  # type: ignore[arg-type]
            self._loop.remove_writer(sock)  # type: ignore[arg-type]
            self._wake.set()

    def _on_socket_register_write(
        self, _client: mqtt.Client, _userdata: object, sock: object
    ) -> None:
        if self._on_loop():
            assert self._loop is not None
            self._loop.add_writer(sock, self._on_writable)  # type: ignore[arg-type]

    def _on_socket_unregister_write(
        self, _client: mqtt.Client, _userdata: object, sock: object
    ) -> None:
        if self._on_loop():
            assert self._loop is not None
            self._loop.remove_writer(sock)  # type: ignore[arg-type]


async def until(predicate: Callable[[], bool], seconds: float) -> None:
    """Wait (bounded) for state that paho's callbacks on the loop change."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - paho offers no awaitable for these
            await asyncio.sleep(0.01)
