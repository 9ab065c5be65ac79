"""Verified access tokens, remembered until they expire: a reconnect storm verifies each once.

Thousands of dashboards reconnecting after a restart each present a token the process has
most likely seen before. HMAC verification and claim checks are cheap but not free at that
rate; a hit here is one dict lookup. Only successful verifications are kept, keyed by the
whole token string (signature included), and a hit is re-checked against its `exp`, so the
cache never accepts what `decode_token` would refuse. The bound evicts the oldest entries.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_bridge.tokens import TokenClaims, decode_token


class AccessTokenCache:
    """`verify(token)` → the claims of a valid access token, or TokenError."""

    def __init__(
        self,
        *,
        secret: str,
        max_entries: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._max_entries = max_entries
        self._clock = clock
        self._claims: dict[str, TokenClaims] = {}

    def verify(self, token: str) -> TokenClaims:
        claims = self._claims.get(token)
        if claims is not None:
            if claims.expires_at > self._clock():
                return claims
            del self._claims[token]
        claims = decode_token(token, secret=self._secret, expected_type="access")
        if len(self._claims) >= self._max_entries:
            del self._claims[next(iter(self._claims))]  # the oldest
        self._claims[token] = claims
        return claims

    def __len__(self) -> int:
        return len(self._claims)
