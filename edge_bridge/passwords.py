"""Password hashing (Argon2id). Only hashes are stored; plain passwords are never logged."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum for Argon2id (19 MiB, 2 passes): strong, and cheap enough for a small box.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# A hash of a random string, verified against when the email is unknown, so a login for an
# unknown email costs the same time as one with a wrong password.
_DUMMY_HASH = _hasher.hash("edge-bridge-timing-equalizer")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """True when the password matches; False for a wrong one, a missing or a broken hash."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False
