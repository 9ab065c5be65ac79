"""`/health`, `/ready` and `/metrics`: for load balancers, orchestrators and Prometheus.

Unscoped on purpose: they name no school's records, and anyone may ask (bind `/metrics` to
loopback in production).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from api.deps import BridgeDep, EngineDep, MetricsDep
from edge_bridge.bridge import Bridge
from edge_bridge.db import ping

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


def _database_ok(bridge: Bridge, engine: Engine) -> bool:
    """A fresh `SELECT 1`, and no transient error holding up the scans right now (a locked
    SQLite still answers reads, but scans wait)."""
    if bridge.database_unreachable():
        return False
    return ping(engine)


@router.get(
    "/ready",
    responses={503: {"description": "Not ready", "content": {"application/json": {}}}},
)
async def ready(bridge: BridgeDep, engine: EngineDep) -> JSONResponse:
    """200 when the database and the broker are reachable and (PostgreSQL) the event-log
    tail keeps up, else 503 naming what is not."""
    checks = {
        "database": "ok"
        if await run_in_threadpool(_database_ok, bridge, engine)
        else "unreachable",
        "mqtt": "ok" if bridge.ingest_healthy() else "disconnected",
    }
    tail = bridge.tail_status()  # PostgreSQL only: the log → this hub
    if tail is not None:
        checks["event_tail"] = tail
    ok = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    if not ok:
        body["detail"] = ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in checks.items() if v != "ok"
        )
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
