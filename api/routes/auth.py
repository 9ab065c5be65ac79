"""`POST /api/auth/login` and `POST /api/auth/refresh`: JWTs for staff."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from sqlmodel import select

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
    limiters = request.app.state.login_limiters
    client = request.client.host if request.client else "-"
    for limiter, key in ((limiters.by_email, email), (limiters.by_address, client)):
        wait = limiter.retry_after(key)
        if wait > 0:
            logger.warning("Login rate limited client=%s retry_after_s=%.0f", client, wait)
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"Too many login attempts; try again in {int(wait) + 1} s",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        limiter.hit(key)


@router.post("/login", response_model=TokenOut, responses=_ERRORS)
def login(
    body: LoginIn, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenOut:
    email = body.email.lower()
    _check_rate(request, email)
    staff = session.exec(select(Staff).where(Staff.email == email)).first()
    if not verify_password(body.password, staff.password_hash if staff else None) or not staff:
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
        logger.warning("Refresh refused reason=%s", str(exc).replace(" ", "_"))
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
