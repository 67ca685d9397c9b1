"""Verifying a compact JWS from Better Auth: strict parsing, key by `kid`, signature, then claims.

We parse the compact form ourselves (strict base64url, no duplicate JSON members, no unknown
critical headers, no header-borne keys) and hand only the signature check to joserfc's algorithm
model, after checking the allow-list and that the key's type fits the `alg`. Nothing in the
payload counts before the signature does, except the unverified `iat` choosing how long to wait
for a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from joserfc.errors import JoseError
from joserfc.jws import JWSRegistry

from ..errors import InvalidToken, KeysUnavailable, SessionCheckUnavailable, TokenRefused, TokenRejection
from .bans import check_ban
from .claims import ClaimsPolicy, Principal, issued_at_hint
from .compact import b64decode, decode_json_segment, split_compact
from .jwks import JWKSCache
from .keys import MAX_KID_LENGTH
from .session_check import SessionChecker
from .token_cache import VerifiedTokenCache
from .token_types import TokenKind, access_token_scopes, token_kind

__all__ = ["Principal", "TokenVerifier"]

log = logging.getLogger("service.auth.tokens")

# Header members that would let the token choose its own key or change how it is processed.
_REFUSED_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit", "b64")
VERIFIED = "ok"  # the outcome label of a verification that succeeded
# Every refusal verify_token counts: each carries its TokenRejection as `reason`.
REFUSALS = (InvalidToken, KeysUnavailable, TokenRefused, SessionCheckUnavailable)


class TokenVerifier:
    def __init__(
        self,
        keys: JWKSCache,
        *,
        algorithms: tuple[str, ...],
        issuers: tuple[str, ...],
        audiences: tuple[str, ...],
        leeway_seconds: int,
        max_token_bytes: int,
        token_cache_max_entries: int,
        max_lifetime_seconds: float = float("inf"),
        oauth_access_tokens: bool = False,
        session_check: SessionChecker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._algorithms = frozenset(algorithms)
        self._claims = ClaimsPolicy(
            issuers=frozenset(issuers),
            audiences=frozenset(audiences),
            leeway_seconds=leeway_seconds,
            max_lifetime_seconds=max_lifetime_seconds,
        )
        self._oauth_access_tokens = oauth_access_tokens
        self.session_check = session_check
        self._max_token_bytes = max_token_bytes
        self._clock = clock
        self._cache: VerifiedTokenCache | None = None
        if token_cache_max_entries > 0:
            self._cache = VerifiedTokenCache(
                keys, max_entries=token_cache_max_entries, leeway_seconds=leeway_seconds, clock=clock
            )
        self.cache_hits = 0
        self.cache_misses = 0
        self.outcomes: Counter[str] = Counter()  # by TokenRejection, and VERIFIED

    @property
    def cache_evictions(self) -> int:
        return self._cache.evictions if self._cache is not None else 0

    @property
    def cache_size(self) -> int:
        return len(self._cache) if self._cache is not None else 0

    @property
    def keys(self) -> JWKSCache:
        return self._keys

    def session_check_counts(self) -> dict[str, int]:
        """The session check's counters by result (none when SESSION_CHECK=off), for /metrics."""
        return {} if self.session_check is None else dataclasses.asdict(self.session_check.stats)

    async def verify_token(self, token: str) -> Principal:
        """The verified caller; InvalidToken (401), UserBanned (403), KeysUnavailable or
        SessionCheckUnavailable (503) otherwise."""
        try:
            raw = token.encode("utf-8", "surrogateescape")
            if len(raw) > self._max_token_bytes:
                raise InvalidToken(TokenRejection.TOO_LARGE, f"token exceeds {self._max_token_bytes} bytes")
            # The cache holds digests, not tokens: a heap dump must not hand out live credentials.
            # BLAKE2b-256: as collision-resistant as SHA-256, and cheaper here (no OpenSSL
            # per-call set-up), which matters since hashing is a large part of a cache hit.
            digest = hashlib.blake2b(raw, digest_size=32).digest()
            principal = self._cache.get(digest) if self._cache is not None else None
            if principal is None:
                principal = await self._verify(raw, digest)
            else:
                self.cache_hits += 1
            if self.session_check is not None:
                await self.session_check.require_active(principal)  # after the cache: sign-out shows
        except REFUSALS as exc:
            self.count_rejection(exc.reason, exc.detail)
            raise
        self.outcomes[VERIFIED] += 1
        return principal

    def count_rejection(self, reason: TokenRejection, detail: str) -> None:
        """Count (and log) a refusal; the middleware calls it for tokens that never got here."""
        self.outcomes[reason] += 1
        log.debug("bearer token refused: %s: %s", reason, detail)

    async def _verify(self, raw: bytes, digest: bytes) -> Principal:
        self.cache_misses += 1

        header_b64, payload_b64, signature_b64 = split_compact(raw)
        header = decode_json_segment(header_b64, "header")
        alg, kid, kind = self._check_header(header)
        claims = decode_json_segment(payload_b64, "payload")

        key = await self._keys.get_key(kid, issued_at=issued_at_hint(claims))
        if not key.accepts(alg):
            raise InvalidToken(TokenRejection.KEY_MISMATCH, f"key {kid[:64]!r} cannot verify {alg}")
        algorithm = JWSRegistry.algorithms[alg]  # direct: skips get_alg's per-call EdDSA warning
        try:
            algorithm.check_key(key.key)
            valid = algorithm.verify(header_b64 + b"." + payload_b64, b64decode(signature_b64, "signature"), key.key)
        except (JoseError, ValueError, TypeError):
            valid = False
        if not valid:
            raise InvalidToken(TokenRejection.BAD_SIGNATURE, "signature does not verify")

        now = self._clock()
        self._claims.check(claims, now)
        scopes = access_token_scopes(claims) if kind is TokenKind.OAUTH_ACCESS else None
        check_ban(claims, now)  # before the cache: a ban that expires must not stay cached
        sid = claims.get("sid")
        principal = Principal(
            user_id=claims["sub"],
            kid=kid,
            expires_at=float(claims["exp"]),
            claims=claims,
            scopes=scopes,
            session_id=sid if isinstance(sid, str) and sid else None,
        )
        if self._cache is not None:
            self._cache.put(digest, principal)
        return principal

    def _check_header(self, header: dict[str, Any]) -> tuple[str, str, TokenKind]:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken(TokenRejection.ALG_NOT_ALLOWED, f"alg {str(alg)[:32]!r} is not allowed")
        for name in _REFUSED_HEADERS:
            if name in header:
                raise InvalidToken(TokenRejection.HEADER_REFUSED, f"header parameter {name!r} is not accepted")
        kind = token_kind(header.get("typ"), oauth_access_tokens=self._oauth_access_tokens)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            raise InvalidToken(TokenRejection.MALFORMED, "header must carry a string kid")
        return alg, kid, kind
