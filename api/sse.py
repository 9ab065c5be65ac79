"""`GET /api/sse/events`: the hub's events as Server-Sent Events (CONTRACT §5).

Authentication happens in a dependency, so a bad token gets a 401 JSON answer, never a 200
that closes. Each event is encoded once and the same bytes go to every client. The stream
ends when the access token expires, when the hub closes a slow client (it reconnects with
`Last-Event-ID` and replays), or on shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import AdminStaff, CurrentStaff, HubDep, StoreDep
from api.schemas import ErrorOut, SseStats
from api.security import Principal
from edge_bridge.eventlog import staff_groups
from edge_bridge.events import Event
from edge_bridge.hub import Hub

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/sse", tags=["events"])

RETRY_MS = 1000
SEND_TIMEOUT_SECONDS = 10.0
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_CACHE_SIZE = 2048
_encoded: OrderedDict[int, bytes] = OrderedDict()


def encode_event(event: Event) -> bytes:
    """The SSE frame of an event; log events are encoded once and shared by every client."""
    if event.id and (cached := _encoded.get(event.id)) is not None:
        return cached
    data = json.dumps(event.envelope(), ensure_ascii=False, separators=(",", ":"))
    frame = f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()
    if event.id:
        _encoded[event.id] = frame
        if len(_encoded) > _CACHE_SIZE:
            _encoded.popitem(last=False)
    return frame


def _connected_frame(staff: Principal, active: frozenset[int], ogs: frozenset[int]) -> bytes:
    body = {
        "status": "ready",
        "user_id": str(staff.staff_id),
        "subscribed_groups": [str(g) for g in sorted(active)],
        "ogs_groups": [str(g) for g in sorted(ogs)],
    }
    data = json.dumps(body, separators=(",", ":"))
    return f"retry: {RETRY_MS}\n\nevent: connected\ndata: {data}\n\n".encode()


def _parse_last_event_id(header: str | None, query: str | None) -> int | None:
    raw = header if header is not None else query
    if raw is None or raw.strip() == "":
        return None
    if not raw.strip().isdigit():
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"Last-Event-ID must be a number, got: {raw[:20]!r}"
        )
    return int(raw)


async def _stream(
    hub: Hub,
    staff: Principal,
    store: StoreDep,
    groups: tuple[frozenset[int], frozenset[int]],
    last_event_id: int | None,
) -> AsyncIterator[bytes]:
    active, ogs = groups
    async with hub.subscribe(
        staff_id=staff.staff_id,
        active_group_ids=active,
        ogs_group_ids=ogs,
        last_event_id=last_event_id,
    ) as subscription:
        # A supervision may have changed between the lookup and the registration.
        now_groups = await store.read(lambda session: staff_groups(session, staff.staff_id))
        if now_groups != groups:
            subscription.set_groups(*now_groups)
        yield _connected_frame(staff, *now_groups)
        try:
            async with asyncio.timeout(max(0.0, staff.expires_at - time.time())):
                async for event in subscription:
                    yield encode_event(event)
        except TimeoutError:
            logger.info("SSE stream ended reason=token_expired user_id=%s", staff.staff_id)


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        400: {"model": ErrorOut},
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
    },
)
async def get_events(
    request: Request,
    staff: CurrentStaff,
    hub: HubDep,
    store: StoreDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(max_length=20)] = None,
) -> EventSourceResponse:
    resume_from = _parse_last_event_id(last_event_id_header, last_event_id)
    groups = await store.read(lambda session: staff_groups(session, staff.staff_id))
    settings = request.app.state.settings
    return EventSourceResponse(
        _stream(hub, staff, store, groups, resume_from),
        headers=HEADERS,
        ping=settings.sse_heartbeat_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
        send_timeout=SEND_TIMEOUT_SECONDS,
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
