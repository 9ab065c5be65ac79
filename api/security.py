"""Request authentication: find the access token, verify it, load the staff member.

Tokens are accepted from `Authorization: Bearer`, the `access_token` cookie and the `token`
query parameter, in that order. Failures are 401 (no/bad token) or 403 (not staff) raised
in a dependency, so the SSE endpoint answers before any stream starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import HTTPException, Request, status

from edge_bridge.directory import StaffEntry
from edge_bridge.tokens import TokenClaims, TokenError, decode_token

logger = logging.getLogger(__name__)
ACCESS_COOKIE = "access_token"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated staff member of a request."""

    staff_id: int
    name: str
    email: str
    admin: bool
    expires_at: float


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def token_from_request(request: Request) -> tuple[str | None, str]:
    """The raw token and where it came from (`header`, `cookie`, `query`, or `none`)."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        return (value.strip() or None) if scheme.lower() == "bearer" else None, "header"
    if cookie := request.cookies.get(ACCESS_COOKIE):
        return cookie, "cookie"
    if query := request.query_params.get("token"):
        return query, "query"
    return None, "none"


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def verify_request_token(request: Request, secret: str) -> TokenClaims:
    """The claims of the request's access token; 401 (logged without the token) otherwise."""
    token, source = token_from_request(request)
    if token is None:
        logger.info(
            "Auth refused reason=missing_token source=%s path=%s client=%s",
            source,
            request.url.path,
            _client(request),
        )
        msg = "Not authenticated"
        raise _unauthorized(msg)
    try:
        return decode_token(token, secret=secret, expected_type="access")
    except TokenError as exc:
        logger.warning(
            "Auth refused reason=%s source=%s path=%s client=%s",
            exc.reason,
            source,
            request.url.path,
            _client(request),
        )
        msg = f"Invalid access token: {exc}"
        raise _unauthorized(msg) from None


async def authenticate(request: Request) -> Principal:
    """The dependency behind `CurrentStaff`."""
    state = request.app.state
    claims = verify_request_token(request, state.settings.jwt_secret)
    staff = state.directory.staff(claims.staff_id)
    if staff is None:
        logger.warning(
            "Auth refused reason=unknown_staff staff_id=%s path=%s client=%s",
            claims.staff_id,
            request.url.path,
            _client(request),
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Not a staff member")
    return principal_of(staff, claims)


def principal_of(staff: StaffEntry, claims: TokenClaims) -> Principal:
    return Principal(
        staff.id, staff.name, staff.email, staff.admin or claims.admin, claims.expires_at
    )
