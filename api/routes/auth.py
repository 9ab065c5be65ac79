"""`POST /api/auth/login` and `POST /api/auth/refresh`: JWTs for staff.

Login attempts are limited per email and per client address (`app.state.login_limiters`);
over the limit the answer is 429 with `Retry-After`, before any password is checked.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsDep
from api.schemas import ErrorOut, LoginIn, RefreshIn, TokenOut
from api.security import ACCESS_COOKIE, token_from_request
from edge_bridge.models import Staff
from edge_bridge.passwords import verify_password
from edge_bridge.tokens import TokenError, decode_token, issue_token

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/auth", tags=["auth"])
_ERRORS = {401: {"model": ErrorOut}, 422: {"model": ErrorOut}, 429: {"model": ErrorOut}}


def _set_cookie(response: Response, token: str, ttl: int, request: Request) -> None:
    response.set_cookie(
        ACCESS_COOKIE,
        token,
        max_age=ttl,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def _check_rate(request: Request, email: str) -> None:
    """429 while the email or the client address is over its limit; else count this attempt."""
    limiters = request.app.state.login_limiters
    client = request.client.host if request.client else "-"
    keyed = ((limiters.by_email, email, "email"), (limiters.by_address, client, "address"))
    waits = [(limiter.retry_after(key), kind) for limiter, key, kind in keyed]
    wait, kind = max(waits)
    if wait > 0:
        seconds = math.ceil(wait)
        logger.warning(
            "Login rate limited limit=%s client=%s retry_after_s=%d", kind, client, seconds
        )
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"Too many login attempts; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    for limiter, key, _kind in keyed:
        limiter.hit(key)


def _find_staff(engine: Engine, email: str, password: str) -> Staff | None:
    """The staff member with that email and password, or None (same cost either way)."""
    with Session(engine, expire_on_commit=False) as session:
        staff = session.exec(select(Staff).where(Staff.email == email)).first()
    matches = verify_password(password, staff.password_hash if staff else None)
    return staff if matches else None


@router.post("/login", response_model=TokenOut, responses=_ERRORS)
async def login(
    body: LoginIn, request: Request, response: Response, settings: SettingsDep
) -> TokenOut:
    email = body.email.lower()
    # On the event loop, so checking and counting an attempt is one step even under a burst.
    _check_rate(request, email)
    staff = await run_in_threadpool(_find_staff, request.app.state.engine, email, body.password)
    if staff is None:
        logger.info("Login failed reason=bad_credentials")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Wrong email or password")
    request.app.state.login_limiters.by_email.reset(email)
    secret = settings.jwt_secret
    access = issue_token(
        staff.id, secret=secret, ttl_seconds=settings.jwt_access_ttl, admin=staff.admin
    )
    refresh = issue_token(
        staff.id, secret=secret, ttl_seconds=settings.jwt_refresh_ttl, token_type="refresh"
    )
    _set_cookie(response, access, settings.jwt_access_ttl, request)
    logger.info("Login succeeded staff_id=%s", staff.id)
    return TokenOut(access_token=access, refresh_token=refresh, expires_in=settings.jwt_access_ttl)


@router.post("/refresh", response_model=TokenOut, responses=_ERRORS)
def refresh(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[RefreshIn | None, Body()] = None,
) -> TokenOut:
    token = body.refresh_token if body else token_from_request(request)[0]
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Refresh token missing")
    try:
        claims = decode_token(token, secret=settings.jwt_secret, expected_type="refresh")
    except TokenError as exc:
        logger.warning("Refresh refused reason=%s", exc.reason)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail=f"Invalid refresh token: {exc}"
        ) from None
    staff = session.get(Staff, claims.staff_id)
    if staff is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Not a staff member")
    access = issue_token(
        staff.id, secret=settings.jwt_secret, ttl_seconds=settings.jwt_access_ttl, admin=staff.admin
    )
    _set_cookie(response, access, settings.jwt_access_ttl, request)
    return TokenOut(access_token=access, expires_in=settings.jwt_access_ttl)
