"""Tests for api/ratelimit.py: the sliding window per key, address buckets, the login limits.

The per-email windows are stored: those tests run on a real database (the `engine`
fixture: a SQLite file, or PostgreSQL with EDGE_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.ratelimit import (
    Attempt,
    KnownAddresses,
    LoginLimits,
    Refusal,
    SlidingWindowLimiter,
    StoredFailureWindows,
    address_bucket,
)
from edge_bridge.models import LoginFailureWindow
from edge_bridge.tuning import (
    LOGIN_FAILURE_PRUNE_INTERVAL_SECONDS,
    LOGIN_FAILURES_PER_ADDRESS,
    LOGIN_FAILURES_PER_EMAIL,
    LOGIN_FAILURES_PER_KNOWN_ADDRESS,
    LOGIN_WINDOW_SECONDS,
)

STAFF = "schmidt@example.org"
NAT = "203.0.113.10"  # the school's one public address


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_limiter(clock: FakeClock, **options: int) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(limit=3, window_seconds=60, clock=clock, **options)


def make_limits(engine: Engine, clock: FakeClock) -> LoginLimits:
    """One instance's limits on the shared database; the fake clock for both clocks."""
    return LoginLimits(engine, clock=clock, wall_clock=clock)


def stored_rows(engine: Engine) -> list[tuple[str, int]]:
    table = LoginFailureWindow.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.select(table.c.key, table.c.failures))]


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


def test_flooding_ten_thousand_other_keys_does_not_reset_a_key_over_its_limit() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, max_keys=10_000)
    for _ in range(3):
        limiter.hit("attacked@example.org")  # now over its limit, and never hit again
    clock.now += 1

    for n in range(25_000):  # each a new key, each more recent than the attacked one
        limiter.hit(f"spray{n}@example.org")

    assert limiter.retry_after("attacked@example.org") == 59.0
    assert len(limiter) <= 10_000


def test_forgive_takes_back_exactly_one_counted_hit() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.hit("k")
    clock.now += 1
    stamp = limiter.hit("k")
    clock.now += 1
    limiter.hit("k")

    limiter.forgive("k", stamp)
    limiter.forgive("k", stamp)  # a second time: nothing left to take back

    assert limiter.retry_after("k") == 0.0
    limiter.hit("k")
    assert limiter.retry_after("k") == 58.0


@pytest.mark.parametrize(
    ("host", "bucket"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
    ],
)
def test_client_addresses_are_bucketed_ipv4_by_address_and_ipv6_by_64(
    host: str, bucket: str
) -> None:
    assert address_bucket(host) == bucket


def test_rotating_through_an_ipv6_64_does_not_escape_the_address_limit(engine: Engine) -> None:
    limits = make_limits(engine, FakeClock())
    prefix = "2001:db8:77:1"

    outcomes = [
        limits.admit(f"user{n}@example.org", address_bucket(f"{prefix}::{n:x}"))
        for n in range(LOGIN_FAILURES_PER_ADDRESS + 1)
    ]

    assert all(isinstance(outcome, Attempt) for outcome in outcomes[:-1])
    assert isinstance(outcomes[-1], Refusal)
    assert outcomes[-1].limit == "address"


def test_a_successful_login_does_not_count_towards_any_limit(engine: Engine) -> None:
    limits = make_limits(engine, FakeClock())

    for _ in range(LOGIN_FAILURES_PER_EMAIL * 3):
        attempt = limits.admit(STAFF, NAT)
        assert isinstance(attempt, Attempt)
        limits.succeeded(attempt)

    assert NAT not in limits.by_address
    assert [failures for _key, failures in stored_rows(engine)] == [0, 0]  # email, known


def test_an_attacker_elsewhere_cannot_lock_a_staff_member_out_of_a_known_address(
    engine: Engine,
) -> None:
    limits = make_limits(engine, FakeClock())
    first = limits.admit(STAFF, NAT)
    assert isinstance(first, Attempt)
    limits.succeeded(first)  # Frau Schmidt logged in from the school before
    attacker = [limits.admit(STAFF, "198.51.100.9") for _ in range(LOGIN_FAILURES_PER_EMAIL + 1)]

    from_school = limits.admit(STAFF, NAT)
    from_home = limits.admit(STAFF, "192.0.2.55")

    assert all(isinstance(a, Attempt) for a in attacker[:-1])  # all failed: counted
    assert isinstance(attacker[-1], Refusal) and attacker[-1].limit == "email"
    assert isinstance(from_school, Attempt)  # a known address: the email limit does not apply
    assert isinstance(from_home, Refusal)  # unknown address: over the email limit, refused


def test_a_full_nat_address_still_admits_staff_who_logged_in_from_it_before(engine: Engine) -> None:
    limits = make_limits(engine, FakeClock())
    first = limits.admit(STAFF, NAT)
    assert isinstance(first, Attempt)
    limits.succeeded(first)
    for n in range(LOGIN_FAILURES_PER_ADDRESS):  # someone behind the same NAT sprays
        assert isinstance(limits.admit(f"nobody{n}@example.org", NAT), Attempt)

    newcomer = limits.admit("new@example.org", NAT)
    known = limits.admit(STAFF, NAT)

    assert isinstance(newcomer, Refusal) and newcomer.limit == "address"
    assert isinstance(known, Attempt)


def test_a_known_address_has_a_failure_limit_of_its_own(engine: Engine) -> None:
    limits = make_limits(engine, FakeClock())
    first = limits.admit(STAFF, NAT)
    assert isinstance(first, Attempt)
    limits.succeeded(first)

    outcomes = [limits.admit(STAFF, NAT) for _ in range(LOGIN_FAILURES_PER_KNOWN_ADDRESS + 1)]

    assert all(isinstance(outcome, Attempt) for outcome in outcomes[:-1])
    assert isinstance(outcomes[-1], Refusal) and outcomes[-1].limit == "known_address"


def test_known_addresses_are_bounded_and_forgotten_after_their_ttl() -> None:
    clock = FakeClock()
    known = KnownAddresses(max_entries=3, ttl_seconds=100, clock=clock)
    for n in range(4):
        known.remember(f"s{n}@example.org", NAT)
    clock.now += 50
    known.remember("s1@example.org", NAT)  # refreshed
    clock.now += 60

    assert len(known) == 3
    assert not known.is_known("s0@example.org", NAT)  # the least recent went first
    assert known.is_known("s1@example.org", NAT)
    assert not known.is_known("s2@example.org", NAT)  # older than the ttl


def test_a_stored_window_admits_limit_attempts_then_refuses_until_it_is_over(
    engine: Engine,
) -> None:
    clock = FakeClock()
    windows = StoredFailureWindows(engine, window_seconds=60, wall_clock=clock)
    admitted = []
    for _ in range(3):
        admitted.append(windows.count("email a@example.org", 3).admitted)
        clock.now += 10

    refused = windows.count("email a@example.org", 3)
    clock.now = 1060.0  # the window began at 1000
    restarted = windows.count("email a@example.org", 3)

    assert admitted == [True, True, True]
    assert not refused.admitted and refused.retry_after == 30.0
    assert restarted.admitted
    assert restarted.window_start.timestamp() == 1060.0


def test_refused_attempts_do_not_count_so_forgiving_one_admitted_frees_exactly_one_try(
    engine: Engine,
) -> None:
    clock = FakeClock()
    windows = StoredFailureWindows(engine, window_seconds=60, wall_clock=clock)
    counted = [windows.count("k", 3) for _ in range(3)]
    refused = [windows.count("k", 3) for _ in range(5)]  # the window is full

    windows.forgive("k", counted[-1].window_start, 3)  # that one was the right password
    freed = windows.count("k", 3)
    full_again = windows.count("k", 3)

    assert all(c.admitted for c in counted) and not any(r.admitted for r in refused)
    assert freed.admitted
    assert not full_again.admitted


def test_forgiving_an_attempt_of_a_window_that_restarted_since_changes_nothing(
    engine: Engine,
) -> None:
    clock = FakeClock()
    windows = StoredFailureWindows(engine, window_seconds=60, wall_clock=clock)
    old = windows.count("k", 2)
    clock.now += 61
    for _ in range(2):
        windows.count("k", 2)

    windows.forgive("k", old.window_start, 2)

    assert not windows.count("k", 2).admitted


def test_two_instances_on_one_database_share_the_per_email_budget(engine: Engine) -> None:
    clock = FakeClock()
    instance_a, instance_b = make_limits(engine, clock), make_limits(engine, clock)

    spread = [
        (instance_a if n % 2 else instance_b).admit(STAFF, f"198.51.100.{n}")
        for n in range(LOGIN_FAILURES_PER_EMAIL)
    ]
    on_a = instance_a.admit(STAFF, "198.51.100.200")
    on_b = instance_b.admit(STAFF, "198.51.100.201")

    assert all(isinstance(attempt, Attempt) for attempt in spread)
    assert isinstance(on_a, Refusal) and on_a.limit == "email"
    assert isinstance(on_b, Refusal) and on_b.limit == "email"
    assert on_a.retry_after == LOGIN_WINDOW_SECONDS


def test_a_refusal_by_the_email_limit_takes_back_the_address_hit(engine: Engine) -> None:
    limits = make_limits(engine, FakeClock())
    for n in range(LOGIN_FAILURES_PER_EMAIL):
        limits.admit(STAFF, f"192.0.2.{n}")

    refusals = [limits.admit(STAFF, NAT) for _ in range(LOGIN_FAILURES_PER_ADDRESS + 5)]
    other_email = limits.admit("other@example.org", NAT)

    assert all(isinstance(r, Refusal) and r.limit == "email" for r in refusals)
    assert isinstance(other_email, Attempt)  # the NAT's address bucket was not filled


def test_stored_keys_are_digests_never_the_email_as_typed(engine: Engine) -> None:
    limits = make_limits(engine, FakeClock())

    limits.admit("Hunter2-typed-into-the-email-field", NAT)

    [(key, failures)] = stored_rows(engine)
    assert len(key) == 64 and "hunter2" not in key.lower()
    assert failures == 1


def test_windows_that_are_over_are_pruned_and_running_ones_are_kept(engine: Engine) -> None:
    clock = FakeClock()
    windows = StoredFailureWindows(engine, window_seconds=60, wall_clock=clock)
    windows.count("old", 3)
    clock.now += 61
    windows.count("running", 3)

    deleted = windows.prune()

    assert deleted == 1
    assert [failures for _key, failures in stored_rows(engine)] == [1]
    assert windows.count("running", 1).retry_after > 0  # still counted: now refused


def test_counting_prunes_at_most_once_per_interval(engine: Engine) -> None:
    clock = FakeClock()
    limits = make_limits(engine, clock)
    limits.admit("first@example.org", "192.0.2.1")  # the first count prunes (nothing yet)
    clock.now += LOGIN_WINDOW_SECONDS + 1
    limits.admit("second@example.org", "192.0.2.2")
    kept = len(stored_rows(engine))
    clock.now += LOGIN_FAILURE_PRUNE_INTERVAL_SECONDS

    limits.admit("third@example.org", "192.0.2.3")

    assert kept == 2  # the expired first window waited for the interval
    assert [failures for _key, failures in stored_rows(engine)] == [1]  # only the third left
