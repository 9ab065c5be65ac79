"""Tests for api/ratelimit.py: the sliding window per key, with a fake clock."""

from __future__ import annotations

import pytest

from api.ratelimit import SlidingWindowLimiter


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_limiter(clock: FakeClock, **options: int) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(limit=3, window_seconds=60, clock=clock, **options)


def test_a_key_may_try_limit_times_then_waits_until_its_oldest_attempt_leaves_the_window() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    waits = []
    for _ in range(3):
        waits.append(limiter.retry_after("a@example.org"))
        limiter.hit("a@example.org")
        clock.now += 10

    assert waits == [0.0, 0.0, 0.0]
    assert limiter.retry_after("a@example.org") == 30.0  # first hit at 1000, window 60, now 1030


def test_the_window_slides_so_one_old_attempt_expiring_frees_one_try() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    for offset in (0, 20, 40):
        clock.now = 1000 + offset
        limiter.hit("k")

    clock.now = 1060.0
    free_after_first = limiter.retry_after("k")
    limiter.hit("k")
    blocked_again = limiter.retry_after("k")

    assert free_after_first == 0.0
    assert blocked_again == 20.0  # now the hit at 1020 is the oldest


def test_keys_are_counted_apart_and_reset_forgets_one() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    for _ in range(3):
        limiter.hit("a")
        limiter.hit("b")

    limiter.reset("a")

    assert limiter.retry_after("a") == 0.0
    assert limiter.retry_after("b") > 0


def test_asking_about_a_key_stores_nothing() -> None:
    limiter = make_limiter(FakeClock())

    for n in range(100):
        limiter.retry_after(f"user{n}@example.org")

    assert len(limiter) == 0


def test_over_max_keys_expired_keys_are_dropped_first() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, max_keys=10)
    for n in range(5):
        limiter.hit(f"old{n}")
    clock.now += 120  # their hits leave the window
    for _ in range(3):
        limiter.hit("attacked@example.org")
    for n in range(5):
        limiter.hit(f"new{n}")

    assert len(limiter) == 6  # the 11th key triggered the clean-up of the five expired ones
    assert limiter.retry_after("attacked@example.org") > 0


def test_over_max_keys_the_least_recently_hit_keys_go() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, max_keys=10)
    for _ in range(3):
        limiter.hit("attacked@example.org")
    for n in range(9):
        limiter.hit(f"spray{n}")
    limiter.hit("attacked@example.org")  # hit again: now the most recent

    limiter.hit("spray9")  # the 11th key

    assert len(limiter) == 9  # trimmed to 90 % so the next new key does not rescan
    assert limiter.retry_after("attacked@example.org") > 0
    assert "spray0" not in limiter._hits and "spray9" in limiter._hits


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (3, 0)])
def test_a_limiter_needs_a_positive_limit_and_window(limit: int, window: float) -> None:
    with pytest.raises(ValueError, match="limit and window must be positive, got:"):
        SlidingWindowLimiter(limit=limit, window_seconds=window)
