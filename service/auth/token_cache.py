"""Verified tokens by digest, so a token seen again skips the signature check.

A hit never outlives the token's `exp` (plus leeway), nor the key set it was verified against:
when the key cache's generation moves on (a key was withdrawn or replaced) or the set goes past
its maximum staleness, every entry is dropped and tokens are verified afresh. The key cache knows
nothing of this; we only read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from cachetools import LRUCache

from ..errors import InvalidToken, TokenRejection
from .claims import Principal
from .jwks import JWKSCache


class _Entries(LRUCache[bytes, Principal]):
    """Counts evictions. Expiry is checked on every hit (an expired entry is dropped then); an
    expired token is also one no longer used, so LRU eviction makes room from those first.
    cachetools' TLRUCache would redo that bookkeeping at ~5x the cost of a hit."""

    evictions = 0

    def popitem(self) -> tuple[bytes, Principal]:
        self.evictions += 1
        return super().popitem()


class VerifiedTokenCache:
    def __init__(self, keys: JWKSCache, *, max_entries: int, leeway_seconds: int, clock: Callable[[], float]) -> None:
        self._keys = keys
        self._leeway = leeway_seconds
        self._clock = clock
        self._entries = _Entries(maxsize=max_entries)
        self._evicted_before = 0  # by entry tables dropped whole
        self._generation = keys.generation  # of the key set the entries were verified against
        self._usable_until = -math.inf  # that set's end of usability, as last read

    @property
    def evictions(self) -> int:
        return self._evicted_before + self._entries.evictions

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> Principal | None:
        """The cached caller, None on a miss; InvalidToken once the token has expired."""
        principal = self._entries.get(digest)
        if principal is None:
            return None
        now = self._clock()
        if now >= principal.expires_at + self._leeway:
            self._entries.pop(digest, None)
            raise InvalidToken(TokenRejection.EXPIRED, "token has expired")
        if self._keys.generation != self._generation or now > self._usable_until:
            self._follow_keys()
            return self._entries.get(digest)
        return principal

    def put(self, digest: bytes, principal: Principal) -> None:
        """Store a caller just verified with a key of the current set."""
        if self._keys.generation != self._generation or self._clock() > self._usable_until:
            self._follow_keys()
        self._entries[digest] = principal

    def _follow_keys(self) -> None:
        held = self._keys.usable_set()
        if held is None or self._keys.generation != self._generation:
            # Some entry may rest on a key no longer published (or on no usable set at all).
            self._evicted_before += self._entries.evictions
            self._entries = _Entries(maxsize=self._entries.maxsize)
        self._generation = self._keys.generation
        self._usable_until = held.usable_until if held is not None else -math.inf
