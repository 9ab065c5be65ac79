"""`GET /api/sse/events`: the hub's events as Server-Sent Events (CONTRACT §5).

Authentication happens in a dependency, so a bad token gets a 401 JSON answer, never a 200
that closes; with `SSE_MAX_STREAMS` streams open the request gets a 503 (with `Retry-After`)
before any stream starts. The hub encodes each event once with `encode_event` and the same
bytes go to every client. The `connected` frame carries an `id:` too (the last event id
before this stream began), so a client that disconnects before its first event still resumes
without a gap. The stream ends, always with a complete response, when the access token
expires, when its client stops taking bytes (a send waits longer than
`SSE_SEND_TIMEOUT_SECONDS`, or more than `SSE_CLIENT_BUFFER` bytes wait for it in the hub;
the browser reconnects with `Last-Event-ID` and replays), when its staff member opens more
than `SSE_MAX_STREAMS_PER_STAFF` streams (the oldest ends), or on shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from api.deps import AdminStaff, CurrentStaff, HubDep, SettingsDep
from api.schemas import ErrorOut, SseStats
from api.security import Principal
from edge_bridge.directory import StaffDirectory
from edge_bridge.events import Event
from edge_bridge.hub import Hub, Subscription
from edge_bridge.tuning import (
    EVENT_ID_MAX_DIGITS,
    SSE_FULL_RETRY_AFTER_SECONDS,
    SSE_RETRY_MS,
    SSE_SHUTDOWN_GRACE_SECONDS,
    SSE_WRITE_CHUNK_BYTES,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/sse", tags=["events"])

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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


class StreamShutdown:
    """Given to sse-starlette as its `shutdown_event`: server shutdown closes the subscription.

    Intentional divergence: sse-starlette expects an `anyio.Event` and only ever calls `set()`
    on it (when uvicorn got SIGTERM). Waiting on a real event would cost a task per stream;
    this object instead ends our iterator at once, so every stream finishes with a complete
    response (the final chunk) inside the grace period rather than being cancelled mid-body.
    """

    __slots__ = ("_is_set", "subscription")

    def __init__(self) -> None:
        self.subscription: Subscription | None = None
        self._is_set = False

    def set(self) -> None:
        self._is_set = True
        if self.subscription is not None:
            self.subscription.close("shutdown")

    def is_set(self) -> bool:
        return self._is_set

    def attach(self, subscription: Subscription) -> None:
        self.subscription = subscription
        if self._is_set:
            subscription.close("shutdown")


class EventStreamResponse(EventSourceResponse):
    """sse-starlette's response, where a client that stops reading is an expected outcome.

    When a send waits longer than `send_timeout` (the client stopped reading and its socket
    buffers are full), sse-starlette raises `SendTimeoutError`; uncaught, uvicorn logs it as
    an application error with a traceback. Here it is one warning line; the connection is then
    closed and the browser reconnects with `Last-Event-ID`.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            client = scope.get("client") or ("-", 0)
            logger.warning(
                "SSE client closed reason=send_timeout client=%s timeout_s=%s",
                client[0],
                self.send_timeout,
            )


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
            "SSE client refused reason=too_many_streams_total user_id=%d", staff.staff_id
        )
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="Too many open event streams on this server; retry later",
            headers={"Retry-After": str(SSE_FULL_RETRY_AFTER_SECONDS)},
        )


async def _stream(
    hub: Hub,
    staff: Principal,
    directory: StaffDirectory,
    groups: tuple[frozenset[int], frozenset[int]],
    last_event_id: int | None,
    shutdown: StreamShutdown,
) -> AsyncIterator[bytes]:
    active, ogs = groups
    loop = asyncio.get_running_loop()
    async with hub.subscribe(
        staff_id=staff.staff_id,
        active_group_ids=active,
        ogs_group_ids=ogs,
        last_event_id=last_event_id,
        admin=staff.admin,
    ) as subscription:
        shutdown.attach(subscription)
        # Ends the stream when the token expires: closing the subscription ends the loop
        # below at once, with no cancellation thrown into sse-starlette's send.
        expiry = loop.call_later(
            max(0.0, staff.expires_at - time.time()), subscription.close, "token_expired"
        )
        try:
            # A supervision may have changed between the lookup and the registration; the
            # writer updates the directory before it tells the hub, so this read catches it.
            now_groups = directory.groups(staff.staff_id)
            if now_groups != groups:
                subscription.set_groups(*now_groups)
            yield connected_frame(staff, *now_groups, start_after_id=subscription.start_after_id)
            while frames := await subscription.read(SSE_WRITE_CHUNK_BYTES):
                yield frames
        finally:
            expiry.cancel()


@router.get(
    "/events",
    response_class=EventStreamResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        400: {"model": ErrorOut},
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        503: {"model": ErrorOut, "description": "SSE_MAX_STREAMS streams are open"},
    },
)
async def get_events(
    request: Request,
    staff: CurrentStaff,
    hub: HubDep,
    settings: SettingsDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(max_length=20)] = None,
) -> EventStreamResponse:
    resume_from = parse_last_event_id(last_event_id_header, last_event_id)
    refuse_when_full(hub, staff)
    directory: StaffDirectory = request.app.state.directory
    groups = directory.groups(staff.staff_id)
    shutdown = StreamShutdown()
    return EventStreamResponse(
        _stream(hub, staff, directory, groups, resume_from, shutdown),
        headers=HEADERS,
        ping=settings.sse_heartbeat_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
        send_timeout=settings.sse_send_timeout_seconds,
        shutdown_event=shutdown,  # type: ignore[arg-type]  # see StreamShutdown
        shutdown_grace_period=SSE_SHUTDOWN_GRACE_SECONDS,
    )


@router.get(
    "/stats",
    response_model=SseStats,
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
async def get_stats(staff: AdminStaff, hub: HubDep) -> SseStats:
    stats = hub.stats()
    return SseStats(
        total_clients=stats.total_clients,
        groups={str(k): v for k, v in stats.groups.items()},
        ogs_groups={str(k): v for k, v in stats.ogs_groups.items()},
    )
