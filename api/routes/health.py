"""`/health`, `/ready` and `/metrics`: for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


def _database_ok(request: Request) -> bool:
    """A fresh `SELECT 1`, and no transient error holding up the scans right now (a locked
    SQLite still answers reads, but scans wait)."""
    if request.app.state.bridge.database_unreachable():
        return False
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


@router.get(
    "/ready",
    responses={503: {"description": "Not ready", "content": {"application/json": {}}}},
)
async def ready(request: Request) -> JSONResponse:
    """200 when the database and the broker are reachable and (PostgreSQL) the event-log
    tail keeps up, else 503 naming what is not."""
    checks = {
        "database": "ok" if await run_in_threadpool(_database_ok, request) else "unreachable",
        "mqtt": "ok" if request.app.state.ingest_healthy() else "disconnected",
    }
    tail = request.app.state.bridge.tail_status()  # PostgreSQL only: the log → this hub
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
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
