"""Dependencies handlers declare: database session, hub, store, the parts of the bridge, the
current staff member and their school. Handlers take these, never `request.app.state`."""

from __future__ import annotations

from collections.abc import Generator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.event_stream import ServerExit
from api.ratelimit import LoginLimits
from api.security import Principal, authenticate, require_operator
from edge_bridge.bridge import Bridge
from edge_bridge.config import Settings
from edge_bridge.directory import StaffDirectory
from edge_bridge.hub import Hub
from edge_bridge.metrics import Metrics
from edge_bridge.presence import Presence
from edge_bridge.queries import SchoolScope
from edge_bridge.refresh_tokens import PruneSchedule
from edge_bridge.store import Store
from edge_bridge.token_cache import AccessTokenCache
from edge_bridge.tokens import TokenClaims


def get_session(request: Request) -> Generator[Session, None, None]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


# `async def` on purpose: FastAPI runs plain `def` dependencies in a worker thread, and a
# thread hop per dependency per request showed up as a fifth of the cost of opening a stream.
async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_hub(request: Request) -> Hub:
    return request.app.state.hub


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_bridge(request: Request) -> Bridge:
    return request.app.state.bridge


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_directory(request: Request) -> StaffDirectory:
    return request.app.state.directory


async def get_presence(request: Request) -> Presence | None:
    return request.app.state.presence


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_login_limits(request: Request) -> LoginLimits:
    return request.app.state.login_limiters


async def get_refresh_prune(request: Request) -> PruneSchedule:
    return request.app.state.refresh_prune


CurrentStaff = Annotated[Principal, Depends(authenticate)]


async def require_admin(staff: CurrentStaff) -> Principal:
    if not staff.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Admin only")
    return staff


async def current_school(staff: CurrentStaff, request: Request) -> SchoolScope:
    """The school of the request's token: what every scoped query is limited to."""
    state = request.app.state
    timezone = state.directory.school_timezone(staff.school_id, state.settings.timezone)
    return SchoolScope(staff.school_id, timezone)


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[Store, Depends(get_store)]
HubDep = Annotated[Hub, Depends(get_hub)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BridgeDep = Annotated[Bridge, Depends(get_bridge)]
EngineDep = Annotated[Engine, Depends(get_engine)]
DirectoryDep = Annotated[StaffDirectory, Depends(get_directory)]
PresenceDep = Annotated[Presence | None, Depends(get_presence)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
LoginLimitsDep = Annotated[LoginLimits, Depends(get_login_limits)]
RefreshPruneDep = Annotated[PruneSchedule, Depends(get_refresh_prune)]
AdminStaff = Annotated[Principal, Depends(require_admin)]
School = Annotated[SchoolScope, Depends(current_school)]


async def get_server_exit(request: Request, hub: HubDep) -> ServerExit:
    """The app's `ServerExit`, made on the first stream (the server's signal handlers are in
    place by then): SIGTERM closes every stream at once, so each ends with a complete
    response well before uvicorn stops waiting for them."""
    state = request.app.state
    watch: ServerExit | None = getattr(state, "sse_server_exit", None)
    if watch is None:
        watch = ServerExit()
        state.sse_server_exit = watch
        watch.add(lambda: hub.close_all("shutdown"))
        watch.install()
    return watch


ServerExitDep = Annotated[ServerExit, Depends(get_server_exit)]


async def get_access_tokens(request: Request) -> AccessTokenCache:
    return request.app.state.access_tokens


AccessTokensDep = Annotated[AccessTokenCache, Depends(get_access_tokens)]
# The operator (`superadmin`): lists schools and their health, sees no school's records.
Operator = Annotated[TokenClaims, Depends(require_operator)]
