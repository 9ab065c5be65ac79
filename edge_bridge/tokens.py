"""JWT access and refresh tokens (HS256, PyJWT): issue and decode, nothing HTTP-specific.

Every staff token carries its school (`school`, the id as a string): whatever it
authorizes is scoped to that school. An operator token (`role: "superadmin"`, subject
`operator`, no school) may only list schools and their health (`api/routes/schools.py`).

A refresh token also carries `jti` (its own id) and `fam` (the id of the login it descends
from); `edge_bridge/refresh_tokens.py` records them to rotate tokens and detect reuse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import jwt

ALGORITHM = "HS256"
TokenType = Literal["access", "refresh"]


class TokenError(Exception):
    """A token was refused; the message says why and never contains the token.

    `reason` is a short snake_case word for log lines (`reason=expired`).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# PyJWT's refusal → our log reason; anything else is `invalid`.
_REASONS: dict[type[jwt.InvalidTokenError], str] = {
    jwt.InvalidAlgorithmError: "wrong_algorithm",
    jwt.InvalidSignatureError: "bad_signature",
    jwt.MissingRequiredClaimError: "missing_claim",
    jwt.DecodeError: "malformed",
    jwt.ImmatureSignatureError: "not_yet_valid",
}
_MAX_ID_DIGITS = 18  # fits a signed 64-bit database integer
_MAX_TOKEN_ID_LENGTH = 64  # the refresh_token table's jti and family_id columns


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The claims we rely on after a token was verified."""

    staff_id: int  # 0 for an operator token
    token_type: TokenType
    admin: bool
    expires_at: float
    jti: str | None = None  # refresh tokens only
    family_id: str | None = None  # refresh tokens only
    school_id: int | None = None  # None only for an operator token
    superadmin: bool = False


OPERATOR_SUBJECT = "operator"
SUPERADMIN = "superadmin"


def issue_token(
    staff_id: int,
    *,
    school_id: int,
    secret: str,
    ttl_seconds: float,
    token_type: TokenType = "access",
    admin: bool = False,
    now: float | None = None,
    jti: str | None = None,
    family_id: str | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "sub": str(staff_id),
        "iat": issued,
        "exp": issued + int(ttl_seconds),
        "typ": token_type,
        "school": str(school_id),
    }
    if admin:
        claims["admin"] = True
    if jti is not None:
        claims["jti"] = jti
    if family_id is not None:
        claims["fam"] = family_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def issue_operator_token(*, secret: str, ttl_seconds: float, now: float | None = None) -> str:
    """An access token for the operator (`superadmin`): schools and their health, no school."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": OPERATOR_SUBJECT,
        "iat": issued,
        "exp": issued + int(ttl_seconds),
        "typ": "access",
        "role": SUPERADMIN,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _is_staff_id(sub: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    return sub.isascii() and sub.isdecimal() and len(sub) <= _MAX_ID_DIGITS


def _is_token_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_TOKEN_ID_LENGTH


def decode_token(
    token: str,
    *,
    secret: str,
    expected_type: TokenType = "access",
    verify_exp: bool = True,
) -> TokenClaims:
    """Verify signature (HS256 only), expiry and type; raise TokenError with a reason.

    A refresh token must carry `jti` and `fam`. `verify_exp=False` is for logout only,
    which may revoke the family of an expired token.
    """
    required = ["sub", "exp", "iat", "typ"]
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": required, "verify_exp": verify_exp},
        )
    except jwt.ExpiredSignatureError:
        msg = "token expired"
        raise TokenError(msg, reason="expired") from None
    except jwt.InvalidTokenError as exc:
        reason = next((r for t, r in _REASONS.items() if isinstance(exc, t)), "invalid")
        msg = f"invalid token: {type(exc).__name__}"
        raise TokenError(msg, reason=reason) from None
    if claims.get("typ") != expected_type:
        msg = f"wrong token type: expected {expected_type}"
        raise TokenError(msg, reason="wrong_type")
    sub = claims.get("sub")
    if claims.get("role") == SUPERADMIN:
        if sub != OPERATOR_SUBJECT or expected_type != "access" or "school" in claims:
            msg = "operator token with a staff subject, a school or a refresh type"
            raise TokenError(msg, reason="bad_subject")
        return TokenClaims(0, "access", False, float(claims["exp"]), superadmin=True)
    if not isinstance(sub, str) or not _is_staff_id(sub):
        msg = "subject is not a staff id"
        raise TokenError(msg, reason="bad_subject")
    school = claims.get("school")
    if not isinstance(school, str) or not _is_staff_id(school) or int(school) < 1:
        msg = "token without a valid school claim"
        raise TokenError(msg, reason="missing_school")
    jti, family_id = claims.get("jti"), claims.get("fam")
    if expected_type == "refresh" and not (_is_token_id(jti) and _is_token_id(family_id)):
        msg = "refresh token without a valid jti and fam"
        raise TokenError(msg, reason="missing_claim")
    return TokenClaims(
        int(sub),
        expected_type,
        claims.get("admin") is True,
        float(claims["exp"]),
        jti=jti if _is_token_id(jti) else None,
        family_id=family_id if _is_token_id(family_id) else None,
        school_id=int(school),
    )
