"""`create_app(settings)`: assembles routers, error handling, the dashboard and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api import sse
from api.event_stream import DeferredStreams
from api.headers import SecurityHeadersMiddleware
from api.ratelimit import LoginLimits
from api.routes import (
    attendance,
    auth,
    devices,
    directory,
    groups,
    health,
    me,
    occupancy,
    ogs,
    schools,
)
from edge_bridge.bridge import Bridge
from edge_bridge.config import Settings
from edge_bridge.errors import EdgeBridgeError
from edge_bridge.refresh_tokens import PruneSchedule
from edge_bridge.token_cache import AccessTokenCache
from edge_bridge.tuning import REFRESH_TOKEN_PRUNE_INTERVAL_SECONDS

STATIC_DIR = Path(__file__).parent / "static"


async def _core_error(_request: Request, exc: Exception) -> JSONResponse:
    status_code = getattr(exc, "status_code", 500)
    return JSONResponse({"detail": str(exc)}, status_code=status_code)


def _field_of(error: dict[str, Any]) -> str:
    """`name` for a body field, `group_id (path)` for a parameter, `body` for the whole body."""
    where, *path = error.get("loc") or ("body",)
    if where != "body":
        return f"{'.'.join(map(str, path))} ({where})"
    if error.get("type") == "json_invalid" or not path:
        return "body"
    return ".".join(map(str, path))


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """422 with a readable `detail` naming each bad field, and the details under `errors`.

    The submitted values are left out: a login body carries a password.
    """
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    problems = "; ".join(f"{_field_of(error)}: {error['msg']}" for error in errors)
    return JSONResponse(
        {"detail": f"Invalid request: {problems}", "errors": errors}, status_code=422
    )


def create_app(settings: Settings, *, mqtt: bool = True) -> FastAPI:
    bridge = Bridge(settings, mqtt=mqtt, encode=sse.encode_event)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await bridge.start()
        try:
            yield
        finally:
            await bridge.stop()

    app = FastAPI(title="edge-bridge", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.bridge = bridge
    app.state.engine = bridge.engine
    app.state.store = bridge.store
    app.state.hub = bridge.hub
    app.state.metrics = bridge.metrics
    app.state.presence = bridge.presence
    app.state.directory = bridge.directory
    app.state.access_tokens = AccessTokenCache(secret=settings.jwt_secret)
    app.state.ingest_healthy = bridge.ingest_healthy
    app.state.login_limiters = LoginLimits(bridge.engine)  # per-email counts: shared
    app.state.refresh_prune = PruneSchedule(REFRESH_TOKEN_PRUNE_INTERVAL_SECONDS)
    # Pure ASGI (no BaseHTTPMiddleware): it adds headers to the response start and passes
    # every body chunk through untouched, so event streams are neither buffered nor broken.
    app.add_middleware(DeferredStreams)  # inside the headers one: see api/event_stream.py
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_exception_handler(EdgeBridgeError, _core_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for router in (
        health.router,
        auth.router,
        me.router,
        groups.router,
        devices.router,
        directory.router,
        ogs.router,
        attendance.router,
        occupancy.router,
        schools.router,
        sse.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    return app
