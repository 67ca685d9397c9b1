"""Better Auth's admin plugin puts `banned` and `banExpires` into the session JWT, as of the time
the token was issued: a token that says its user is banned is refused until the ban expires."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from ..errors import UserBanned

# Numbers above this are JavaScript milliseconds rather than seconds (about year 5138 in seconds).
MILLISECONDS_ABOVE = 10**11


def check_ban(claims: dict[str, Any], now: float) -> None:
    """UserBanned (403) when the claims say the user is banned and the ban has not expired.

    Fails closed: a `banned` that is neither false nor null, or a `banExpires` we cannot read,
    counts as a ban without an end."""
    banned = claims.get("banned")
    if banned is None or banned is False:
        return
    expires = ban_expires_at(claims.get("banExpires"))
    if expires is not None and expires <= now:
        return
    raise UserBanned("the user is banned" + ("" if expires is None else " until the ban expires"))


def ban_expires_at(value: object) -> float | None:
    """`banExpires` as a POSIX time; None for a ban without an end (null, absent or unreadable)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value) / 1000 if abs(value) >= MILLISECONDS_ABOVE else float(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        return stamp.timestamp() if stamp.tzinfo is not None else None  # a naive time is unreadable
    return None
