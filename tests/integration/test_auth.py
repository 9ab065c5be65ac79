"""Authentication end to end (CONTRACT §4): tokens on the event stream, login, refresh, limits.

Each bad kind of token is refused with a JSON 401/403 before any stream starts, and no
token or password ever reaches the server's log, uvicorn's access log included.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import jwt
import pytest
import sqlalchemy as sa
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy.engine import Engine
from sqlmodel import Session, delete

from edge_bridge.models import OgsGroupLeader, RefreshToken, Staff
from edge_bridge.tokens import issue_token
from edge_bridge.tuning import REFRESH_REUSE_GRACE_SECONDS
from tests.integration.conftest import System
from tests.support.nord import BERG, BERG_LOGIN, import_nord
from tests.support.raw_sse import RawSseClient

pytestmark = pytest.mark.integration

SCHMIDT, YILMAZ, NOWAK = 1, 2, 3
SCHMIDT_LOGIN = {"email": "schmidt@example.org", "password": "schmidt-demo-1"}
EVENTS = "/api/sse/events"
_REFRESH = RefreshToken.__table__  # type: ignore[attr-defined]
_STAFF = Staff.__table__  # type: ignore[attr-defined]


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
        "expired": (
            issue_token(1, school_id=1, secret=secret, ttl_seconds=60, now=time.time() - 600),
            401,
        ),
        "refresh used as access": (
            issue_token(1, school_id=1, secret=secret, ttl_seconds=300, token_type="refresh"),
            401,
        ),
        "missing sub": (sign(_claims(sub=None)), 401),
        "non-numeric sub": (sign(_claims(sub="admin")), 401),
        "non-ASCII digit sub": (sign(_claims(sub="\u00b2")), 401),
        "oversized sub": (sign(_claims(sub="9" * 40)), 401),
        "not a JWT": ("not-a-jwt", 401),
        "unknown staff": (issue_token(999, school_id=1, secret=secret, ttl_seconds=300), 403),
        "deleted staff": (issue_token(NOWAK, school_id=1, secret=secret, ttl_seconds=300), 403),
    }


def refusal(http: httpx.Client, **request: object) -> tuple[int, str | None, dict[str, object]]:
    """Status, content type and JSON body of a refused stream request (never reads a stream)."""
    with http.stream("GET", EVENTS, **request) as response:  # type: ignore[arg-type]
        if response.status_code == 200:
            return 200, response.headers.get("content-type"), {}
        response.read()
        return response.status_code, response.headers.get("content-type"), response.json()


def _school_of(token: str) -> object:
    return jwt.decode(token, options={"verify_signature": False}).get("school")


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
    assert _school_of(tokens["access_token"]) == _school_of(tokens["refresh_token"]) == "1"
    assert _school_of(refreshed.json()["access_token"]) == "1"
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


YILMAZ_LOGIN = {"email": "yilmaz@example.org", "password": "yilmaz-demo-2"}


def _login_from(http: httpx.Client, address: str, login: dict[str, str]) -> httpx.Response:
    # X-Forwarded-For is trusted from loopback (uvicorn's proxy headers), as from nginx.
    return http.post("/api/auth/login", json=login, headers={"X-Forwarded-For": address})


def test_only_failures_count_and_a_known_address_gets_in_while_the_email_is_attacked(
    system: System,
) -> None:
    http = system.http()
    wrong = {**YILMAZ_LOGIN, "password": "guess"}

    successes = [_login_from(http, "203.0.113.40", SCHMIDT_LOGIN) for _ in range(60)]
    from_school = _login_from(http, "203.0.113.20", YILMAZ_LOGIN)  # Frau Yilmaz, before
    attacker = [_login_from(http, "198.51.100.1", wrong) for _ in range(11)]
    school_again = _login_from(http, "203.0.113.20", YILMAZ_LOGIN)
    elsewhere = _login_from(http, "203.0.113.21", YILMAZ_LOGIN)
    log = system.server.log_text()

    assert [r.status_code for r in successes] == [200] * 60  # above the 50 per address
    assert from_school.status_code == 200
    assert [r.status_code for r in attacker] == [401] * 10 + [429]
    assert school_again.status_code == 200  # known address: not locked out
    assert elsewhere.status_code == 429  # unknown address: the email limit holds
    assert "Login rate limited limit=email client=203.0.113.21 " in log
    assert YILMAZ_LOGIN["password"] not in log


def test_ipv6_clients_are_limited_per_64_so_rotating_addresses_does_not_help(
    system: System,
) -> None:
    http = system.http()

    tries = [
        _login_from(http, f"2001:db8:5:6::{n:x}", {"email": f"n{n}@example.org", "password": "x"})
        for n in range(51)
    ]
    other_prefix = _login_from(http, "2001:db8:5:7::1", SCHMIDT_LOGIN)

    assert [r.status_code for r in tries] == [401] * 50 + [429]
    assert other_prefix.status_code == 200
    assert "Login rate limited limit=address client=2001:db8:5:6::32 " in system.server.log_text()


def test_a_burst_of_parallel_wrong_passwords_for_one_email_admits_exactly_the_limit(
    system: System,
) -> None:
    wrong = {**YILMAZ_LOGIN, "password": "guess"}
    start = threading.Barrier(30)

    def attempt(n: int) -> int:
        with system.http() as client:
            start.wait(timeout=10)
            return _login_from(client, f"198.51.100.{n + 1}", wrong).status_code

    with ThreadPoolExecutor(max_workers=30) as pool:
        codes = sorted(pool.map(attempt, range(30)))
    afterwards = _login_from(system.http(), "198.51.100.99", YILMAZ_LOGIN)

    assert codes == [401] * 10 + [429] * 20  # each check-and-count is one atomic step
    assert afterwards.status_code == 429


def _age_refresh_uses(system: System, seconds: float) -> None:
    """Move every recorded refresh-token use `seconds` into the past (a copy presented later)."""
    with system.engine.begin() as connection:
        for jti, used_at in connection.execute(
            sa.select(_REFRESH.c.jti, _REFRESH.c.used_at).where(_REFRESH.c.used_at.is_not(None))
        ).all():
            connection.execute(
                _REFRESH.update()
                .where(_REFRESH.c.jti == jti)
                .values(used_at=used_at - timedelta(seconds=seconds))
            )


def test_refresh_rotates_the_token_and_reuse_after_the_grace_window_revokes_the_login(
    system: System,
) -> None:
    http = system.http()
    first = http.post("/api/auth/login", json=SCHMIDT_LOGIN).json()["refresh_token"]
    other_login = http.post("/api/auth/login", json=SCHMIDT_LOGIN).json()["refresh_token"]

    rotated = http.post("/api/auth/refresh", json={"refresh_token": first})
    second = rotated.json()["refresh_token"]
    _age_refresh_uses(system, REFRESH_REUSE_GRACE_SECONDS + 1)
    reused = http.post("/api/auth/refresh", json={"refresh_token": first})  # stolen copy
    after_reuse = http.post("/api/auth/refresh", json={"refresh_token": second})
    unaffected = http.post("/api/auth/refresh", json={"refresh_token": other_login})
    log = wait_for_log(system, "Refresh token reused")

    assert rotated.status_code == 200
    assert set(rotated.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second != first
    assert (
        jwt.decode(second, options={"verify_signature": False})["exp"]
        == jwt.decode(first, options={"verify_signature": False})["exp"]
    )  # rotation does not lengthen a login
    assert reused.status_code == 401
    assert "already used" in reused.json()["detail"]
    assert after_reuse.status_code == 401  # the whole family went with it
    assert unaffected.status_code == 200  # another login of the same person stays
    assert "Refresh token reused: family revoked staff_id=1 revoked_tokens=2" in log
    assert first not in log and second not in log


def test_two_refreshes_racing_with_one_token_keep_the_login_of_the_winner(
    system: System,
) -> None:
    http = system.http()
    token = http.post("/api/auth/login", json=SCHMIDT_LOGIN).json()["refresh_token"]
    start = threading.Barrier(2)

    def refresh_once() -> httpx.Response:
        with system.http() as client:
            start.wait(timeout=5)
            return client.post("/api/auth/refresh", json={"refresh_token": token})

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(refresh_once) for _ in range(2)]
        answers = [future.result(timeout=15) for future in futures]
    (winner,) = [answer for answer in answers if answer.status_code == 200]
    (loser,) = [answer for answer in answers if answer.status_code != 200]
    again = http.post("/api/auth/refresh", json={"refresh_token": winner.json()["refresh_token"]})
    log = system.server.log_text()

    assert loser.status_code == 401
    assert "already used" in loser.json()["detail"]
    assert again.status_code == 200  # the family was not revoked
    assert "Refresh refused reason=already_used staff_id=1" in log
    assert "Refresh token reused" not in log


def test_logout_revokes_the_refresh_token_and_drops_the_cookie(system: System) -> None:
    http = system.http()
    tokens = http.post("/api/auth/login", json=SCHMIDT_LOGIN).json()

    logout = http.post("/api/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    refresh = http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    bad_logout = http.post("/api/auth/logout", json={"refresh_token": tokens["access_token"]})

    assert logout.status_code == 204
    assert 'access_token=""' in logout.headers["set-cookie"]
    assert "max-age=0" in logout.headers["set-cookie"].lower()
    assert refresh.status_code == 401
    assert "revoked" in refresh.json()["detail"]
    assert bad_logout.status_code == 401


def test_cookie_authenticated_changes_need_a_matching_origin_and_bearer_calls_do_not(
    system: System,
) -> None:
    http = system.http()
    login = http.post("/api/auth/login", json=SCHMIDT_LOGIN)
    cookie = {"Cookie": f"access_token={login.cookies['access_token']}"}
    start = {"name": "Schach AG", "room_id": 3}
    own = system.base_url

    no_origin = http.post("/api/active/groups", json=start, headers=cookie)
    foreign = http.post(
        "/api/active/groups", json=start, headers={**cookie, "Origin": "https://evil.example"}
    )
    foreign_referer = http.post(
        "/api/active/groups",
        json=start,
        headers={**cookie, "Referer": "https://evil.example/page"},
    )
    null_origin = http.post(  # what a sandboxed iframe or a data: page sends
        "/api/active/groups", json=start, headers={**cookie, "Origin": "null"}
    )
    cookie_and_bogus_bearer = http.post(  # the header wins: the cookie does not stand in
        "/api/active/groups",
        json=start,
        headers={**cookie, "Authorization": "Bearer not-a-jwt"},
    )
    proxied_foreign = http.post(
        "/api/active/groups",
        json=start,
        headers={**cookie, "Origin": own, "X-Forwarded-Host": "bridge.example.org"},
    )
    cookie_read = http.get("/api/me", headers=cookie)  # no state change: no check
    same_origin = http.post("/api/active/groups", json=start, headers={**cookie, "Origin": own})
    bearer = http.post(
        "/api/active/groups/124/visits", json={"student_id": 401}, headers=system.auth(SCHMIDT)
    )
    foreign_login = http.post(
        "/api/auth/login", json=SCHMIDT_LOGIN, headers={"Origin": "https://evil.example"}
    )
    log = system.server.log_text()

    for refused in (no_origin, foreign, foreign_referer, null_origin, proxied_foreign):
        assert refused.status_code == 403
        assert refused.json()["detail"].startswith("Cross-site request refused: ")
    assert "no Origin or Referer header" in no_origin.json()["detail"]
    assert cookie_and_bogus_bearer.status_code == 401
    assert cookie_and_bogus_bearer.json()["detail"].startswith("Invalid access token")
    assert cookie_read.status_code == 200
    assert same_origin.status_code == 201, same_origin.text
    assert bearer.status_code == 201, bearer.text
    assert foreign_login.status_code == 403
    assert "Cross-site request refused reason=origin_mismatch method=POST " in log
    assert "Cross-site request refused reason=missing_origin method=POST " in log


def test_every_response_carries_the_browser_security_headers_and_the_stream_still_flows(
    system: System,
) -> None:
    http = system.http()
    expected = {
        "content-security-policy": (
            "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'"
        ),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
    }

    page = http.get("/")
    script = http.get("/static/app.js")
    refused = http.get("/api/me")
    stream = system.stream(SCHMIDT)
    connected = stream.next_event()

    for response_headers in (page.headers, script.headers, refused.headers, stream.headers):
        assert response_headers is not None
        assert {name: response_headers.get(name) for name in expected} == expected
    assert page.status_code == 200 and refused.status_code == 401
    assert stream.status_code == 200
    assert connected.event == "connected"


@pytest.fixture
def nord_system(school_engine: Engine, make_system: Callable[..., System]) -> System:
    """The fixture school and Schule Nord (school 2) in one bridge."""
    import_nord(school_engine)
    return make_system()


def test_login_and_refresh_give_a_school_2_staff_member_tokens_of_school_2(
    nord_system: System,
) -> None:
    http = nord_system.http()

    login = http.post("/api/auth/login", json=BERG_LOGIN)
    tokens = login.json()
    me = http.get("/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    refreshed = http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    renewed = refreshed.json()
    me_again = http.get("/api/me", headers={"Authorization": f"Bearer {renewed['access_token']}"})

    assert (login.status_code, refreshed.status_code) == (200, 200)
    assert _school_of(tokens["access_token"]) == _school_of(tokens["refresh_token"]) == "2"
    assert _school_of(renewed["access_token"]) == _school_of(renewed["refresh_token"]) == "2"
    assert jwt.decode(tokens["access_token"], options={"verify_signature": False})["admin"] is True
    assert (me.status_code, me.json()["id"]) == (200, str(BERG))
    assert (me_again.status_code, me_again.json()["id"]) == (200, str(BERG))


def test_a_refresh_token_of_a_school_its_staff_member_left_is_refused_and_its_login_revoked(
    nord_system: System,
) -> None:
    http = nord_system.http()
    old_login = http.post("/api/auth/login", json=BERG_LOGIN).json()
    with nord_system.engine.begin() as connection:  # Herr Berg moves to school 1
        connection.execute(_STAFF.update().where(_STAFF.c.id == BERG).values(school_id=1))

    refused = http.post("/api/auth/refresh", json={"refresh_token": old_login["refresh_token"]})
    with nord_system.engine.connect() as connection:
        unrevoked = connection.execute(
            sa.select(sa.func.count())
            .select_from(_REFRESH)
            .where(_REFRESH.c.staff_id == BERG, _REFRESH.c.revoked_at.is_(None))
        ).scalar_one()
    new_login = http.post("/api/auth/login", json=BERG_LOGIN)
    new_refresh = http.post(
        "/api/auth/refresh", json={"refresh_token": new_login.json()["refresh_token"]}
    )
    log = nord_system.server.log_text()

    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Not a staff member of this login's school any more; log in again"
    }
    assert unrevoked == 0  # the old login is over, whatever becomes of Herr Berg
    assert new_login.status_code == 200
    assert _school_of(new_login.json()["access_token"]) == "1"  # the school they are of now
    assert (new_refresh.status_code, _school_of(new_refresh.json()["access_token"])) == (200, "1")
    assert f"Refresh refused reason=school_mismatch staff_id={BERG} revoked_tokens=1" in log
    assert old_login["refresh_token"] not in log
