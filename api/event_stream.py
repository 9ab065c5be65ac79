"""The ASGI machinery of a long-lived streaming response that costs no task of its own.

An event stream lives for hours and is idle nearly all of that time, so what it holds while
it waits is what thousands of them cost. The stream's own coroutine (the ASGI app's task) is
the only task; the rest are futures and at most one timer at a time:

- `DisconnectWatch` notices the client going away without a listener task: it drives the
  server's `receive()` coroutine by hand, one step each time the future it waits on is done
  (what a task would do, without the task object, its registration and its extra frame).
- `send_within` sends a message and arms a deadline only when the send actually waits:
  uvicorn's `send` waits on drain once the transport's write buffer is over its high-water
  mark, that is when the client stopped taking bytes. A send that does not wait (nearly all
  of them) costs no timer.
- `ServerExit` learns of SIGTERM/SIGINT when the server does: uvicorn (the server here,
  `edge_ops/cli.py`) waits for open responses before the lifespan shutdown runs, so a
  stream must hear of it another way. Like sse-starlette's `AppStatus`, which patches
  `uvicorn.Server.handle_exit`, it chains the signal handler the server installed; unlike
  it, no task polls a flag: the handler schedules the callbacks on the loop.

- `DeferredStreams` runs a stream after the framework's request handling has returned: a
  FastAPI route keeps its routing, dependency and exception-handling frames (and their exit
  stacks) alive for as long as its response runs, about 9 KiB per stream; a response that
  hands itself over (`defer`) leaves all that behind and streams from this middleware.

Everything here runs on one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SLOT = "edge_bridge.deferred_stream"
_REQUEST_STATE = (
    "fastapi",
    "fastapi_middleware_astack",
    "fastapi_inner_astack",
    "fastapi_function_astack",
)
Stream = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]


class DeferredStreams:
    """Pure ASGI middleware: runs the stream a response `defer`red, once the app returned.

    Added inside the security headers middleware, so a deferred stream's headers still get
    theirs; errors in the stream reach the server error middleware as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot: list[Stream] = []
        scope[_SLOT] = slot
        await self.app(scope, receive, send)
        if slot:
            stream = slot.pop()
            # FastAPI's per-request state (its routing context, the request's exit stacks,
            # closed by now) would stay referenced by the scope for the stream's hours.
            for key in _REQUEST_STATE:
                scope.pop(key, None)
            await stream(scope, receive, send)


def defer(scope: Scope, stream: Stream) -> bool:
    """Hand `stream` to `DeferredStreams` to run after the app returns; False without it."""
    slot: list[Stream] | None = scope.get(_SLOT)
    if slot is None or slot:
        return False
    slot.append(stream)
    return True


class DisconnectWatch:
    """Calls `on_disconnect` once `receive()` says `http.disconnect`; no task involved.

    A request body (an event stream's GET has none) is read and dropped. `close()` stops the
    watch; call it when the response is done. Only for a `receive` that awaits asyncio
    futures (uvicorn's, Starlette's test clients'); anything else ends the watch, logged.
    """

    __slots__ = ("_coro", "_on_disconnect", "_pending", "_receive")

    def __init__(self, receive: Receive, on_disconnect: Callable[[], None]) -> None:
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._coro: Coroutine[Any, Any, Message] | None = None
        self._pending: asyncio.Future[Any] | None = None
        self._next()

    def close(self) -> None:
        """Stop watching (idempotent); the server's waiter is cleaned up, not left behind."""
        coro, pending = self._coro, self._pending
        self._coro = self._pending = None
        if pending is not None:
            pending.remove_done_callback(self._step)
        if coro is not None:
            coro.close()

    def _next(self) -> None:
        self._coro = self._receive()  # type: ignore[assignment]
        self._step(None)

    def _step(self, _done: asyncio.Future[Any] | None) -> None:
        coro = self._coro
        if coro is None:
            return
        self._pending = None
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            self._coro = None
            self._received(stop.value)
            return
        except Exception:
            self._coro = None
            logger.exception("SSE disconnect watch failed")
            return
        if yielded is None:  # a bare yield (asyncio.sleep(0)): step again on the next pass
            asyncio.get_running_loop().call_soon(self._step, None)
        elif isinstance(yielded, asyncio.Future):
            yielded._asyncio_future_blocking = False  # what asyncio.Task does with it
            self._pending = yielded
            yielded.add_done_callback(self._step)
        else:
            self.close()
            logger.warning("SSE disconnect watch ended reason=not_a_future got=%r", yielded)

    def _received(self, message: Message) -> None:
        if message["type"] == "http.disconnect":
            self._on_disconnect()
        else:  # a body chunk: wait for the next message
            self._next()


async def send_within(send: Send, message: Message, timeout: float) -> bool:  # noqa: ASYNC109
    """Send `message`; False if the send waited longer than `timeout` (it is abandoned)."""
    coro = send(message)
    try:
        waiting_on = coro.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return True  # written at once: the common case, no timer
    try:
        async with asyncio.timeout(timeout):
            await _resume(coro, waiting_on)  # type: ignore[arg-type]
    except TimeoutError:
        return False
    return True


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], waiting_on: object) -> Generator[Any, None, Any]:
    """Finish a coroutine that was stepped once by hand and is waiting on `waiting_on`."""
    try:
        yield waiting_on
    except BaseException:
        coro.close()
        raise
    return (yield from coro)


class ServerExit:
    """Runs callbacks on the loop when the server is told to exit (SIGTERM, SIGINT).

    `install()` chains the handlers the server installed with `signal.signal` (uvicorn
    does, and restores its predecessors when it stops); without a server, it does nothing.
    """

    __slots__ = ("_callbacks", "_installed", "_loop", "exiting")

    def __init__(self) -> None:
        self.exiting = False
        self._callbacks: list[Callable[[], object]] = []
        self._installed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, callback: Callable[[], object]) -> None:
        """`callback` runs on the loop once the server is told to exit."""
        self._callbacks.append(callback)

    def install(self) -> None:
        """Chain the running server's signal handlers, once; call it from the loop."""
        if self._installed:
            return
        self._installed = True
        self._loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous) or previous is signal.default_int_handler:
                continue  # no server handles it: nothing to chain
            try:
                signal.signal(sig, self._chain(previous))
            except ValueError:  # not the main thread: the server here handles no signals
                return

    def _chain(self, previous: Callable[[int, types.FrameType | None], Any]) -> Any:
        def handler(sig: int, frame: types.FrameType | None) -> None:
            # Runs in the main thread between two bytecodes of whatever the loop was doing:
            # only hand over to the loop here.
            previous(sig, frame)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.fire)

        return handler

    def fire(self) -> None:
        """Run the callbacks (once); also what the signal handler schedules."""
        if self.exiting:
            return
        self.exiting = True
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                logger.exception("SSE shutdown callback failed")
