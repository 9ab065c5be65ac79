"""`POST /api/auth/login`, `/refresh` and `/logout`: JWTs for staff.

Login failures are limited per email and per client address (api/ratelimit.py, README
"Security"); over a limit the answer is 429 with `Retry-After`, before any password is
checked. Each refresh rotates the refresh token (edge_bridge/refresh_tokens.py): the answer
carries the next one, and presenting a used one again revokes every token of that login.
Logout revokes the login's refresh tokens and drops the access cookie.

Every token is of the staff member's school (`school` claim), as the database has it at login
and at each refresh; a refresh token of a school its staff member no longer belongs to is
refused (403) and its login revoked.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, LoginLimitsDep, RefreshPruneDep, SettingsDep
from api.ratelimit import Attempt, LoginLimits, Refusal, address_bucket
from api.schemas import ErrorOut, LoginIn, RefreshIn, TokenOut
from api.security import ACCESS_COOKIE, check_origin
from edge_bridge import refresh_tokens
from edge_bridge.config import Settings
from edge_bridge.models import Staff
from edge_bridge.passwords import verify_password
from edge_bridge.tokens import TokenClaims, TokenError, decode_token, issue_token

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/auth", tags=["auth"])
_ERRORS = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    422: {"model": ErrorOut},
    429: {"model": ErrorOut},
}


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


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


async def _admit(limits: LoginLimits, request: Request, email: str) -> Attempt:
    """The attempt, counted as a failure until it succeeds; 429 while over a limit.

    In a worker thread: the per-email count is one database statement (shared by every
    instance), atomic on its own, so the loop is never blocked and a burst cannot slip past.
    """
    client = _client(request)
    decision = await run_in_threadpool(limits.admit, email, address_bucket(client))
    if isinstance(decision, Attempt):
        return decision
    assert isinstance(decision, Refusal)
    seconds = max(1, math.ceil(decision.retry_after))
    logger.warning(
        "Login rate limited limit=%s client=%s retry_after_s=%d", decision.limit, client, seconds
    )
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"Too many login attempts; try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def _find_staff(engine: Engine, email: str, password: str) -> Staff | None:
    """The staff member with that email and password, or None (same cost either way).

    Emails are unique across schools, so this lookup needs no school: it is what tells
    which school the login is of.
    """
    with Session(engine, expire_on_commit=False) as session:
        staff = session.exec(select(Staff).where(Staff.email == email)).first()
    matches = verify_password(password, staff.password_hash if staff else None)
    return staff if matches else None


def _start_login(engine: Engine, staff: Staff, settings: Settings, *, prune: bool) -> str:
    """The first refresh token of a new login; expired ones are deleted first when `prune`."""
    if prune:
        pruned = refresh_tokens.prune_expired(engine)
        logger.info("Expired refresh tokens deleted count=%d", pruned)
    issued = refresh_tokens.issue(
        engine,
        staff.id,
        school_id=staff.school_id,
        secret=settings.jwt_secret,
        ttl_seconds=settings.jwt_refresh_ttl,
    )
    return issued.token


def _access_token(staff: Staff, settings: Settings) -> str:
    """An access token of the staff member's school, as the database has it now."""
    return issue_token(
        staff.id,
        school_id=staff.school_id,
        secret=settings.jwt_secret,
        ttl_seconds=settings.jwt_access_ttl,
        admin=staff.admin,
    )


@router.post("/login", response_model=TokenOut, responses=_ERRORS)
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    limits: LoginLimitsDep,
    prune: RefreshPruneDep,
) -> TokenOut:
    """Tokens of the staff member's own school (their `school` claim), and the cookie."""
    check_origin(request, required=False)
    email = body.email.lower()
    attempt = await _admit(limits, request, email)
    staff = await run_in_threadpool(_find_staff, engine, email, body.password)
    if staff is None:
        logger.info("Login failed reason=bad_credentials client=%s", _client(request))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Wrong email or password")
    await run_in_threadpool(limits.succeeded, attempt)
    due = prune.due()
    refresh = await run_in_threadpool(_start_login, engine, staff, settings, prune=due)
    access = _access_token(staff, settings)
    _set_cookie(response, access, settings.jwt_access_ttl, request)
    logger.info("Login succeeded staff_id=%s school_id=%s", staff.id, staff.school_id)
    return TokenOut(access_token=access, refresh_token=refresh, expires_in=settings.jwt_access_ttl)


def _refresh_claims(token: str | None, settings: Settings, *, verify_exp: bool) -> TokenClaims:
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Refresh token missing")
    try:
        return decode_token(
            token, secret=settings.jwt_secret, expected_type="refresh", verify_exp=verify_exp
        )
    except TokenError as exc:
        logger.warning("Refresh refused reason=%s", exc.reason)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail=f"Invalid refresh token: {exc}"
        ) from None


def _staff_of(engine: Engine, claims: TokenClaims) -> Staff:
    """The refresh token's staff member, still of the token's school; else 403.

    A staff member moved to another school (by an import) keeps no login of the former one:
    that login's tokens are revoked, and the next login is of the new school.
    """
    with Session(engine, expire_on_commit=False) as session:
        staff = session.get(Staff, claims.staff_id)
    if staff is None:
        logger.warning("Refresh refused reason=unknown_staff staff_id=%s", claims.staff_id)
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Not a staff member")
    if staff.school_id != claims.school_id:
        revoked = refresh_tokens.revoke_family(engine, claims.family_id or "")
        logger.warning(
            "Refresh refused reason=school_mismatch staff_id=%s revoked_tokens=%d",
            claims.staff_id,
            revoked,
        )
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="Not a staff member of this login's school any more; log in again",
        )
    return staff


@router.post("/refresh", response_model=TokenOut, responses=_ERRORS)
def refresh(
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    body: Annotated[RefreshIn | None, Body()] = None,
) -> TokenOut:
    """The next access token (and cookie) and the next refresh token; the old one is used up.

    Both are of the staff member's school, which must still be the refresh token's.
    """
    claims = _refresh_claims(body.refresh_token if body else None, settings, verify_exp=True)
    staff = _staff_of(engine, claims)
    try:
        rotated = refresh_tokens.rotate(engine, claims, secret=settings.jwt_secret)
    except refresh_tokens.RefreshRefused as exc:
        logger.warning("Refresh refused reason=%s staff_id=%s", exc.reason, claims.staff_id)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail=f"Invalid refresh token: {exc}"
        ) from None
    access = _access_token(staff, settings)
    _set_cookie(response, access, settings.jwt_access_ttl, request)
    return TokenOut(
        access_token=access, refresh_token=rotated.token, expires_in=settings.jwt_access_ttl
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
def logout(
    request: Request,
    settings: SettingsDep,
    engine: EngineDep,
    body: Annotated[RefreshIn | None, Body()] = None,
) -> Response:
    """Revokes the login of the refresh token in the body (if any); drops the access cookie.

    So a shared tablet forgets the login, and a copied refresh token stops working. An
    access token the client kept elsewhere stays valid until it expires (JWT_ACCESS_TTL).
    """
    check_origin(request, required=False)
    if body is not None:
        claims = _refresh_claims(body.refresh_token, settings, verify_exp=False)
        assert claims.family_id is not None  # decode_token checked
        revoked = refresh_tokens.revoke_family(engine, claims.family_id)
        logger.info("Logout staff_id=%s revoked_tokens=%d", claims.staff_id, revoked)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(ACCESS_COOKIE, path="/", httponly=True, samesite="strict")
    return response
