"""Request authentication: find the access token, verify it, load the staff member.

Tokens are accepted from `Authorization: Bearer`, the `access_token` cookie and the `token`
query parameter, in that order. Failures are 401 (no/bad token) or 403 raised in a
dependency, so the SSE endpoint answers before any stream starts. A staff token is of one
school (`school` claim) and works only while its subject is a staff member of that school
(`authenticate`, behind `CurrentStaff`); an operator (`superadmin`) token works only where
`require_operator` (`Operator`) is asked for, and gets 403 everywhere else, as a staff
token, an admin's included, does there.

CSRF: a browser sends the cookie along with any request, including one a foreign page
makes it send. A state-changing request (POST, PUT, PATCH, DELETE) authenticated by the
cookie must therefore come with an `Origin` (or, without one, a `Referer`) equal to the
request's own origin, else 403. A bearer header cannot be sent cross-site without the
page holding the token, so header-authenticated requests are not checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status

from edge_bridge.directory import StaffEntry
from edge_bridge.token_cache import AccessTokenCache
from edge_bridge.tokens import TokenClaims, TokenError

logger = logging.getLogger(__name__)
ACCESS_COOKIE = "access_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated staff member of a request."""

    staff_id: int
    name: str
    email: str
    admin: bool  # an admin of their own school
    expires_at: float
    school_id: int  # everything the request may see is of this school


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


def normalized_origin(url: str) -> str | None:
    """`scheme://host[:port]` of a URL, without a default port; None when it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    shown_port = "" if port in (None, _DEFAULT_PORTS[scheme]) else f":{port}"
    return f"{scheme}://{host}{shown_port}"


def _first(value: str | None) -> str | None:
    """The first of a comma-separated header's values (the one the nearest proxy set)."""
    return (value.split(",", 1)[0].strip() or None) if value else None


def own_origin(request: Request) -> str | None:
    """The origin the client addressed: X-Forwarded-Proto/-Host when a proxy set them.

    A page on another site cannot add these headers to a request it makes a browser send
    (they are not CORS-safelisted, and this app answers no preflight), so they cannot be
    used to make a cross-site request look same-origin.
    """
    headers = request.headers
    scheme = _first(headers.get("x-forwarded-proto")) or request.url.scheme
    host = _first(headers.get("x-forwarded-host")) or headers.get("host", "")
    return normalized_origin(f"{scheme}://{host}")


def check_origin(request: Request, *, required: bool) -> None:
    """403 unless Origin (else Referer) matches the request's own origin.

    `required=False`: a request with neither header passes (login, logout: no cookie yet,
    or nothing to protect but the logout itself).
    """
    sent = request.headers.get("origin") or request.headers.get("referer")
    if sent is None and not required:
        return
    if sent is None:
        reason, detail = "missing_origin", "no Origin or Referer header"
    elif normalized_origin(sent) is None or normalized_origin(sent) != own_origin(request):
        reason, detail = "origin_mismatch", "Origin does not match this site"
    else:
        return
    logger.warning(
        "Cross-site request refused reason=%s method=%s path=%s client=%s",
        reason,
        request.method,
        request.url.path,
        _client(request),
    )
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        detail=(
            f"Cross-site request refused: {detail} (a request authenticated by the "
            "access_token cookie must come from this site; API clients send "
            "Authorization: Bearer instead)"
        ),
    )


def verify_request_token(request: Request, tokens: AccessTokenCache) -> TokenClaims:
    """The claims of the request's access token; 401 (logged without the token) otherwise.

    A state-changing request authenticated by the cookie is checked for CSRF first (403).
    """
    token, source = token_from_request(request)
    if source == "cookie" and request.method in UNSAFE_METHODS:
        check_origin(request, required=True)
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
        return tokens.verify(token)
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


async def authenticate(
    request: Request, tokens: deps.AccessTokensDep, directory: deps.DirectoryDep
) -> Principal:
    """The dependency behind `CurrentStaff`: a staff token of the staff member's own school.

    403 for an operator token (it sees no school) and for a token whose subject is not a
    staff member of the token's school (unknown, deleted, or moved to another school).
    """
    claims = verify_request_token(request, tokens)
    if claims.superadmin:
        _refused(request, "operator_token")
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Operator tokens see no school")
    staff = directory.staff(claims.staff_id)
    if staff is not None and staff.school_id != claims.school_id:
        # A token of a staff member's former school (moved by an import): not theirs now.
        _refused(request, "school_mismatch", staff_id=claims.staff_id)
        staff = None
    if staff is None:
        _refused(request, "unknown_staff", staff_id=claims.staff_id)
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Not a staff member")
    return principal_of(staff, claims)


async def require_operator(request: Request, tokens: deps.AccessTokensDep) -> TokenClaims:
    """The dependency behind `Operator`: an operator (`superadmin`) token; 403 for a staff
    token, admins' included (an admin is an admin of one school)."""
    claims = verify_request_token(request, tokens)
    if not claims.superadmin:
        _refused(request, "not_operator", staff_id=claims.staff_id)
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Operator only")
    return claims


def _refused(request: Request, reason: str, *, staff_id: int | None = None) -> None:
    logger.warning(
        "Auth refused reason=%s%s path=%s client=%s",
        reason,
        "" if staff_id is None else f" staff_id={staff_id}",
        request.url.path,
        _client(request),
    )


def principal_of(staff: StaffEntry, claims: TokenClaims) -> Principal:
    return Principal(
        staff.id,
        staff.name,
        staff.email,
        staff.admin or claims.admin,
        claims.expires_at,
        staff.school_id,
    )


# Last, on purpose: api/deps.py imports this module (`CurrentStaff` is built on
# `authenticate`), so its aliases cannot be imported by name up top. The annotations above
# name them through the module; FastAPI resolves them when it builds a route, once both
# modules are loaded, whichever was imported first.
from api import deps  # noqa: E402
