"""The naive reference for `bench/sse_fanout.py`: FastAPI + sse-starlette, a queue per client.

    .venv/bin/python -m uvicorn --app-dir bench baseline_sse_server:app --port 8001 --backlog 16384

What most tutorials write: every client gets an unbounded `asyncio.Queue`; `POST /publish`
puts the event on every queue; each client's generator awaits its queue and yields a dict that
sse-starlette encodes for that client. No authentication, no replay, no slow-client handling.

`POST /publish` takes the envelope JSON (`{"type", "data": {...}, ...}`) as its body and sends
it unchanged as the `data:` line, with a counter as `id:` and the envelope's type as `event:`.
`GET /events` starts with an `event: connected` frame, like the real endpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from sse_starlette import EventSourceResponse

app = FastAPI()
clients: set[asyncio.Queue[dict[str, Any]]] = set()
published = 0


async def _stream(queue: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    clients.add(queue)
    try:
        yield {"event": "connected", "data": '{"status":"ready"}'}
        while True:
            yield await queue.get()
    finally:
        clients.discard(queue)


@app.get("/events")
async def events() -> EventSourceResponse:
    return EventSourceResponse(_stream(asyncio.Queue()))


@app.post("/publish")
async def publish(request: Request) -> dict[str, int]:
    global published
    body = (await request.body()).decode()
    published += 1
    message = {"id": str(published), "event": json.loads(body)["type"], "data": body}
    for queue in clients:
        queue.put_nowait(message)
    return {"recipients": len(clients)}


@app.get("/stats")
async def stats() -> dict[str, int]:
    return {"clients": len(clients), "published": published}
