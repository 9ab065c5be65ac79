"""Verified access tokens are remembered until they expire, and nothing else is."""

from __future__ import annotations

import time

import jwt
import pytest

from edge_bridge import token_cache
from edge_bridge.token_cache import AccessTokenCache
from edge_bridge.tokens import TokenError, issue_operator_token, issue_token

SECRET = "k" * 48


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def now() -> float:
    """This test's start: its tokens are issued then (decode_token checks `exp` against the
    real clock, so a time taken at collection would expire during a long run)."""
    return time.time()


def test_a_valid_token_is_verified_once_and_then_served_from_the_cache(now: float) -> None:
    clock = Clock(now)
    cache = AccessTokenCache(secret=SECRET, clock=clock)
    token = issue_token(5, school_id=1, secret=SECRET, ttl_seconds=60, now=now)

    first = cache.verify(token)
    second = cache.verify(token)

    assert first.staff_id == 5
    assert second is first
    assert len(cache) == 1


def test_a_cached_token_is_verified_again_once_it_has_expired(
    monkeypatch: pytest.MonkeyPatch,
    now: float,
) -> None:
    clock = Clock(now)
    cache = AccessTokenCache(secret=SECRET, clock=clock)
    token = issue_token(5, school_id=1, secret=SECRET, ttl_seconds=60, now=now)
    cache.verify(token)
    calls: list[str] = []

    def expired(token: str, **_options: object) -> None:
        calls.append(token)
        msg = "token expired"
        raise TokenError(msg, reason="expired")

    monkeypatch.setattr(token_cache, "decode_token", expired)
    clock.now = now + 61

    with pytest.raises(TokenError) as refused:
        cache.verify(token)
    assert refused.value.reason == "expired"
    assert calls == [token]  # not served from the cache
    assert len(cache) == 0


def test_a_refused_token_is_not_remembered(now: float) -> None:
    cache = AccessTokenCache(secret=SECRET, clock=Clock(now))
    forged = issue_token(5, school_id=1, secret="other" * 10, ttl_seconds=60, now=now)

    for _ in range(2):
        with pytest.raises(TokenError):
            cache.verify(forged)
    assert len(cache) == 0


def test_the_oldest_entries_go_first_beyond_the_bound(now: float) -> None:
    cache = AccessTokenCache(secret=SECRET, max_entries=2, clock=Clock(now))
    tokens = [
        issue_token(n, school_id=1, secret=SECRET, ttl_seconds=60, now=now) for n in (1, 2, 3)
    ]

    for token in tokens:
        cache.verify(token)

    assert len(cache) == 2
    assert cache.verify(tokens[2]).staff_id == 3


def test_a_hit_keeps_the_school_and_the_operator_mark_of_its_token(now: float) -> None:
    cache = AccessTokenCache(secret=SECRET, clock=Clock(now))
    staff = issue_token(5, school_id=2, secret=SECRET, ttl_seconds=60, now=now)
    operator = issue_operator_token(secret=SECRET, ttl_seconds=60, now=now)

    first = [cache.verify(staff), cache.verify(operator)]
    hits = [cache.verify(staff), cache.verify(operator)]

    assert [claims is hit for claims, hit in zip(first, hits, strict=True)] == [True, True]
    assert [(c.school_id, c.superadmin) for c in hits] == [(2, False), (None, True)]


def test_a_staff_token_without_a_school_is_refused_every_time_and_never_cached(now: float) -> None:
    cache = AccessTokenCache(secret=SECRET, clock=Clock(now))
    now = int(now)
    schoolless = jwt.encode(
        {"sub": "5", "iat": now, "exp": now + 60, "typ": "access"}, SECRET, algorithm="HS256"
    )

    reasons = []
    for _ in range(2):
        with pytest.raises(TokenError) as refused:
            cache.verify(schoolless)
        reasons.append(refused.value.reason)

    assert reasons == ["missing_school", "missing_school"]
    assert len(cache) == 0
