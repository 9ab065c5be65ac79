"""Login rate limiting: per-email failure windows in the database, per-address ones in memory.

An attempt is counted as a failure before its password is checked and forgiven when the
password was right, so only failures stay counted, and a burst of parallel attempts cannot
slip past a limit: each check-and-count is one step. Per email (and per known address) that
step is one atomic upsert in the shared database (`StoredFailureWindows`), so N instances
behind a load balancer give an attacker one budget per email, not N. Per client address
the limit is the load balancer's (deploy/nginx.conf `limit_req`) plus this process's
in-memory bucket; the known-address map is in memory too (each instance learns its own).
`LoginLimits` is thread-safe: the route runs it in a worker thread, off the event loop.

The rules (README "Security"):
- per client address (IPv4 address, IPv6 /64): at most `LOGIN_FAILURES_PER_ADDRESS`
  failures per window;
- per email: at most `LOGIN_FAILURES_PER_EMAIL` failures per window (a fixed window that
  starts at the first failure and restarts once it is over, counted in the database);
- a *known* address for an email (one that logged in successfully as that email before,
  `KnownAddresses`) is held to neither: it has its own, per (email, address) failure limit
  (in the database as well).
  Nobody elsewhere can lock a staff member out, and a school's shared NAT address that an
  attacker filled up still lets in everyone who logged in from there before.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from edge_bridge.models import LoginFailureWindow
from edge_bridge.refresh_tokens import PruneSchedule
from edge_bridge.tuning import (
    LOGIN_FAILURE_PRUNE_INTERVAL_SECONDS,
    LOGIN_FAILURES_PER_ADDRESS,
    LOGIN_FAILURES_PER_EMAIL,
    LOGIN_FAILURES_PER_KNOWN_ADDRESS,
    LOGIN_KNOWN_ADDRESS_TTL_SECONDS,
    LOGIN_KNOWN_ADDRESSES_MAX,
    LOGIN_LIMITER_MAX_KEYS,
    LOGIN_WINDOW_SECONDS,
)

logger = logging.getLogger(__name__)
_WINDOWS = LoginFailureWindow.__table__  # type: ignore[attr-defined]

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


class StoredFailureWindows:
    """Failure counts per key in the shared database, one fixed window per key.

    `count` is one statement, an upsert whose result decides: it restarts a window that is
    over, counts the attempt while the window is under `limit`, and marks the window as
    refused (`limit + 1`, never more) once it is full, returning the row as it then is. So
    parallel attempts on any number of instances are serialized by the row, and no more than
    `limit` are admitted per window. `forgive` takes one admitted attempt back.
    Keys are stored as their SHA-256, never as typed.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        window_seconds: float = LOGIN_WINDOW_SECONDS,
        wall_clock: Callable[[], float] = time.time,
        prune: PruneSchedule | None = None,
    ) -> None:
        if engine.dialect.name not in ("postgresql", "sqlite"):
            msg = f"login limits need PostgreSQL or SQLite, got: {engine.dialect.name}"
            raise ValueError(msg)
        self.engine, self.window, self.wall_clock = engine, window_seconds, wall_clock
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._prune = prune or PruneSchedule(LOGIN_FAILURE_PRUNE_INTERVAL_SECONDS)

    def count(self, key: str, limit: int) -> Counted:
        """Count one attempt for `key` unless its window is full; says which it was."""
        now = self._now()
        start = _WINDOWS.c.window_start
        expired = start <= now - timedelta(seconds=self.window)
        failures = _WINDOWS.c.failures
        statement = (
            self._insert(_WINDOWS)
            .values(key=_digest(key), window_start=now, failures=1)
            .on_conflict_do_update(
                index_elements=[_WINDOWS.c.key],
                set_={
                    "window_start": sa.case((expired, now), else_=start),
                    "failures": sa.case(
                        (expired, 1), (failures <= limit, failures + 1), else_=failures
                    ),
                },
            )
            .returning(start, failures)
        )
        with self.engine.begin() as connection:
            window_start, counted = connection.execute(statement).one()
        if self._prune.due():
            self.prune()
        if counted <= limit:
            return Counted(admitted=True, window_start=window_start, retry_after=0.0)
        left = (window_start - now).total_seconds() + self.window
        return Counted(admitted=False, window_start=window_start, retry_after=max(0.0, left))

    def forgive(self, key: str, window_start: datetime, limit: int) -> None:
        """Take back one attempt admitted in the window that started at `window_start`.

        A full window reads `limit + 1` once something was refused; its admitted attempts
        are `limit`, so forgiving one leaves `limit - 1`. A window restarted since counts
        nothing of the attempt any more and is left alone.
        """
        failures = _WINDOWS.c.failures
        statement = (
            _WINDOWS.update()
            .where(
                _WINDOWS.c.key == _digest(key),
                _WINDOWS.c.window_start == window_start,
                failures > 0,
            )
            .values(failures=sa.case((failures > limit, limit - 1), else_=failures - 1))
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    def prune(self) -> int:
        """Delete the rows whose window is over (a new attempt would restart them anyway)."""
        cutoff = self._now() - timedelta(seconds=self.window)
        with self.engine.begin() as connection:
            deleted = connection.execute(_WINDOWS.delete().where(_WINDOWS.c.window_start <= cutoff))
        logger.info("Login failure windows pruned count=%d", deleted.rowcount)
        return deleted.rowcount

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_clock(), UTC)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Counted:
    """What `StoredFailureWindows.count` decided, and the window it counted in."""

    admitted: bool
    window_start: datetime
    retry_after: float


class LoginLimits:
    """The login route's limits: `admit` before the password check, `succeeded` after.

    Thread-safe (the route calls both from worker threads): the in-memory parts are guarded
    by a lock, the per-email part is one database statement per call.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.by_address = SlidingWindowLimiter(
            limit=LOGIN_FAILURES_PER_ADDRESS,
            window_seconds=LOGIN_WINDOW_SECONDS,
            max_keys=LOGIN_LIMITER_MAX_KEYS,
            clock=clock,
        )
        self.known = KnownAddresses(
            max_entries=LOGIN_KNOWN_ADDRESSES_MAX,
            ttl_seconds=LOGIN_KNOWN_ADDRESS_TTL_SECONDS,
            clock=clock,
        )
        self.stored = StoredFailureWindows(
            engine,
            wall_clock=wall_clock,
            prune=PruneSchedule(LOGIN_FAILURE_PRUNE_INTERVAL_SECONDS, clock=clock),
        )
        self._lock = threading.Lock()

    def admit(self, email: str, bucket: str) -> Attempt | Refusal:
        """Refusal while over a limit; else the attempt, counted as a failure for now.

        The address bucket is checked and counted first (in memory, no database write for
        an address that floods), then the email's shared window; refused there, the address
        hit is taken back.
        """
        with self._lock:
            known = self.known.is_known(email, bucket)
            stamp = None
            if not known:
                wait = self.by_address.retry_after(bucket)
                if wait > 0:
                    return Refusal(wait, "address")
                stamp = self.by_address.hit(bucket)
        if known:
            key, limit, kind = (
                f"known {email} {bucket}",
                LOGIN_FAILURES_PER_KNOWN_ADDRESS,
                "known_address",
            )
        else:
            key, limit, kind = f"email {email}", LOGIN_FAILURES_PER_EMAIL, "email"
        try:
            counted = self.stored.count(key, limit)
        except BaseException:
            self._forgive_address(bucket, stamp)
            raise
        if not counted.admitted:
            self._forgive_address(bucket, stamp)
            return Refusal(counted.retry_after, kind)
        return Attempt(email, bucket, key, limit, counted.window_start, stamp)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the attempt no longer counts, and the address is known."""
        self.stored.forgive(attempt.key, attempt.window_start, attempt.limit)
        self._forgive_address(attempt.bucket, attempt.address_stamp)
        with self._lock:
            self.known.remember(attempt.email, attempt.bucket)

    def _forgive_address(self, bucket: str, stamp: float | None) -> None:
        if stamp is None:
            return
        with self._lock:
            self.by_address.forgive(bucket, stamp)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Over a limit: try again in `retry_after` seconds; `limit` names which one."""

    retry_after: float
    limit: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """An admitted attempt: where it was counted, to take it back when it succeeds.

    `key`, `limit` and `window_start` name its stored window; `address_stamp` is its hit on
    the in-memory address bucket (None for a known address, which is not counted there).
    """

    email: str
    bucket: str
    key: str
    limit: int
    window_start: datetime
    address_stamp: float | None
