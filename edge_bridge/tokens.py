"""JWT access and refresh tokens (HS256, PyJWT): issue and decode, nothing HTTP-specific."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import jwt

ALGORITHM = "HS256"
TokenType = Literal["access", "refresh"]


class TokenError(Exception):
    """A token was refused; the message says why and never contains the token."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The claims we rely on after a token was verified."""

    staff_id: int
    token_type: TokenType
    admin: bool
    expires_at: float


def issue_token(
    staff_id: int,
    *,
    secret: str,
    ttl_seconds: float,
    token_type: TokenType = "access",
    admin: bool = False,
    now: float | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "sub": str(staff_id),
        "iat": issued,
        "exp": issued + int(ttl_seconds),
        "typ": token_type,
    }
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, *, secret: str, expected_type: TokenType = "access") -> TokenClaims:
    """Verify signature (HS256 only), expiry and type; raise TokenError with a reason."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat", "typ"]},
        )
    except jwt.ExpiredSignatureError:
        msg = "token expired"
        raise TokenError(msg) from None
    except jwt.InvalidTokenError as exc:
        msg = f"invalid token: {type(exc).__name__}"
        raise TokenError(msg) from None
    if claims.get("typ") != expected_type:
        msg = f"wrong token type: expected {expected_type}"
        raise TokenError(msg)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.isdigit():
        msg = "subject is not a staff id"
        raise TokenError(msg)
    return TokenClaims(int(sub), expected_type, claims.get("admin") is True, float(claims["exp"]))
