"""Verified access tokens are remembered until they expire, and nothing else is."""

from __future__ import annotations

import time

import pytest

from edge_bridge import token_cache
from edge_bridge.token_cache import AccessTokenCache
from edge_bridge.tokens import TokenError, issue_token

SECRET = "k" * 48
NOW = time.time()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_a_valid_token_is_verified_once_and_then_served_from_the_cache() -> None:
    clock = Clock()
    cache = AccessTokenCache(secret=SECRET, clock=clock)
    token = issue_token(5, school_id=1, secret=SECRET, ttl_seconds=60, now=NOW)

    first = cache.verify(token)
    second = cache.verify(token)

    assert first.staff_id == 5
    assert second is first
    assert len(cache) == 1


def test_a_cached_token_is_verified_again_once_it_has_expired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    cache = AccessTokenCache(secret=SECRET, clock=clock)
    token = issue_token(5, school_id=1, secret=SECRET, ttl_seconds=60, now=NOW)
    cache.verify(token)
    calls: list[str] = []

    def expired(token: str, **_options: object) -> None:
        calls.append(token)
        msg = "token expired"
        raise TokenError(msg, reason="expired")

    monkeypatch.setattr(token_cache, "decode_token", expired)
    clock.now = NOW + 61

    with pytest.raises(TokenError) as refused:
        cache.verify(token)
    assert refused.value.reason == "expired"
    assert calls == [token]  # not served from the cache
    assert len(cache) == 0


def test_a_refused_token_is_not_remembered() -> None:
    cache = AccessTokenCache(secret=SECRET, clock=Clock())
    forged = issue_token(5, school_id=1, secret="other" * 10, ttl_seconds=60, now=NOW)

    for _ in range(2):
        with pytest.raises(TokenError):
            cache.verify(forged)
    assert len(cache) == 0


def test_the_oldest_entries_go_first_beyond_the_bound() -> None:
    cache = AccessTokenCache(secret=SECRET, max_entries=2, clock=Clock())
    tokens = [
        issue_token(n, school_id=1, secret=SECRET, ttl_seconds=60, now=NOW) for n in (1, 2, 3)
    ]

    for token in tokens:
        cache.verify(token)

    assert len(cache) == 2
    assert cache.verify(tokens[2]).staff_id == 3
