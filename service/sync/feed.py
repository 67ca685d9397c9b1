"""Reading a user's change feed from a token: the logic both /changes and /events share.

Without a token the feed starts with every live task, as upserts in id order, read page by page
from the seq the first page saw (`SyncToken.listing_after` marks a listing under way). Anything
that changes during the listing has a seq after that one, so the log replays it afterwards: a
task listed early and changed later, or deleted, is corrected by the log; a task listed late is
already newer, and its upsert comes again. Then the log, in seq order.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ..db.session import UserConnection
from . import queries
from .tokens import SyncToken, SyncTokenExpired, check_fresh

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page:
    changes: list[tuple[SyncToken, str]]  # each change (JSON text) with the token just after it
    next: SyncToken
    more: bool  # more changes are there now: ask again at once


async def read_page(
    db: UserConnection, user_id: str, since: SyncToken | None, limit: int, now: float, retention_days: int
) -> Page:
    """Up to `limit` changes after `since` (None: from the start); 410 for an expired token."""
    if since is not None:
        check_fresh(since, now, retention_days)
    changes: list[tuple[SyncToken, str]] = []
    if since is None or since.listing_after is not None:
        after = 0 if since is None else since.listing_after
        row = await queries.tasks_after(db, user_id, after or 0, limit + 1)
        start = row["latest"] if since is None else since.seq
        _check_position(row, start)
        ids, listed = (row["seqs"] or [])[:limit], (row["changes"] or [])[:limit]
        changes = [(SyncToken(start, int(now), task_id), text) for task_id, text in zip(ids, listed, strict=True)]
        if len(row["seqs"] or []) > limit:
            return Page(changes, changes[-1][0], True)
        since = SyncToken(start, int(now))
        if changes:  # the listing is complete: resuming after its last task starts from the log
            changes[-1] = (since, changes[-1][1])
    budget = limit - len(changes)
    row = await queries.changes_after(db, user_id, since.seq, budget + 1)
    _check_position(row, since.seq)
    seqs, logged = row["seqs"] or [], row["changes"] or []
    following = [(SyncToken(seq, int(now)), text) for seq, text in zip(seqs[:budget], logged[:budget], strict=True)]
    last = following[-1][0] if following else since.reissued(now)
    return Page(changes + following, last, len(seqs) > budget)


def _check_position(row: asyncpg.Record, seq: int) -> None:
    """410 when tombstones after `seq` were purged, or `seq` is beyond the feed (a token from a
    database since restored or replaced): either way only a full listing is exact."""
    if seq < row["expired_below"] or seq > row["latest"]:
        raise SyncTokenExpired("this sync token is too old for the changes kept; sync again without since")
