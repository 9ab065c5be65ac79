"""Authentication end to end (CONTRACT §4): tokens on the event stream, login, refresh, limits.

Each bad kind of token is refused with a JSON 401/403 before any stream starts, and no
token or password ever reaches the server's log, uvicorn's access log included.
"""

from __future__ import annotations

import base64
import json
import time
import warnings

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from sqlmodel import Session, delete

from edge_bridge.models import OgsGroupLeader, Staff
from edge_bridge.tokens import issue_token
from tests.integration.conftest import System
from tests.support.raw_sse import RawSseClient

pytestmark = pytest.mark.integration

SCHMIDT, YILMAZ, NOWAK = 1, 2, 3
SCHMIDT_LOGIN = {"email": "schmidt@example.org", "password": "schmidt-demo-1"}
EVENTS = "/api/sse/events"


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"sub": "1", "iat": now, "exp": now + 300, "typ": "access"}
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def bad_tokens(secret: str) -> dict[str, tuple[str, int]]:
    """Each kind of bad token with the status it must get."""

    def sign(claims: dict[str, object], *, key: str = secret, algorithm: str = "HS256") -> str:
        with warnings.catch_warnings():  # HS512 with our 48-byte secret: the point of the test
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(claims, key, algorithm=algorithm)

    return {
        "alg none": (f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.", 401),
        "another algorithm (HS512)": (sign(_claims(), algorithm="HS512"), 401),
        "bad signature": (sign(_claims(), key="k" * 48), 401),
        "expired": (issue_token(1, secret=secret, ttl_seconds=60, now=time.time() - 600), 401),
        "refresh used as access": (
            issue_token(1, secret=secret, ttl_seconds=300, token_type="refresh"),
            401,
        ),
        "missing sub": (sign(_claims(sub=None)), 401),
        "non-numeric sub": (sign(_claims(sub="admin")), 401),
        "non-ASCII digit sub": (sign(_claims(sub="\u00b2")), 401),
        "oversized sub": (sign(_claims(sub="9" * 40)), 401),
        "not a JWT": ("not-a-jwt", 401),
        "unknown staff": (issue_token(999, secret=secret, ttl_seconds=300), 403),
        "deleted staff": (issue_token(NOWAK, secret=secret, ttl_seconds=300), 403),
    }


def refusal(http: httpx.Client, **request: object) -> tuple[int, str | None, dict[str, object]]:
    """Status, content type and JSON body of a refused stream request (never reads a stream)."""
    with http.stream("GET", EVENTS, **request) as response:  # type: ignore[arg-type]
        if response.status_code == 200:
            return 200, response.headers.get("content-type"), {}
        response.read()
        return response.status_code, response.headers.get("content-type"), response.json()


def wait_for_log(system: System, text: str) -> str:
    """The server's log once it contains `text` (bounded)."""
    deadline = time.monotonic() + 5
    while text not in (log := system.server.log_text()):
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.05)
    return log


def test_a_token_is_taken_from_header_cookie_or_query_and_every_bad_kind_is_refused_first(
    system: System,
) -> None:
    with Session(system.engine) as session:  # Frau Nowak leaves the school
        session.exec(delete(OgsGroupLeader).where(OgsGroupLeader.staff_id == NOWAK))  # type: ignore[call-overload]
        session.exec(delete(Staff).where(Staff.id == NOWAK))  # type: ignore[call-overload]
        session.commit()
    tokens = bad_tokens(system.settings.jwt_secret)
    http = system.http()
    deadline = time.monotonic() + 15  # the bridge re-reads its staff directory every 5 s
    while http.get("/api/me", headers=system.auth(NOWAK)).status_code != 403:
        assert time.monotonic() < deadline, "a deleted staff member was still accepted"
        time.sleep(0.2)
    token = system.token(SCHMIDT)

    by_header = system.stream(headers={"Authorization": f"Bearer {token}"})
    by_cookie = system.stream(headers={"Cookie": f"access_token={token}"})
    by_query = RawSseClient("127.0.0.1", system.server.port, f"{EVENTS}?token={token}")
    accepted = [stream.next_event() for stream in (by_header, by_cookie)]
    query_body = by_query.read_until(b"event: connected", 10)
    by_query.close()

    outcomes = {
        kind: refusal(http, headers={"Authorization": f"Bearer {bad}"})
        for kind, (bad, _status) in tokens.items()
    }
    outcomes["no token"] = refusal(http)
    outcomes["Basic scheme"] = refusal(http, headers={"Authorization": "Basic dXNlcjpwdw=="})
    outcomes["bad cookie"] = refusal(http, cookies={"access_token": tokens["expired"][0]})
    outcomes["bad query"] = refusal(http, params={"token": tokens["bad signature"][0]})
    log = wait_for_log(system, "reason=bad_signature source=query")
    valid_and_bad = [token, *(bad for bad, _status in tokens.values())]

    expected = {kind: status for kind, (_token, status) in tokens.items()}
    expected |= {"no token": 401, "Basic scheme": 401, "bad cookie": 401, "bad query": 401}
    assert {kind: outcome[0] for kind, outcome in outcomes.items()} == expected
    assert all(outcome[1] == "application/json" for outcome in outcomes.values())
    assert all(isinstance(outcome[2].get("detail"), str) for outcome in outcomes.values())
    assert outcomes["deleted staff"][2] == {"detail": "Not a staff member"}
    assert [frame.json["user_id"] for frame in accepted] == ["1", "1"]
    assert by_query.status_code == 200
    assert b'"user_id":"1"' in query_body
    assert 'GET /api/sse/events?<redacted> HTTP/1.1" 200' in log  # uvicorn's access log
    assert "token=" not in log
    for secret in valid_and_bad:
        assert secret not in log
        signature = secret.rpartition(".")[2]
        assert len(signature) < 16 or signature not in log
    for reason in ("wrong_algorithm", "bad_signature", "expired", "wrong_type", "bad_subject"):
        assert f"Auth refused reason={reason} " in log
    assert "Auth refused reason=unknown_staff staff_id=3 " in log
    assert "Traceback" not in log


def test_login_sets_an_http_only_cookie_refresh_renews_it_and_attempts_are_rate_limited(
    system: System,
) -> None:
    http = system.http()

    def attempt(address: str, email: str, password: str = "wrong") -> httpx.Response:
        return http.post(
            "/api/auth/login",
            json={"email": email, "password": password},
            headers={"X-Forwarded-For": address},  # trusted from loopback (proxy headers)
        )

    login = http.post("/api/auth/login", json=SCHMIDT_LOGIN)
    wrong_password = http.post(
        "/api/auth/login", json={**SCHMIDT_LOGIN, "password": "schmidt-demo-2"}
    )
    unknown_email = http.post(
        "/api/auth/login", json={"email": "nobody@example.org", "password": "x"}
    )
    tokens = login.json()
    cookie = login.headers["set-cookie"]
    me_by_cookie = httpx.get(
        system.base_url + "/api/me", cookies={"access_token": login.cookies["access_token"]}
    )
    refreshed = http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    me_by_refreshed = http.get(
        "/api/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    )
    refresh_as_access = http.get(
        "/api/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"}
    )
    access_as_refresh = http.post(
        "/api/auth/refresh", json={"refresh_token": tokens["access_token"]}
    )
    email_tries = [attempt("203.0.113.1", "yilmaz@example.org") for _ in range(10)]
    email_limited = attempt("203.0.113.1", "yilmaz@example.org", "yilmaz-demo-2")
    other_email = attempt("203.0.113.1", SCHMIDT_LOGIN["email"], SCHMIDT_LOGIN["password"])
    address_tries = [attempt("203.0.113.2", f"nobody{n}@example.org") for n in range(50)]
    address_limited = attempt("203.0.113.2", SCHMIDT_LOGIN["email"], SCHMIDT_LOGIN["password"])
    other_address = attempt("203.0.113.3", SCHMIDT_LOGIN["email"], SCHMIDT_LOGIN["password"])
    log = system.server.log_text()

    assert login.status_code == 200
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == system.settings.jwt_access_ttl
    assert cookie.startswith(f"access_token={tokens['access_token']};")
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert "path=/" in cookie.lower()
    assert me_by_cookie.status_code == 200
    assert me_by_cookie.json()["id"] == "1"
    assert (wrong_password.status_code, wrong_password.json()) == (
        401,
        {"detail": "Wrong email or password"},
    )
    assert unknown_email.status_code == 401
    assert unknown_email.json() == wrong_password.json()
    assert refreshed.status_code == 200
    assert set(refreshed.json()) >= {"access_token", "token_type", "expires_in"}
    assert "access_token=" in refreshed.headers["set-cookie"]
    assert me_by_refreshed.status_code == 200
    assert refresh_as_access.status_code == 401
    assert access_as_refresh.status_code == 401
    assert SCHMIDT_LOGIN["password"] not in log
    assert tokens["access_token"] not in log
    assert tokens["refresh_token"] not in log
    assert [r.status_code for r in email_tries] == [401] * 10
    assert email_limited.status_code == 429
    assert email_limited.json()["detail"].startswith("Too many login attempts; try again in ")
    assert 0 < int(email_limited.headers["retry-after"]) <= 300
    assert other_email.status_code == 200
    assert [r.status_code for r in address_tries] == [401] * 50
    assert address_limited.status_code == 429
    assert 0 < int(address_limited.headers["retry-after"]) <= 300
    assert other_address.status_code == 200
    assert "Login rate limited limit=email client=203.0.113.1 " in log
    assert "Login rate limited limit=address client=203.0.113.2 " in log
