"""Refresh-token rotation with reuse detection, on the `refresh_token` table.

Login starts a family (one id per login) with its first token. Each refresh marks the
presented token used and issues the next one of the family, expiring when the family does
(JWT_REFRESH_TTL after the login: rotation does not lengthen a login). A used token presented
again within REFRESH_REUSE_GRACE_SECONDS of its use is refused as `already_used` and nothing
else happens: two tabs or two requests refreshing at once, or a response lost on the way,
must not end the login of the one that won. Presented later, it means someone else holds a
copy: the whole family is revoked, so the thief's and the owner's tokens stop working
together. Logout revokes the family. Blocking database work: call from a worker thread.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from edge_bridge.models import RefreshToken
from edge_bridge.tokens import TokenClaims, issue_token
from edge_bridge.tuning import REFRESH_REUSE_GRACE_SECONDS

logger = logging.getLogger(__name__)
_TABLE = RefreshToken.__table__  # type: ignore[attr-defined]


class RefreshRefused(Exception):
    """The refresh token cannot be used; `reason` is a snake_case word for log lines."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rotated:
    """The next refresh token of a family."""

    token: str
    family_id: str


def _now(now: float | None) -> datetime:
    return datetime.fromtimestamp(now, UTC) if now is not None else datetime.now(UTC)


def _new_id() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 random bits


def issue(
    engine: Engine,
    staff_id: int,
    *,
    school_id: int,
    secret: str,
    ttl_seconds: float,
    family_id: str | None = None,
    now: float | None = None,
) -> Rotated:
    """A new refresh token, recorded; a new family unless `family_id` is given."""
    issued_at = _now(now)
    with engine.begin() as connection:
        return _insert(
            connection,
            staff_id,
            school_id=school_id,
            secret=secret,
            family_id=family_id or _new_id(),
            issued_at=issued_at,
            expires=int(issued_at.timestamp()) + int(ttl_seconds),
        )


def _insert(
    connection: sa.Connection,
    staff_id: int,
    *,
    school_id: int,
    secret: str,
    family_id: str,
    issued_at: datetime,
    expires: int,
) -> Rotated:
    """Record and sign one token; `expires` is its `exp` (epoch seconds)."""
    jti = _new_id()
    issued = int(issued_at.timestamp())
    token = issue_token(
        staff_id,
        school_id=school_id,
        secret=secret,
        ttl_seconds=max(1, expires - issued),
        token_type="refresh",
        now=issued,
        jti=jti,
        family_id=family_id,
    )
    connection.execute(
        _TABLE.insert().values(
            jti=jti,
            family_id=family_id,
            staff_id=staff_id,
            issued_at=issued_at,
            expires_at=datetime.fromtimestamp(expires, UTC),
        )
    )
    return Rotated(token, family_id)


def rotate(
    engine: Engine, claims: TokenClaims, *, secret: str, now: float | None = None
) -> Rotated:
    """Use the verified refresh token of `claims` once: the next token of its family.

    Raises RefreshRefused: `already_used` (within the grace window; nothing revoked),
    `reused` (the family is revoked now), `revoked`, `expired`, `unknown`.
    """
    assert claims.jti is not None and claims.family_id is not None  # decode_token checked
    assert claims.school_id is not None
    moment = _now(now)
    with engine.begin() as connection:
        # One statement decides: of two parallel refreshes with one token, one wins.
        used = connection.execute(
            _TABLE.update()
            .where(
                _TABLE.c.jti == claims.jti,
                _TABLE.c.family_id == claims.family_id,
                _TABLE.c.staff_id == claims.staff_id,
                _TABLE.c.used_at.is_(None),
                _TABLE.c.revoked_at.is_(None),
                _TABLE.c.expires_at > moment,
            )
            .values(used_at=moment)
        )
        if used.rowcount == 1:
            return _insert(
                connection,
                claims.staff_id,
                school_id=claims.school_id,
                secret=secret,
                family_id=claims.family_id,
                issued_at=moment,
                expires=int(claims.expires_at),  # the family's: rotation does not extend it
            )
    raise _refusal(engine, claims, moment)


def _refusal(engine: Engine, claims: TokenClaims, moment: datetime) -> RefreshRefused:
    """Why the token could not be used; one used before the grace window revokes its family
    (committed) first."""
    with engine.begin() as connection:
        row = connection.execute(
            sa.select(_TABLE.c.used_at, _TABLE.c.revoked_at).where(_TABLE.c.jti == claims.jti)
        ).first()
        if row is None:
            msg = "refresh token unknown (expired and pruned, or never issued here)"
            return RefreshRefused(msg, reason="unknown")
        if row.used_at is None and row.revoked_at is not None:
            msg = "refresh token revoked (logged out)"
            return RefreshRefused(msg, reason="revoked")
        if row.used_at is None:
            msg = "refresh token expired"
            return RefreshRefused(msg, reason="expired")
        since_use = (moment - row.used_at).total_seconds()
        if since_use <= REFRESH_REUSE_GRACE_SECONDS:
            logger.info(
                "Refresh token already used staff_id=%s seconds_since_use=%.1f",
                claims.staff_id,
                since_use,
            )
            msg = "refresh token already used (another refresh with it won); log in again"
            return RefreshRefused(msg, reason="already_used")
        revoked = _revoke(connection, claims.family_id or "", moment)
    logger.warning(
        "Refresh token reused: family revoked staff_id=%s revoked_tokens=%d",
        claims.staff_id,
        revoked,
    )
    msg = "refresh token already used: every token of this login is revoked, log in again"
    return RefreshRefused(msg, reason="reused")


def _revoke(connection: sa.Connection, family_id: str, moment: datetime) -> int:
    result = connection.execute(
        _TABLE.update()
        .where(_TABLE.c.family_id == family_id, _TABLE.c.revoked_at.is_(None))
        .values(revoked_at=moment)
    )
    return result.rowcount


def revoke_family(engine: Engine, family_id: str, *, now: float | None = None) -> int:
    """Revoke every token of a login (logout); how many were still unrevoked."""
    with engine.begin() as connection:
        return _revoke(connection, family_id, _now(now))


def prune_expired(engine: Engine, *, now: float | None = None) -> int:
    """Delete the rows of expired tokens (their JWTs are refused anyway); how many went."""
    with engine.begin() as connection:
        result = connection.execute(_TABLE.delete().where(_TABLE.c.expires_at <= _now(now)))
        return result.rowcount


class PruneSchedule:
    """Says when pruning is due again: at most once per `interval_seconds` (monotonic)."""

    def __init__(
        self, interval_seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval, self.clock = interval_seconds, clock
        self._due = 0.0

    def due(self) -> bool:
        now = self.clock()
        if now < self._due:
            return False
        self._due = now + self.interval
        return True
