"""api/security.py: who a token lets in. A staff token only while its subject is staff of the
token's school, the operator's token only where the operator is asked for, and every route
but login and the operator's own asks for a staff member."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter
from starlette.requests import Request

from api import routes, sse
from api.security import Principal, authenticate, require_operator
from edge_bridge.directory import DirectorySnapshot, StaffDirectory, StaffEntry
from edge_bridge.token_cache import AccessTokenCache
from edge_bridge.tokens import TokenClaims, issue_operator_token, issue_token

SECRET = "q" * 48
SCHMIDT = StaffEntry(1, "Frau Schmidt", "schmidt@example.org", False, 1)
NORD_ADMIN = StaffEntry(201, "Herr Berg", "berg@nord.example.org", True, 2)
# Routes any caller may use: login and its kin, the probes, the operator's school list.
OPEN_PATHS = {"/api/auth/login", "/api/auth/refresh", "/api/auth/logout"}


def _directory(*staff: StaffEntry) -> StaffDirectory:
    directory = StaffDirectory()
    directory.replace(DirectorySnapshot({entry.id: entry for entry in staff}, {}))
    return directory


def _request(token: str | None) -> Request:
    headers = [(b"host", b"bridge.example")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "https",
            "path": "/api/me",
            "query_string": b"",
            "headers": headers,
            "server": ("bridge.example", 443),
            "client": ("192.0.2.10", 50000),
        }
    )


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def _refusal(coroutine: Coroutine[Any, Any, Any]) -> tuple[int, str]:
    with pytest.raises(HTTPException) as refused:
        _run(coroutine)
    return refused.value.status_code, refused.value.detail


def _staff_token(staff_id: int, *, school_id: int, admin: bool = False) -> str:
    return issue_token(staff_id, school_id=school_id, secret=SECRET, ttl_seconds=60, admin=admin)


def test_a_staff_token_of_the_staff_members_school_gives_a_principal_of_that_school() -> None:
    tokens, directory = AccessTokenCache(secret=SECRET), _directory(SCHMIDT, NORD_ADMIN)

    principal = _run(authenticate(_request(_staff_token(201, school_id=2)), tokens, directory))

    assert isinstance(principal, Principal)
    assert (principal.staff_id, principal.school_id, principal.admin) == (201, 2, True)


def test_a_token_naming_another_school_than_the_staff_members_is_refused_with_403(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens, directory = AccessTokenCache(secret=SECRET), _directory(SCHMIDT, NORD_ADMIN)
    foreign = _staff_token(1, school_id=2)  # Frau Schmidt is of school 1
    foreign_admin = _staff_token(201, school_id=1, admin=True)  # Herr Berg is of school 2

    refusals = [
        _refusal(authenticate(_request(token), tokens, directory))
        for token in (foreign, foreign_admin)
    ]

    assert refusals == [(403, "Not a staff member")] * 2
    assert "Auth refused reason=school_mismatch staff_id=1 " in caplog.text
    assert "Auth refused reason=school_mismatch staff_id=201 " in caplog.text
    assert foreign not in caplog.text


def test_an_operator_token_is_refused_where_a_staff_member_is_asked_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens, directory = AccessTokenCache(secret=SECRET), _directory(SCHMIDT)
    operator = issue_operator_token(secret=SECRET, ttl_seconds=60)

    refusal = _refusal(authenticate(_request(operator), tokens, directory))

    assert refusal == (403, "Operator tokens see no school")
    assert "Auth refused reason=operator_token path=/api/me " in caplog.text


def test_only_an_operator_token_passes_require_operator_and_no_token_is_401() -> None:
    tokens = AccessTokenCache(secret=SECRET)
    operator = issue_operator_token(secret=SECRET, ttl_seconds=60)

    claims = _run(require_operator(_request(operator), tokens))
    refusals = {
        name: _refusal(require_operator(_request(token), tokens))
        for name, token in {
            "staff": _staff_token(1, school_id=1),
            "admin": _staff_token(201, school_id=2, admin=True),
            "none": None,
        }.items()
    }

    assert isinstance(claims, TokenClaims) and claims.superadmin and claims.school_id is None
    assert refusals["staff"] == refusals["admin"] == (403, "Operator only")
    assert refusals["none"] == (401, "Not authenticated")


def _calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _api_routes() -> list[APIRoute]:
    """Every route of every router module (`api/routes/*`, `api/sse.py`), prefix included."""
    modules = [sse] + [
        importlib.import_module(f"api.routes.{info.name}")
        for info in pkgutil.iter_modules(routes.__path__)
    ]
    routers = [
        module.router
        for module in modules
        if isinstance(getattr(module, "router", None), APIRouter)
    ]
    return [route for router in routers for route in router.routes if isinstance(route, APIRoute)]


def test_every_api_route_but_login_and_the_school_list_takes_a_staff_member() -> None:
    needs: dict[str, set[object]] = {}
    for route in _api_routes():
        needs.setdefault(route.path, set()).update(_calls(route.dependant))

    api = {path for path in needs if path.startswith("/api/")}
    staff_only = {path for path in api if authenticate in needs[path]}
    operator_only = {path for path in api if require_operator in needs[path]}

    assert operator_only == {"/api/schools"}
    assert authenticate not in needs["/api/schools"]
    assert staff_only == api - OPEN_PATHS - operator_only
    assert {"/api/me", "/api/sse/events", "/api/devices"} <= staff_only  # the check has teeth


@pytest.mark.parametrize("first", ["api.security", "api.deps"])
def test_security_and_deps_import_in_either_order(first: str) -> None:
    other = "api.deps" if first == "api.security" else "api.security"
    code = f"import {first}, {other}; print({other}.__name__)"

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == other
