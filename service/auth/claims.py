"""A token's claims: the RFC 7519 checks we require, and the caller they name.

Written out rather than joserfc's JWTClaimsRegistry, which costs more per token than the rest
of a cache miss's checks; tests/auth/test_differential.py
keeps the two in step: whatever the registry refuses, we refuse too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeGuard

from ..errors import InvalidToken, TokenRejection

MAX_SUBJECT_LENGTH = 255
REQUIRED_CLAIMS = ("aud", "exp", "iat", "iss", "sub")  # all of them set by Better Auth
MAX_NUMERIC_DATE = 10**11  # about year 5138: beyond it a NumericDate is an attack, not a date


@dataclass(frozen=True)
class Principal:
    """The verified caller."""

    user_id: str
    kid: str
    expires_at: float
    claims: dict[str, Any]
    # None: a Better Auth session JWT, which may do anything its user may. A set: an OAuth access
    # token, limited to those scopes.
    scopes: frozenset[str] | None = None
    session_id: str | None = None  # the `sid` claim, when the token carries one


@dataclass(frozen=True)
class ClaimsPolicy:
    issuers: frozenset[str]
    audiences: frozenset[str]
    leeway_seconds: int
    max_lifetime_seconds: float = math.inf

    def check(self, claims: dict[str, Any], now: float) -> None:
        """Every claim Better Auth sets is required, times are finite numbers in range, then
        compared with now; InvalidToken otherwise."""
        missing = sorted(name for name in REQUIRED_CLAIMS if claims.get(name) is None)
        if missing:
            raise InvalidToken(TokenRejection.CLAIMS, f"missing claim(s): {','.join(missing)}")
        times = {name: _numeric_date(claims, name) for name in ("exp", "iat", "nbf") if name in claims}
        whole_now = int(now)
        leeway = self.leeway_seconds
        if times["exp"] <= whole_now - leeway:
            raise InvalidToken(TokenRejection.EXPIRED, "token has expired")
        if times["iat"] > whole_now + leeway:
            raise InvalidToken(TokenRejection.CLAIMS, "invalid 'iat' claim: the token was issued in the future")
        if "nbf" in times and times["nbf"] > whole_now + leeway:
            raise InvalidToken(TokenRejection.CLAIMS, "invalid 'nbf' claim: the token is not yet valid")
        if times["exp"] - times["iat"] > self.max_lifetime_seconds:
            # A leaked or misissued long-lived token must not be honoured for days.
            raise InvalidToken(
                TokenRejection.LIFETIME_TOO_LONG,
                f"token lifetime (exp - iat) exceeds {self.max_lifetime_seconds:g} seconds",
            )
        iss = claims["iss"]
        if not isinstance(iss, str) or iss not in self.issuers:
            raise InvalidToken(TokenRejection.CLAIMS, "invalid 'iss' claim: wrong value or type")
        aud = claims["aud"]
        if not (
            (isinstance(aud, str) and aud in self.audiences)
            or (isinstance(aud, list) and all(isinstance(a, str) for a in aud) and not self.audiences.isdisjoint(aud))
        ):
            raise InvalidToken(TokenRejection.CLAIMS, "invalid 'aud' claim: wrong value or type")
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise InvalidToken(TokenRejection.CLAIMS, "invalid 'jti' claim: wrong value or type")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_SUBJECT_LENGTH or not sub.isprintable():
            raise InvalidToken(
                TokenRejection.CLAIMS,
                f"sub must be a non-empty printable string of at most {MAX_SUBJECT_LENGTH} characters",
            )


def issued_at_hint(claims: dict[str, Any]) -> float:
    """The unverified `iat`, only to decide how long to wait for a key. A missing or broken one
    waits least; the claims check refuses it anyway, after the signature."""
    value = claims.get("iat")
    return float(value) if _is_numeric_date(value) else float("-inf")


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if not _is_numeric_date(value):
        raise InvalidToken(TokenRejection.CLAIMS, f"invalid {name!r} claim: wrong value or type")
    return float(value)


def _is_numeric_date(value: object) -> TypeGuard[int | float]:
    """A NumericDate: a JSON number (not a bool, string, NaN or infinity) within a sane range."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and -MAX_NUMERIC_DATE < value < MAX_NUMERIC_DATE  # NaN fails this comparison too
    )
