"""api/security.py's CSRF rule for every state-changing method, not only the POSTs routed today.

The bridge has no PUT, PATCH or DELETE route yet (FastAPI answers those 405 before any
dependency runs), so the rule is checked where it lives: `verify_request_token`.
"""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from api.security import verify_request_token
from edge_bridge.tokens import TokenClaims

HOST = "bridge.school.example"
CLAIMS = TokenClaims(staff_id=1, admin=False, expires_at=2_000_000_000.0, token_type="access")


class AcceptingTokens:
    """An access-token cache that accepts every token (the signature is not the point)."""

    def verify(self, _token: str) -> TokenClaims:
        return CLAIMS


def _request(method: str, headers: dict[str, str]) -> Request:
    raw = [(b"host", HOST.encode())] + [
        (name.lower().encode(), value.encode()) for name, value in headers.items()
    ]
    scope = {
        "type": "http",
        "method": method,
        "scheme": "https",
        "path": "/api/anything",
        "query_string": b"",
        "headers": raw,
        "server": (HOST, 443),
        "client": ("192.0.2.10", 50000),
    }
    return Request(scope)


COOKIE = {"Cookie": "access_token=abc"}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "origin",
    [None, "null", "https://evil.example", f"http://{HOST}"],
    ids=["no origin", "null", "foreign", "other scheme"],
)
def test_a_cookie_authenticated_change_without_this_sites_origin_is_refused(
    method: str, origin: str | None
) -> None:
    headers = COOKIE | ({"Origin": origin} if origin is not None else {})

    with pytest.raises(HTTPException) as refused:
        verify_request_token(_request(method, headers), AcceptingTokens())  # type: ignore[arg-type]

    assert refused.value.status_code == 403


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_cookie_authenticated_change_from_this_site_passes(method: str) -> None:
    request = _request(method, COOKIE | {"Origin": f"https://{HOST}"})

    assert verify_request_token(request, AcceptingTokens()) == CLAIMS  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_a_bearer_change_needs_no_origin(method: str) -> None:
    request = _request(method, {"Authorization": "Bearer abc"})

    assert verify_request_token(request, AcceptingTokens()) == CLAIMS  # type: ignore[arg-type]
