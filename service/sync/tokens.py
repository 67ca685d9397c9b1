"""Sync tokens: where a client is in its user's change feed, opaque to the client.

A token holds the seq of the last change the client has (or, while the first full listing is
under way, the seq that listing started at and the last task id it returned), when it was
issued, and a short hash of the user id so that it is refused for another user. It names only
a position in the caller's own feed, so it is encoded, not signed, like the list cursor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from ..errors import InvalidRequest, ServiceError

MAX_TOKEN_CHARS = 128
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
_VERSION = "1"
_OWNER_CHARS = 12
_NUMBER = re.compile(r"[0-9]{1,18}")  # below 2**63: a bigint


class SyncTokenExpired(ServiceError):
    """The token is older than the tombstone retention: changes it needs may be gone."""

    status = 410
    code = "sync_token_expired"
    title = "Gone"


@dataclass(frozen=True)
class SyncToken:
    seq: int  # every change up to this one is reflected
    issued_at: int  # unix seconds
    listing_after: int | None = None  # the full listing's last task id, while it is under way

    def encode(self, user_id: str) -> str:
        after = "" if self.listing_after is None else str(self.listing_after)
        text = f"{_VERSION}.{self.seq}.{after}.{self.issued_at}.{_owner(user_id)}"
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")

    def reissued(self, now: float) -> SyncToken:
        return SyncToken(self.seq, int(now), self.listing_after)


def decode_token(token: str, user_id: str, field: str) -> SyncToken:
    """The token's position; 422 naming `field` when it is garbled or another user's."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        version, seq, after, issued, owner = text.split(".")
        if version != _VERSION or not all(_NUMBER.fullmatch(part) for part in (seq, issued, after or "1")):
            raise ValueError
        if owner != _owner(user_id):
            raise _invalid(field, "the token belongs to another user")
        return SyncToken(int(seq), int(issued), int(after) if after else None)
    except InvalidRequest:
        raise
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid(field, "the sync token is not valid") from None


def check_fresh(token: SyncToken, now: float, retention_days: int) -> None:
    """410 when the token is older than the retention (its client must list everything again)."""
    if now - token.issued_at > retention_days * 86400:
        raise SyncTokenExpired(f"sync tokens expire after {retention_days} days; sync again without since")


def expires_at(token: SyncToken, retention_days: int) -> float:
    return token.issued_at + retention_days * 86400


def _owner(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:_OWNER_CHARS]


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{field}: {message}", [{"field": field, "message": message}])
