"""Login rate limiting, in memory: failure windows per key, known addresses, address buckets.

Not thread-safe on purpose: the login route checks and counts on the event loop, where
nothing runs in between, so a burst of parallel attempts cannot slip past the limit. An
attempt is counted as a failure before its password is checked (in a thread) and forgiven
when the password was right, so only failures stay counted.

The rules (README "Security"):
- per client address (IPv4 address, IPv6 /64): at most `LOGIN_FAILURES_PER_ADDRESS`
  failures per window;
- per email: at most `LOGIN_FAILURES_PER_EMAIL` failures per window;
- a *known* address for an email (one that logged in successfully as that email before,
  `KnownAddresses`) is held to neither: it has its own, per (email, address) failure limit.
  Nobody elsewhere can lock a staff member out, and a school's shared NAT address that an
  attacker filled up still lets in everyone who logged in from there before.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from edge_bridge.tuning import (
    LOGIN_FAILURES_PER_ADDRESS,
    LOGIN_FAILURES_PER_EMAIL,
    LOGIN_FAILURES_PER_KNOWN_ADDRESS,
    LOGIN_KNOWN_ADDRESS_TTL_SECONDS,
    LOGIN_KNOWN_ADDRESSES_MAX,
    LOGIN_LIMITER_MAX_KEYS,
    LOGIN_WINDOW_SECONDS,
)

# Over max_keys, at most this many times more keys are kept when all of them are over their
# limit (blocked keys are never dropped for a newcomer; they leave when their window ends).
HARD_KEY_FACTOR = 10


def address_bucket(host: str) -> str:
    """The key a client address is limited by: an IPv4 address as is, an IPv6 address's /64.

    An IPv6 client gets a /64 (and usually more) from its provider and can rotate through
    it at will, so the /64 is what identifies it. IPv4-mapped IPv6 counts as IPv4; anything
    that is not an IP address (a test client's name) is used as it is.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class SlidingWindowLimiter:
    """At most `limit` hits per key in any `window_seconds`; memory bounded by `max_keys`.

    Over `max_keys`, keys whose hits have all expired go first, then keys under their limit
    that were hit least recently; a key over its limit (one under attack) is kept until its
    window ends, so flooding the table with other keys cannot reset it.
    """

    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            msg = f"limit and window must be positive, got: {limit}, {window_seconds}"
            raise ValueError(msg)
        self.limit, self.window, self.max_keys, self.clock = limit, window_seconds, max_keys, clock
        self._hits: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        hits = self._hits.get(key)
        if hits is None:
            return 0.0
        self._expire(hits)
        if len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.window - self.clock())

    def hit(self, key: str) -> float:
        """Count one attempt for `key`; returns its time stamp (for `forgive`)."""
        hits = self._hits.pop(key, None) or deque()
        self._expire(hits)
        stamp = self.clock()
        hits.append(stamp)
        self._hits[key] = hits  # re-inserted: the dict's order is least recently hit first
        if len(self._hits) > self.max_keys:
            self._evict(keep_key=key)
        return stamp

    def forgive(self, key: str, stamp: float) -> None:
        """Take back one hit counted at `stamp` (an attempt that turned out not to fail)."""
        hits = self._hits.get(key)
        if hits is None:
            return
        try:
            hits.remove(stamp)
        except ValueError:
            return
        if not hits:
            del self._hits[key]

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._hits

    def __len__(self) -> int:
        return len(self._hits)

    def _expire(self, hits: deque[float]) -> None:
        cutoff = self.clock() - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()

    def _evict(self, *, keep_key: str) -> None:
        """Down to 90 % of max_keys (headroom, so a spray of new keys does not rescan)."""
        for key, hits in list(self._hits.items()):
            self._expire(hits)
            if not hits and key != keep_key:
                del self._hits[key]
        keep = self.max_keys * 9 // 10
        # Least recently hit first (dict order), and only keys under their limit.
        for key in [k for k, hits in self._hits.items() if len(hits) < self.limit]:
            if len(self._hits) <= keep:
                return
            if key != keep_key:
                del self._hits[key]
        # Only blocked keys left: keep them, up to a hard bound; then those freed soonest go.
        hard = self.max_keys * HARD_KEY_FACTOR
        if len(self._hits) > hard:
            by_release = sorted(self._hits, key=lambda k: self._hits[k][-self.limit])
            for key in by_release[: len(self._hits) - hard]:
                if key != keep_key:
                    del self._hits[key]


class KnownAddresses:
    """(email, address bucket) pairs that logged in successfully, most recent last; bounded."""

    def __init__(
        self,
        *,
        max_entries: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries, self.ttl, self.clock = max_entries, ttl_seconds, clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def remember(self, email: str, bucket: str) -> None:
        self._seen.pop((email, bucket), None)
        self._seen[(email, bucket)] = self.clock()
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def is_known(self, email: str, bucket: str) -> bool:
        seen = self._seen.get((email, bucket))
        if seen is None:
            return False
        if self.clock() - seen > self.ttl:
            del self._seen[(email, bucket)]
            return False
        return True

    def __len__(self) -> int:
        return len(self._seen)


class LoginLimits:
    """The login route's limits: `admit` before the password check, `succeeded` after."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        def window(limit: int) -> SlidingWindowLimiter:
            return SlidingWindowLimiter(
                limit=limit,
                window_seconds=LOGIN_WINDOW_SECONDS,
                max_keys=LOGIN_LIMITER_MAX_KEYS,
                clock=clock,
            )

        self.by_email = window(LOGIN_FAILURES_PER_EMAIL)
        self.by_address = window(LOGIN_FAILURES_PER_ADDRESS)
        self.by_known_address = window(LOGIN_FAILURES_PER_KNOWN_ADDRESS)
        self.known = KnownAddresses(
            max_entries=LOGIN_KNOWN_ADDRESSES_MAX,
            ttl_seconds=LOGIN_KNOWN_ADDRESS_TTL_SECONDS,
            clock=clock,
        )

    def _keyed(self, email: str, bucket: str) -> list[tuple[SlidingWindowLimiter, str, str]]:
        if self.known.is_known(email, bucket):
            return [(self.by_known_address, f"{email} {bucket}", "known_address")]
        return [(self.by_email, email, "email"), (self.by_address, bucket, "address")]

    def admit(self, email: str, bucket: str) -> Attempt | Refusal:
        """Refusal while over a limit; else the attempt, counted as a failure for now."""
        keyed = self._keyed(email, bucket)
        wait, kind = max((limiter.retry_after(key), kind) for limiter, key, kind in keyed)
        if wait > 0:
            return Refusal(wait, kind)
        return Attempt(
            email, bucket, [(limiter, key, limiter.hit(key)) for limiter, key, _ in keyed]
        )

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the attempt no longer counts, and the address is known."""
        for limiter, key, stamp in attempt.counted:
            limiter.forgive(key, stamp)
        self.known.remember(attempt.email, attempt.bucket)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Over a limit: try again in `retry_after` seconds; `limit` names which one."""

    retry_after: float
    limit: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """An admitted attempt and the failure hits counted for it."""

    email: str
    bucket: str
    counted: list[tuple[SlidingWindowLimiter, str, float]]
