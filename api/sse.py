"""`GET /api/sse/events`: the hub's events as Server-Sent Events (CONTRACT §5).

Authentication happens in a dependency, so a bad token gets a 401 JSON answer, never a 200
that closes. A stream is of the token's school (`Principal.school_id`): the hub delivers it
only that school's events, live and replayed, and `GET /api/sse/stats` counts only that
school's streams; with `SSE_MAX_STREAMS` streams open the request gets a 503 (with `Retry-After`)
before any stream starts. The hub encodes each event once with `encode_event` and the same
bytes go to every client. The `connected` frame carries an `id:` too (the last event id
before this stream began), so a client that disconnects before its first event still resumes
without a gap. The stream ends with a complete response when the access token expires,
when more than `SSE_CLIENT_BUFFER` bytes wait for its client in the hub, when its staff
member opens more than `SSE_MAX_STREAMS_PER_STAFF` streams (the oldest ends), or on
shutdown (at once on SIGTERM); a client that stops taking bytes (a send waits longer than
`SSE_SEND_TIMEOUT_SECONDS`) has its connection dropped. Either way the browser reconnects
with `Last-Event-ID` and replays what it missed.

`EventStream` is our own ASGI response, shaped for thousands of identical idle streams: one
task per stream (the request's own), one timer at a time (the next heartbeat or the token's
expiry), no timer per send, and none of the request's framework state kept while it streams
(api/event_stream.py has the machinery and the reasons).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, status
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.deps import (
    AdminStaff,
    CurrentStaff,
    DirectoryDep,
    HubDep,
    School,
    ServerExitDep,
    SettingsDep,
)
from api.event_stream import DisconnectWatch, ServerExit, defer, send_within
from api.schemas import ErrorOut, SseStats
from api.security import Principal
from edge_bridge.directory import StaffDirectory
from edge_bridge.events import Event
from edge_bridge.hub import Hub, Subscription
from edge_bridge.tuning import (
    EVENT_ID_MAX_DIGITS,
    SSE_FULL_RETRY_AFTER_SECONDS,
    SSE_RETRY_MS,
    SSE_WRITE_CHUNK_BYTES,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/sse", tags=["events"])

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT = b": heartbeat\n\n"
_RAW_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    *((name.lower().encode(), value.encode()) for name, value in HEADERS.items()),
]


def encode_event(event: Event) -> bytes:
    """The SSE frame of an event: the hub's encoder (`Hub(encode=...)`), called once per
    published event, whose bytes every stream then shares."""
    data = json.dumps(event.envelope(), ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


def connected_frame(
    staff: Principal, active: frozenset[int], ogs: frozenset[int], *, start_after_id: int
) -> bytes:
    """`retry:`, then `connected`; its `id:` is where a client that saw nothing else resumes."""
    body = {
        "status": "ready",
        "user_id": str(staff.staff_id),
        "subscribed_groups": [str(g) for g in sorted(active)],
        "ogs_groups": [str(g) for g in sorted(ogs)],
    }
    data = json.dumps(body, separators=(",", ":"))
    retry = f"retry: {SSE_RETRY_MS}\n\n"
    return f"{retry}id: {start_after_id}\nevent: connected\ndata: {data}\n\n".encode()


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    """The id to resume after: the `Last-Event-ID` header, else the `last_event_id` parameter."""
    raw = (header or "").strip() or (query or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdecimal() and len(raw) <= EVENT_ID_MAX_DIGITS):
        msg = f"Last-Event-ID must be a non-negative event id, got: {raw[:20]!r}"
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=msg)
    return int(raw)


def refuse_when_full(hub: Hub, staff: Principal) -> None:
    """503 with `Retry-After` when this process has SSE_MAX_STREAMS open: before the stream
    starts, so the client sees a plain JSON error, not a 200 that ends."""
    if hub.is_full():
        logger.warning(
            "SSE client refused reason=too_many_streams_total user_id=%d school_id=%d",
            staff.staff_id,
            staff.school_id,
        )
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="Too many open event streams on this server; retry later",
            headers={"Retry-After": str(SSE_FULL_RETRY_AFTER_SECONDS)},
        )


class EventStream(Response):
    """The event stream as an ASGI response: one task per stream (the app's own coroutine).

    It sends the headers and the `connected` frame, then, each time the subscription has
    frames or the heartbeat is due, one `send` with everything buffered (at most
    `SSE_WRITE_CHUNK_BYTES`); a final empty chunk ends it once the subscription is closed.
    The client going away closes the subscription (`DisconnectWatch`, no task); a send that
    waits longer than the send timeout (the client stopped taking bytes) ends the stream
    at once, without the final chunk nobody would read.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        hub: Hub,
        staff: Principal,
        school_id: int,
        directory: StaffDirectory,
        groups: tuple[frozenset[int], frozenset[int]],
        last_event_id: int | None,
        heartbeat_seconds: float,
        send_timeout_seconds: float,
        server_exit: ServerExit,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = _RAW_HEADERS  # shared by every stream (never changed)
        self._hub = hub
        self._staff = staff
        self._school_id = school_id
        self._directory = directory
        self._groups = groups
        self._last_event_id = last_event_id
        self._heartbeat = heartbeat_seconds
        self._send_timeout = send_timeout_seconds
        self._server_exit = server_exit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not defer(scope, self.stream):
            await self.stream(scope, receive, send)

    async def stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The whole stream: subscribe, send until the subscription closes, end it.

        One coroutine (its frame is what an idle stream holds): the subscription's read
        waits until the next heartbeat or the token's expiry, whichever comes first.
        """
        staff = self._staff
        active, ogs = self._groups
        async with self._hub.subscribe(
            school_id=self._school_id,
            staff_id=staff.staff_id,
            active_group_ids=active,
            ogs_group_ids=ogs,
            last_event_id=self._last_event_id,
            admin=staff.admin,
        ) as subscription:
            if self._server_exit.exiting:
                subscription.close("shutdown")
            watch = DisconnectWatch(receive, partial(subscription.close, "client_disconnected"))
            try:
                await send({"type": "http.response.start", "status": 200, "headers": _RAW_HEADERS})
                body: bytes | None = self._connected(subscription)
                loop = asyncio.get_running_loop()
                expires_at = loop.time() + max(0.0, staff.expires_at - time.time())
                beat_at = loop.time() + self._heartbeat
                while body:
                    message = {"type": "http.response.body", "body": body, "more_body": True}
                    if not await send_within(send, message, self._send_timeout):
                        self._stalled(subscription, scope)
                        return  # no final chunk: the client takes no more bytes
                    until = min(beat_at, expires_at)
                    body = await subscription.read(SSE_WRITE_CHUNK_BYTES, until=until)
                    if body is None and until == expires_at:
                        subscription.close("token_expired")  # the client reconnects
                    elif body is None:
                        body, beat_at = HEARTBEAT, loop.time() + self._heartbeat
            finally:
                watch.close()
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _connected(self, subscription: Subscription) -> bytes:
        """The first frame, for the groups the staff member has now.

        A supervision may have changed between the lookup and the registration; the
        writer updates the directory before it tells the hub, so this read catches it.
        """
        now_groups = self._directory.groups(self._staff.staff_id)
        if now_groups != self._groups:
            subscription.set_groups(*now_groups)
        return connected_frame(self._staff, *now_groups, start_after_id=subscription.start_after_id)

    def _stalled(self, subscription: Subscription, scope: Scope) -> None:
        subscription.close("send_timeout")
        logger.warning(
            "SSE client closed reason=send_timeout user_id=%d school_id=%d client=%s timeout_s=%s",
            self._staff.staff_id,
            self._staff.school_id,
            (scope.get("client") or ("-", 0))[0],
            self._send_timeout,
        )


@router.get(
    "/events",
    response_class=EventStream,
    status_code=200,  # EventStream takes no status_code: FastAPI's OpenAPI needs it said
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        400: {"model": ErrorOut},
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        503: {"model": ErrorOut, "description": "SSE_MAX_STREAMS streams are open"},
    },
)
async def get_events(
    staff: CurrentStaff,
    school: School,
    hub: HubDep,
    directory: DirectoryDep,
    settings: SettingsDep,
    server_exit: ServerExitDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(max_length=20)] = None,
) -> EventStream:
    resume_from = parse_last_event_id(last_event_id_header, last_event_id)
    refuse_when_full(hub, staff)
    return EventStream(
        hub=hub,
        staff=staff,
        school_id=school.school_id,
        directory=directory,
        groups=directory.groups(staff.staff_id),
        last_event_id=resume_from,
        heartbeat_seconds=settings.sse_heartbeat_seconds,
        send_timeout_seconds=settings.sse_send_timeout_seconds,
        server_exit=server_exit,
    )


@router.get(
    "/stats",
    response_model=SseStats,
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
async def get_stats(staff: AdminStaff, school: School, hub: HubDep) -> SseStats:
    stats = hub.stats(school_id=school.school_id)  # the admin's school only
    return SseStats(
        total_clients=stats.total_clients,
        groups={str(k): v for k, v in stats.groups.items()},
        ogs_groups={str(k): v for k, v in stats.ogs_groups.items()},
    )
