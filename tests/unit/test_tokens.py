"""JWTs: the claims of CONTRACT §4, HS256 only, and the `edge-bridge token` command."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from sqlalchemy.engine import Engine

from edge_bridge import refresh_tokens
from edge_bridge.config import Settings
from edge_bridge.db import transaction
from edge_bridge.models import School, Staff
from edge_bridge.tokens import (
    TokenClaims,
    TokenError,
    decode_token,
    issue_operator_token,
    issue_token,
)
from edge_bridge.tuning import REFRESH_REUSE_GRACE_SECONDS
from edge_ops.cli import main

SECRET = "s" * 48


def _refresh_claims(token: str) -> TokenClaims:
    """The claims of a refresh token made at a fixed past time (its expiry not checked)."""
    return decode_token(token, secret=SECRET, expected_type="refresh", verify_exp=False)


def test_an_access_token_carries_the_contract_claims() -> None:
    token = issue_token(7, school_id=1, secret=SECRET, ttl_seconds=900, admin=True, now=1_000_000)

    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})

    assert claims == {
        "sub": "7",
        "iat": 1_000_000,
        "exp": 1_000_900,
        "typ": "access",
        "school": "1",
        "admin": True,
    }
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_a_refresh_token_is_refused_as_access() -> None:
    token = issue_token(7, school_id=1, secret=SECRET, ttl_seconds=60, token_type="refresh")

    with pytest.raises(TokenError, match="wrong token type"):
        decode_token(token, secret=SECRET)


def _forge(claims: dict[str, object], *, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "1",
        "iat": now,
        "exp": now + 60,
        "typ": "access",
        "school": "1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


BAD_TOKENS = {
    "expired": lambda: _forge(_claims(exp=int(time.time()) - 5)),
    "bad signature": lambda: _forge(_claims(), key="k" * 48),
    "alg none": lambda: jwt.encode(_claims(), None, algorithm="none"),
    "HS512": lambda: _forge(_claims(), key="s" * 64, algorithm="HS512"),
    "missing sub": lambda: _forge(_claims(sub=None)),
    "non-numeric sub": lambda: _forge(_claims(sub="admin")),
    "missing typ": lambda: _forge(_claims(typ=None)),
    "garbage": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_a_bad_token_is_refused_without_echoing_it(make: Callable[[], str]) -> None:
    token = make()

    with pytest.raises(TokenError) as caught:
        decode_token(token, secret=SECRET)

    assert token not in str(caught.value)


def test_a_forged_token_passes_as_long_as_it_is_well_formed() -> None:
    # The claims the refusals below start from are good ones: each refusal is its change.
    claims = decode_token(_forge(_claims(sub="7", school="3")), secret=SECRET)

    assert (claims.staff_id, claims.school_id, claims.superadmin) == (7, 3, False)


def test_the_school_claim_comes_back_as_the_tokens_school() -> None:
    token = issue_token(7, school_id=2, secret=SECRET, ttl_seconds=60, admin=True)

    claims = decode_token(token, secret=SECRET)

    assert jwt.decode(token, SECRET, algorithms=["HS256"])["school"] == "2"
    assert (claims.staff_id, claims.school_id, claims.admin, claims.superadmin) == (
        7,
        2,
        True,
        False,
    )


BAD_SCHOOLS = {
    "no school": None,
    "a number, not a string": 1,
    "zero": "0",
    "negative": "-1",
    "not digits": "nord",
    "non-ASCII digit": "\u00b2",
    "oversized": "9" * 40,
    "empty": "",
}


@pytest.mark.parametrize("school", BAD_SCHOOLS.values(), ids=BAD_SCHOOLS.keys())
def test_a_staff_token_without_a_valid_school_is_refused_as_missing_school(
    school: object,
) -> None:
    access = _forge(_claims(school=school))
    refresh = _forge(_claims(school=school, typ="refresh", jti="j-1", fam="f-1"))

    with pytest.raises(TokenError) as as_access:
        decode_token(access, secret=SECRET)
    with pytest.raises(TokenError) as as_refresh:
        decode_token(refresh, secret=SECRET, expected_type="refresh")

    assert as_access.value.reason == as_refresh.value.reason == "missing_school"


def test_an_operator_token_is_of_no_school_and_says_superadmin() -> None:
    token = issue_operator_token(secret=SECRET, ttl_seconds=300, now=1_000_000)
    current = issue_operator_token(secret=SECRET, ttl_seconds=300)

    raw = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    claims = decode_token(current, secret=SECRET)

    assert raw == {
        "sub": "operator",
        "iat": 1_000_000,
        "exp": 1_000_300,
        "typ": "access",
        "role": "superadmin",
    }
    assert (claims.superadmin, claims.school_id, claims.admin, claims.staff_id) == (
        True,
        None,
        False,
        0,
    )


BAD_OPERATOR_TOKENS: dict[str, Callable[[], dict[str, object]]] = {
    "staff subject": lambda: _claims(role="superadmin", school=None),
    "with a school": lambda: _claims(role="superadmin", sub="operator"),
    "operator subject without the role": lambda: _claims(sub="operator", school=None),
}


@pytest.mark.parametrize("make", BAD_OPERATOR_TOKENS.values(), ids=BAD_OPERATOR_TOKENS.keys())
def test_an_operator_claim_needs_the_operator_subject_and_no_school(
    make: Callable[[], dict[str, object]],
) -> None:
    with pytest.raises(TokenError) as caught:
        decode_token(_forge(make()), secret=SECRET)

    assert caught.value.reason == "bad_subject"


def test_an_operator_token_is_never_a_refresh_token() -> None:
    now = int(time.time())
    forged = _forge(
        {"sub": "operator", "iat": now, "exp": now + 60, "typ": "refresh", "role": "superadmin"}
    )
    operator = issue_operator_token(secret=SECRET, ttl_seconds=60)

    with pytest.raises(TokenError) as as_refresh:
        decode_token(forged, secret=SECRET, expected_type="refresh")
    with pytest.raises(TokenError) as wrong_type:
        decode_token(operator, secret=SECRET, expected_type="refresh")

    assert as_refresh.value.reason == "bad_subject"
    assert wrong_type.value.reason == "wrong_type"


def test_the_token_command_prints_a_token_for_known_staff(
    school_engine: Engine,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_factory()
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JWT_SECRET", settings.jwt_secret)

    code = main(["token", "--staff", "2", "--ttl", "120", "--admin"])

    token = capsys.readouterr().out.strip()
    assert code == 0
    claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == "2" and claims["typ"] == "access" and claims["admin"] is True
    assert claims["school"] == "1"  # the fixture school's staff member
    assert claims["exp"] - claims["iat"] == 120


def test_the_token_command_refuses_unknown_staff(
    school_engine: Engine,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    settings = settings_factory()
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JWT_SECRET", settings.jwt_secret)

    code = main(["token", "--staff", "999"])

    assert code == 1
    assert "No staff member with id 999" in capsys.readouterr().err


def test_a_refresh_token_carries_its_id_and_family_and_needs_both() -> None:
    token = issue_token(
        7,
        school_id=1,
        secret=SECRET,
        ttl_seconds=60,
        token_type="refresh",
        jti="j-1",
        family_id="f-1",
    )
    bare = issue_token(7, school_id=1, secret=SECRET, ttl_seconds=60, token_type="refresh")

    claims = decode_token(token, secret=SECRET, expected_type="refresh")

    assert (claims.jti, claims.family_id) == ("j-1", "f-1")
    with pytest.raises(TokenError, match="without a valid jti and fam") as caught:
        decode_token(bare, secret=SECRET, expected_type="refresh")
    assert caught.value.reason == "missing_claim"


def test_rotation_issues_the_next_token_of_the_family_and_reuse_revokes_it(
    engine: Engine,
) -> None:
    with transaction(engine) as session:
        session.add(Staff(id=1, school_id=1, name="Frau Schmidt", email="schmidt@example.org"))
    first = refresh_tokens.issue(
        engine, 1, school_id=1, secret=SECRET, ttl_seconds=3600, now=1_000_000
    )
    first_claims = _refresh_claims(first.token)

    second = refresh_tokens.rotate(engine, first_claims, secret=SECRET, now=1_000_100)
    with pytest.raises(refresh_tokens.RefreshRefused) as reused:
        refresh_tokens.rotate(engine, first_claims, secret=SECRET, now=1_000_200)
    with pytest.raises(refresh_tokens.RefreshRefused) as after:
        refresh_tokens.rotate(engine, _refresh_claims(second.token), secret=SECRET, now=1_000_300)

    assert second.family_id == first.family_id
    assert _refresh_claims(second.token).expires_at == first_claims.expires_at  # not extended
    assert reused.value.reason == "reused"
    assert after.value.reason == "revoked"


def test_a_used_token_presented_again_within_the_grace_window_revokes_nothing(
    engine: Engine,
) -> None:
    with transaction(engine) as session:
        session.add(Staff(id=1, school_id=1, name="Frau Schmidt", email="schmidt@example.org"))
    first = refresh_tokens.issue(
        engine, 1, school_id=1, secret=SECRET, ttl_seconds=3600, now=1_000_000
    )
    first_claims = _refresh_claims(first.token)
    used_at = 1_000_100
    second = refresh_tokens.rotate(engine, first_claims, secret=SECRET, now=used_at)

    with pytest.raises(refresh_tokens.RefreshRefused) as raced:  # the losing tab
        refresh_tokens.rotate(
            engine, first_claims, secret=SECRET, now=used_at + REFRESH_REUSE_GRACE_SECONDS
        )
    third = refresh_tokens.rotate(
        engine, _refresh_claims(second.token), secret=SECRET, now=used_at + 1
    )
    with pytest.raises(refresh_tokens.RefreshRefused) as stolen:  # a copy, after the window
        refresh_tokens.rotate(
            engine, first_claims, secret=SECRET, now=used_at + REFRESH_REUSE_GRACE_SECONDS + 1
        )
    with pytest.raises(refresh_tokens.RefreshRefused) as after:
        refresh_tokens.rotate(engine, _refresh_claims(third.token), secret=SECRET, now=used_at + 30)

    assert raced.value.reason == "already_used"
    assert third.family_id == first.family_id  # the winner's token still worked
    assert stolen.value.reason == "reused"
    assert after.value.reason == "revoked"


def test_logout_revokes_the_family_and_pruning_deletes_only_expired_rows(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(Staff(id=1, school_id=1, name="Frau Schmidt", email="schmidt@example.org"))
    old = refresh_tokens.issue(engine, 1, school_id=1, secret=SECRET, ttl_seconds=60, now=1_000_000)
    kept = refresh_tokens.issue(
        engine, 1, school_id=1, secret=SECRET, ttl_seconds=3600, now=1_000_000
    )

    revoked = refresh_tokens.revoke_family(engine, kept.family_id, now=1_000_010)
    pruned = refresh_tokens.prune_expired(engine, now=1_000_100)
    with pytest.raises(refresh_tokens.RefreshRefused) as logged_out:
        refresh_tokens.rotate(engine, _refresh_claims(kept.token), secret=SECRET, now=1_000_200)

    assert (revoked, pruned) == (1, 1)
    assert old.family_id != kept.family_id
    assert logged_out.value.reason == "revoked"


def test_pruning_is_due_at_most_once_per_interval() -> None:
    clock = iter([0.0, 10.0, 600.0, 601.0]).__next__
    schedule = refresh_tokens.PruneSchedule(600.0, clock=clock)

    assert [schedule.due() for _ in range(4)] == [True, False, True, False]


def test_a_login_of_school_2_stays_of_school_2_through_rotation(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(School(id=2, name="Schule Nord"))
        session.flush()
        session.add(Staff(id=201, school_id=2, name="Herr Berg", email="berg@nord.example.org"))
    first = refresh_tokens.issue(
        engine, 201, school_id=2, secret=SECRET, ttl_seconds=3600, now=1_000_000
    )

    second = refresh_tokens.rotate(
        engine, _refresh_claims(first.token), secret=SECRET, now=1_000_100
    )

    assert _refresh_claims(first.token).school_id == 2
    assert _refresh_claims(second.token).school_id == 2
    assert jwt.decode(second.token, options={"verify_signature": False})["school"] == "2"
