"""A Better Auth stand-in on a real port (a thread serving FakeBetterAuth's JWKS on 127.0.0.1),
and the data file the wrk scripts load: one line per user with its token and task ids.
"""

from __future__ import annotations

import time
from pathlib import Path

from service.testing import TOKEN_LIFETIME_SECONDS, FakeBetterAuth

from .database import user_id

# Tokens are re-minted before a load run that would outlive them (Better Auth's are 15 min).
TOKEN_MARGIN_SECONDS = 60.0


class TokenFile:
    """The wrk data file: `<user_id> <token> <id>,<id>,...` per line. Tokens are minted with the
    issuer's real key; `refresh_for(seconds)` re-mints them when a run would outlive them."""

    def __init__(self, path: Path, issuer: FakeBetterAuth, ids_by_user: dict[int, list[int]]) -> None:
        self.path = path
        self.issuer = issuer
        self.ids_by_user = ids_by_user
        self.expires_at = 0.0
        self.sample: dict[str, object] = {}

    @property
    def users(self) -> int:
        return len(self.ids_by_user)

    def refresh_for(self, seconds: float) -> None:
        if time.time() + seconds + TOKEN_MARGIN_SECONDS < self.expires_at:
            return
        self.expires_at = time.time() + TOKEN_LIFETIME_SECONDS
        lines = []
        for number, ids in self.ids_by_user.items():
            uid = user_id(number)
            token = self.issuer.issue_token(uid)
            lines.append(f"{uid} {token} {','.join(map(str, ids))}\n")
            if len(lines) == 1:
                self.sample = {"user_id": uid, "token": token, "task_id": ids[0]}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        tmp.replace(self.path)


def pick_users(users: int, limit: int) -> list[int]:
    """At most `limit` user numbers spread evenly over 1..users."""
    if users <= limit:
        return list(range(1, users + 1))
    step = users / limit
    return sorted({1 + int(i * step) for i in range(limit)})
